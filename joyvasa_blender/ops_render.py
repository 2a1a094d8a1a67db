"""Render Portrait Animation (engine ``animate``) into the sequencer scene; Preview; output folder."""
from __future__ import annotations

import os
import time

import bpy

from . import apply_media, controls_scene
from .core import requests
from .core.media_check import MediaError, verify_render
from .core.framing import framing_summary
from .ops_engine_run import EngineRunMixin

PREVIEW_IMAGE = "JoyVASA Preview"


class _AnimateOperator(EngineRunMixin):
    """engine ``animate`` from the panel's settings: the full render or (``preview``) a preview."""
    kind = "animate"
    preview = False

    def build(self, context):
        scene = context.scene
        st = scene.joyvasa
        image = apply_media.resolve_portrait(context)
        audio, start = apply_media.resolve_audio(context)
        fps = scene.render.fps / scene.render.fps_base
        stem = "preview" if self.preview else "portrait"
        out = apply_media.output_dir(context) / f"{stem}_seed{st.seed}_{time.strftime('%Y%m%d-%H%M%S')}.mp4"
        # every control sampled at every frame: the video shows the same curves as the rig keys
        cpath, _ = controls_scene.write_scene_controls(scene, out.with_suffix(".controls.json"), start)
        driving = out.with_suffix(".driving.npy")
        settings = lambda prop: getattr(st, prop)  # noqa: E731
        job = requests.job_dict(
            "animate", settings, image=image, audio=audio, out=str(out), fps=round(fps, 6),
            motion=bpy.path.abspath(st.motion_path) if st.render_use_motion and st.motion_path else None,
            controls=str(cpath), save_driving=str(driving), preview=bool(self.preview),
            **requests.framing_fields(settings))   # the same framing as Preview Crop (Frame Face points too)
        return job, {"out": str(out), "start": start, "audio": audio, "fps": fps, "driving": str(driving)}

    def apply(self, context, job, params):
        video = job.outputs.get("video") or job.artifacts.get("video") or params["out"]
        st = context.scene.joyvasa
        if not self.preview:
            try:  # never put a broken or truncated file into the Sequencer
                verify_render(video, params["fps"], params["audio"])
            except MediaError as exc:
                raise ValueError(str(exc)) from None
        else:  # a preview is sparse by design (fps / stride) and adds no strips
            sheet = job.outputs.get("contact_sheet") or job.artifacts.get("contact_sheet")
            st.last_preview = sheet or ""
            if sheet and os.path.isfile(sheet):
                show_image(context, sheet)
            return f"Preview: {video}" + (f" + {sheet}" if sheet else "")
        st.last_video = video
        if job.framing:
            st.crop_summary = framing_summary(job.framing)
        if not st.add_strips:
            return f"Rendered {video}"
        info = apply_media.add_strips(context, video, params["audio"], params["start"])
        job.warnings += info["warnings"]
        sound = " (reused its sound strip)" if info.get("sound_reused") else ""
        return (f"Added {info['movie']} to scene {info['scene']} on channel {info['channel']} "
                f"(frames {info['start']}-{info['end'] - 1}){sound}")


class JOYVASA_OT_render_portrait(_AnimateOperator, bpy.types.Operator):
    """Render the portrait animation at the scene's frame rate with the engine, then add the video and the audio as strips of the sequencer scene at the start frame (the 3D scene's own render is not changed; Esc cancels)"""
    bl_idname = "joyvasa.render_portrait"
    bl_label = "Render Portrait Animation"
    bl_options = {'REGISTER', 'UNDO'}


class JOYVASA_OT_render_preview(_AnimateOperator, bpy.types.Operator):
    """Cheap look before a long render: every 8th frame or sparser (at most 24 frames) as a short clip over the full soundtrack and a contact sheet, shown in an Image Editor (no strips are added)"""
    bl_idname = "joyvasa.render_preview"
    bl_label = "Preview"
    bl_options = {'REGISTER'}
    preview = True


def show_image(context, path: str) -> None:
    """Load the contact sheet as the image 'JoyVASA Preview' (reloaded each time) and show it in
    an open Image Editor, if there is one."""
    img = bpy.data.images.get(PREVIEW_IMAGE)
    if img is None:
        img = bpy.data.images.load(path, check_existing=False)
        img.name = PREVIEW_IMAGE
    else:
        img.filepath = path
        img.reload()
    screen = getattr(context, "screen", None)
    for area in (screen.areas if screen else []):
        if area.type == 'IMAGE_EDITOR':
            area.spaces.active.image = img
            area.tag_redraw()
            break


class JOYVASA_OT_open_output_folder(bpy.types.Operator):
    """Open the output folder (motion files, videos, previews) in the system's file browser"""
    bl_idname = "joyvasa.open_output_folder"
    bl_label = "Open Folder"

    def execute(self, context):
        folder = apply_media.output_dir(context)
        if not bpy.app.background:
            bpy.ops.wm.path_open(filepath=str(folder))
        self.report({'INFO'}, str(folder))
        return {'FINISHED'}


class JOYVASA_OT_show_sequencer_scene(bpy.types.Operator):
    """Make the sequencer scene (where rendered strips go) the window's scene, to edit or render it"""
    bl_idname = "joyvasa.show_sequencer_scene"
    bl_label = "Show Sequencer Scene"

    def execute(self, context):
        scene = apply_media.target_scene(context, create=False)
        if scene is None:
            self.report({'WARNING'}, "No sequencer scene yet: render a portrait animation first")
            return {'CANCELLED'}
        if context.window is not None:
            context.window.scene = scene
        return {'FINISHED'}


CLASSES = (JOYVASA_OT_render_portrait, JOYVASA_OT_render_preview, JOYVASA_OT_open_output_folder,
           JOYVASA_OT_show_sequencer_scene)
