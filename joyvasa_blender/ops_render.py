"""Render Portrait Animation (engine ``animate``) and add the video + audio to the Sequencer."""
from __future__ import annotations

import time

import bpy

from . import apply_media, apply_motion
from .core.engine_client import motion_args
from .core.media_check import MediaError, verify_render
from .ops_engine_run import EngineRunMixin


class JOYVASA_OT_render_portrait(EngineRunMixin, bpy.types.Operator):
    """Render the portrait animation at the scene's frame rate with the engine, then add the video and the audio as Sequencer strips at the start frame (Esc cancels)"""
    bl_idname = "joyvasa.render_portrait"
    bl_label = "Render Portrait Animation"
    bl_options = {'REGISTER', 'UNDO'}
    kind = "animate"

    def build(self, context):
        scene = context.scene
        st = scene.joyvasa
        image = apply_media.resolve_portrait(context)
        audio, start = apply_media.resolve_audio(context)
        fps = scene.render.fps / scene.render.fps_base
        out = apply_media.output_dir(context) / f"portrait_seed{st.seed}_{time.strftime('%Y%m%d-%H%M%S')}.mp4"
        args = ["--image", image] + motion_args(audio=audio, out=str(out), seed=st.seed, sampler=st.sampler,
                                                steps=st.steps, cfg_scale=round(st.cfg_scale, 4), smooth=st.smooth,
                                                fps=round(fps, 6))
        if st.render_use_motion and st.motion_path:
            args += ["--motion", bpy.path.abspath(st.motion_path)]
        # the engine takes one value per run: the strengths at the start frame
        frames = [start]
        pose = float(apply_motion.strength_values(scene, "head_strength", frames)[0])
        exp = float(apply_motion.strength_values(scene, "expression_strength", frames)[0])
        args += ["--region", st.region, "--pose-strength", f"{pose:.4g}", "--exp-strength", f"{exp:.4g}",
                 "--crop", st.crop or "auto"]
        return args, {"out": str(out), "start": start, "audio": audio, "fps": fps}

    def apply(self, context, job, params):
        video = job.outputs.get("video") or job.artifacts.get("video") or params["out"]
        try:  # never put a broken or truncated file into the Sequencer
            verify_render(video, params["fps"], params["audio"])
        except MediaError as exc:
            raise ValueError(str(exc)) from None
        st = context.scene.joyvasa
        st.last_video = video
        if not st.add_strips:
            return f"Rendered {video}"
        info = apply_media.add_strips(context, video, params["audio"], params["start"])
        job.warnings += info["warnings"]
        return f"Added {info['movie']} on channel {info['channel']} (frames {info['start']}-{info['end'] - 1})"


CLASSES = (JOYVASA_OT_render_portrait,)
