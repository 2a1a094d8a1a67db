"""Generate Motion (engine ``motion``), Apply Motion File, Re-apply Controls (engine ``edit``), Cancel."""

import json
import time
from pathlib import Path

import bpy
from bpy.props import IntProperty, StringProperty

from . import apply_media, apply_motion, controls_scene, rig_presets, runtime
from .core import controls as cc
from .core import motion_core as mc
from .core import requests
from .core.engine_client import EngineProcess
from .core.run_state import JobState
from .core.motion_core import MotionFileError
from .ops_engine_run import EngineRunMixin
from .engine_setup import engine_config


def _stamp() -> str:
    return f"{time.strftime('%Y%m%d-%H%M%S')}_{int(time.time() * 1000) % 1000:03d}"


def edit_paths(context, motion_path: str) -> tuple[Path, Path]:
    """Where an edit of ``motion_path`` goes: a new motion file + its controls file."""
    stem = Path(motion_path).stem.split("_edit")[0]
    out = apply_media.output_dir(context) / f"{stem}_edit{_stamp()}.npz"
    return out, out.with_suffix(".controls.json")


def edit_sync(context, motion_path: str, start: int) -> tuple[str, dict | None]:
    """The motion to key for the scene's controls, and the controls to show in the panel after
    keying (None: keep the panel as it is).

    Neutral scene controls key ``motion_path`` as it is: an edited take keeps its edits, and the
    caller sets the panel to the controls the file records (so what the panel shows is what the
    keys hold). Changed controls re-edit the file's raw motion with them through ``engine edit``
    (sub-second, run synchronously). Raises ValueError with the engine's report on failure."""
    m = mc.load_motion(motion_path)
    d = controls_scene.scene_controls(context.scene, start)
    if cc.is_neutral(d):
        if m.raw is None or not m.controls:
            return motion_path, None
        try:
            recorded = json.loads(m.controls)
        except ValueError:
            raise ValueError(f"{motion_path}: its recorded controls are not valid JSON") from None
        return motion_path, (recorded if isinstance(recorded, dict) else None)
    cfg = engine_config(context)
    if cfg.error:
        raise ValueError(cfg.error)
    out, cpath = edit_paths(context, motion_path)
    cc.write_controls(cpath, d)
    request = requests.job_dict("edit", motion=motion_path, controls=str(cpath), out=str(out))   # no models
    job = JobState(kind="edit")
    job.start()
    proc = EngineProcess(requests.one_shot_argv(cfg.python), cwd=cfg.engine_src, env=cfg.env(),
                         stdin_text=requests.to_line(request))
    rc = proc.run_sync(job.feed, timeout=120)
    job.finish(rc, proc.stderr_tail(40))
    if job.state != "done":
        raise ValueError(job.report_text())
    return str(out), None


def _summary_text(summary: dict) -> str:
    parts = [f"Take {summary['take']}: {summary['frames']} frames from frame {summary['start']}"]
    if summary.get("shape_keys"):
        parts.append(f"{len(summary['shape_keys'])} shape keys")
    if summary.get("channels"):
        parts.append(f"{summary['channels']} channels on {summary['channels_object']}")
    if summary.get("removed"):                       # the earlier preset's takes it replaced
        parts.append("earlier take: " + "; ".join(summary["removed"]))
    return ", ".join(parts)


class JOYVASA_OT_generate_motion(EngineRunMixin, bpy.types.Operator):
    """Generate head pose and expression from the audio with the engine, then key it onto the chosen targets as a new take (Esc cancels)"""
    bl_idname = "joyvasa.generate_motion"
    bl_label = "Generate Motion"
    bl_options = {'REGISTER', 'UNDO'}
    kind = "motion"

    def build(self, context):
        st = context.scene.joyvasa
        rig_presets.resolve(st)             # a bad rig preset fails now, not after sampling
        audio, start = apply_media.resolve_audio(context)
        out = apply_media.output_dir(context) / f"motion_seed{st.seed}_{_stamp()}.npz"
        cpath, _ = controls_scene.write_scene_controls(context.scene, out.with_suffix(".controls.json"), start)
        job = requests.job_dict("motion", lambda prop: getattr(st, prop), audio=audio, out=str(out),
                                controls=str(cpath))
        return job, {"out": str(out), "start": start, "audio": audio}

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
            keyed, recorded = edit_sync(context, path, st.start_frame if start is None else start)
            summary = apply_motion.apply_motion(context, keyed, start_frame=start)
            if recorded is not None:       # after keying: a failed apply leaves the panel as it was
                summary["warnings"] += controls_scene.show_controls(context.scene, recorded, summary["start"],
                                                                    mc.load_motion(keyed).fps)
        except (MotionFileError, ValueError, OSError) as exc:
            self.report({'ERROR'}, str(exc))
            return {'CANCELLED'}
        for w in summary["warnings"]:
            self.report({'WARNING'}, w)
        self.report({'INFO'}, _summary_text(summary))
        return {'FINISHED'}


class JOYVASA_OT_reapply_controls(EngineRunMixin, bpy.types.Operator):
    """Re-key the active take with the current controls through the engine's edit (no sampling: seconds, not minutes); the result is a new take"""
    bl_idname = "joyvasa.reapply_controls"
    bl_label = "Re-apply Controls"
    bl_options = {'REGISTER', 'UNDO'}
    kind = "edit"

    @classmethod
    def poll(cls, context):
        return runtime.CURRENT is None and apply_motion.active_take(context) is not None

    def build(self, context):
        take = apply_motion.active_take(context)
        if take is None:
            raise ValueError("no JoyVASA take: generate or apply motion first")
        _name, motion, start = take
        if not Path(motion).is_file():
            raise ValueError(f"the take's motion file {motion} is gone: apply a motion file again")
        out, cpath = edit_paths(context, motion)
        controls_scene.write_scene_controls(context.scene, cpath, start)
        job = requests.job_dict("edit", motion=motion, controls=str(cpath), out=str(out))
        return job, {"out": str(out), "start": start}

    def apply(self, context, job, params):
        path = job.outputs.get("motion_npz") or job.artifacts.get("motion_npz") or params["out"]
        summary = apply_motion.apply_motion(context, path, start_frame=params["start"])
        job.warnings += summary["warnings"]
        return "Re-applied controls: " + _summary_text(summary)


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
        st.audio_source, st.audio_strip, st.start_frame = "STRIP", strip.name, compat.strip_content_start(strip)
        return {'FINISHED'}


CLASSES = (JOYVASA_OT_generate_motion, JOYVASA_OT_apply_motion, JOYVASA_OT_reapply_controls, JOYVASA_OT_cancel,
           JOYVASA_OT_use_strip)
