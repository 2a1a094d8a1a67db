"""Generate Motion (engine ``motion``), Apply Motion File, Cancel."""

import time

import bpy
from bpy.props import IntProperty, StringProperty

from . import apply_media, apply_motion, runtime
from .core.engine_client import motion_args
from .core.motion_core import MotionFileError
from .ops_engine_run import EngineRunMixin


def _summary_text(summary: dict) -> str:
    parts = [f"Take {summary['take']}: {summary['frames']} frames from frame {summary['start']}"]
    if summary.get("shape_keys"):
        parts.append(f"{len(summary['shape_keys'])} shape keys")
    if summary.get("channels"):
        parts.append(f"{summary['channels']} channels on {summary['channels_object']}")
    return ", ".join(parts)


class JOYVASA_OT_generate_motion(EngineRunMixin, bpy.types.Operator):
    """Generate head pose and expression from the audio with the engine, then key it onto the chosen targets as a new take (Esc cancels)"""
    bl_idname = "joyvasa.generate_motion"
    bl_label = "Generate Motion"
    bl_options = {'REGISTER', 'UNDO'}
    kind = "motion"

    def build(self, context):
        st = context.scene.joyvasa
        audio, start = apply_media.resolve_audio(context)
        out = apply_media.output_dir(context) / f"motion_seed{st.seed}_{time.strftime('%Y%m%d-%H%M%S')}_{int(time.time() * 1000) % 1000:03d}.npz"
        args = motion_args(audio=audio, out=str(out), seed=st.seed, sampler=st.sampler, steps=st.steps,
                           cfg_scale=round(st.cfg_scale, 4), smooth=st.smooth)
        return args, {"out": str(out), "start": start, "audio": audio}

    def apply(self, context, job, params):
        path = job.outputs.get("motion_npz") or job.artifacts.get("motion_npz") or params["out"]
        summary = apply_motion.apply_motion(context, path, start_frame=params["start"])
        job.warnings += summary["warnings"]
        context.scene.joyvasa.start_frame = params["start"]
        return _summary_text(summary)


class JOYVASA_OT_apply_motion(bpy.types.Operator):
    """Key an existing motion .npz onto the chosen targets as a new take"""
    bl_idname = "joyvasa.apply_motion"
    bl_label = "Apply Motion File"
    bl_options = {'REGISTER', 'UNDO'}

    filepath: StringProperty(name="Motion File", subtype='FILE_PATH', default="")
    start_frame: IntProperty(name="Start Frame", default=-(2 ** 30))

    def execute(self, context):
        st = context.scene.joyvasa
        path = bpy.path.abspath(self.filepath or st.motion_path)
        start = None if self.start_frame == -(2 ** 30) else self.start_frame
        try:
            summary = apply_motion.apply_motion(context, path, start_frame=start)
        except (MotionFileError, ValueError) as exc:
            self.report({'ERROR'}, str(exc))
            return {'CANCELLED'}
        for w in summary["warnings"]:
            self.report({'WARNING'}, w)
        self.report({'INFO'}, _summary_text(summary))
        return {'FINISHED'}


class JOYVASA_OT_cancel(bpy.types.Operator):
    """Stop the running engine; nothing in the scene changes"""
    bl_idname = "joyvasa.cancel"
    bl_label = "Cancel"

    @classmethod
    def poll(cls, context):
        return runtime.CURRENT is not None

    def execute(self, context):
        if runtime.CURRENT is not None:
            runtime.CURRENT.cancel = True
        return {'FINISHED'}


class JOYVASA_OT_use_strip(bpy.types.Operator):
    """Use the active sound strip of the Sequencer as the audio (its start frame becomes the start frame)"""
    bl_idname = "joyvasa.use_active_strip"
    bl_label = "Use Active Sound Strip"

    def execute(self, context):
        from . import compat
        scene = compat.sequencer_scene(context)
        se = scene.sequence_editor
        strip = getattr(se, "active_strip", None) if se else None
        if strip is None or strip.type != 'SOUND':
            self.report({'ERROR'}, "select a sound strip in the Sequencer first")
            return {'CANCELLED'}
        st = context.scene.joyvasa
        st.audio_source, st.audio_strip, st.start_frame = "STRIP", strip.name, int(strip.frame_start)
        return {'FINISHED'}


CLASSES = (JOYVASA_OT_generate_motion, JOYVASA_OT_apply_motion, JOYVASA_OT_cancel, JOYVASA_OT_use_strip)
