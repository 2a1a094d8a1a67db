"""Sidebar panels (3D Viewport and Sequencer, tab "JoyVASA"). Draw code only: no logic, no writes."""
from __future__ import annotations

import bpy

from . import compat, runtime
from .ops_motion import (JOYVASA_OT_apply_motion, JOYVASA_OT_reapply_controls, JOYVASA_OT_cancel, JOYVASA_OT_generate_motion,
                         JOYVASA_OT_use_strip)
from .ops_framing import PREVIEW_IMAGE as CROP_PREVIEW_IMAGE
from .ops_framing import JOYVASA_OT_frame_face, JOYVASA_OT_preview_crop, JOYVASA_OT_use_detected_points
from .ops_render import (JOYVASA_OT_open_output_folder, JOYVASA_OT_render_portrait, JOYVASA_OT_render_preview,
                         JOYVASA_OT_show_sequencer_scene)


def draw_job(layout) -> None:
    run = runtime.CURRENT
    if run is not None:
        box = layout.box()
        box.progress(factor=run.job.progress, type='BAR', text=run.job.progress_text)
        box.operator(JOYVASA_OT_cancel.bl_idname, icon='CANCEL')
        return
    last = runtime.LAST
    if last is not None and last.message:
        box = layout.box()
        icon = {'done': 'CHECKMARK', 'failed': 'ERROR', 'cancelled': 'CANCEL'}.get(last.state, 'INFO')
        for i, line in enumerate(last.report_text(6).splitlines()):
            box.label(text=line[:160], icon=icon if i == 0 else 'BLANK1')


def draw_inputs(layout, context) -> None:
    st = context.scene.joyvasa
    col = layout.column(align=True)
    col.prop(st, "portrait_source", expand=True)
    if st.portrait_source == "FILE":
        col.prop(st, "portrait_path", text="")
    else:
        col.template_ID(st, "portrait_image", open="image.open")
    col.prop(st, "animal")
    col = layout.column(align=True)
    col.prop(st, "audio_source", expand=True)
    if st.audio_source == "FILE":
        col.prop(st, "audio_path", text="")
        col.prop(st, "start_frame")
    else:
        scene = compat.sequencer_scene(context)
        se = scene.sequence_editor
        if se is not None:
            col.prop_search(st, "audio_strip", se, "strips_all" if hasattr(se, "strips_all") else "sequences_all", text="")
        else:
            col.label(text="No Sequencer strips in this scene", icon='INFO')
        col.operator(JOYVASA_OT_use_strip.bl_idname, icon='SOUND')


def draw_generation(layout, st) -> None:
    col = layout.column(align=True)
    col.prop(st, "seed")
    col.prop(st, "sampler", text="")
    col.prop(st, "steps")
    col.prop(st, "cfg_scale")
    col.prop(st, "smooth")
    layout.prop(st, "region")


def draw_controls(layout, st) -> None:
    """Art direction: every control, grouped; all keyable, they reach the rig and the video."""
    from .core.controls import CONTROLS, GROUPS

    layout.label(text="Art Direction (keyable)", icon='DRIVER')
    for group in GROUPS:
        box = layout.box()
        box.label(text=group)
        col = box.column(align=True)
        for c in CONTROLS:
            if c.group != group:
                continue
            if c.prop in ("blink_rate", "blink_duration", "blink_seed") and not st.blink:
                continue
            if c.prop.startswith("silence_") and c.prop not in ("silence_relax", "silence_calm_head") \
                    and not (st.silence_relax or st.silence_calm_head > 0):
                continue
            col.prop(st, c.prop, slider=c.kind == "float" and c.lo >= 0 and c.hi <= 5)


def draw_rig_preset(layout, context) -> None:
    """Rig Preset choice, the detected coverage (missing names listed, never an error), Re-apply Rig."""
    from . import rig_presets
    from .ops_rigs import JOYVASA_OT_pick_rig_preset, JOYVASA_OT_reapply_rig

    st = context.scene.joyvasa
    row = layout.row(align=True)
    label = "Edited mapping" if st.use_rig_mapping and len(st.rig_mapping) else (st.rig_preset or "Auto")
    row.operator_menu_enum(JOYVASA_OT_pick_rig_preset.bl_idname, "preset", text=label, icon='PRESET')
    row.operator(JOYVASA_OT_reapply_rig.bl_idname, text="", icon='FILE_REFRESH')
    text, missing, error = rig_presets.describe(st)
    if error:
        layout.label(text=error[:160], icon='ERROR')
        return
    layout.label(text=text, icon='CHECKMARK' if not missing else 'INFO')
    if missing:
        shown = ", ".join(missing[:6]) + (f" (+{len(missing) - 6})" if len(missing) > 6 else "")
        layout.label(text=f"Missing: {shown}", icon='BLANK1')


def draw_targets(layout, st, context=None) -> None:
    box = layout.box()
    box.label(text="Targets", icon='ARMATURE_DATA')
    if context is not None:
        draw_rig_preset(box, context)
    box.prop(st, "rig")
    if st.rig is not None:
        box.prop_search(st, "head_bone", st.rig.data, "bones")
        row = box.row()
        row.prop(st, "apply_head")
        row.prop(st, "head_location")
        if st.head_location:
            box.prop(st, "location_scale")
        box.prop(st, "pose_reference")
        box.prop(st, "axis_mode")
        if st.axis_mode == "MANUAL":
            row = box.row(align=True)
            row.prop(st, "pitch_axis")
            row.prop(st, "yaw_axis")
            row.prop(st, "roll_axis")
    box.prop(st, "channels_target")
    box.prop(st, "mesh")
    if st.mesh is not None:
        box.prop(st, "apply_shape_keys")
        if st.apply_shape_keys:
            if st.mesh.data.shape_keys is None:
                box.label(text="This mesh has no shape keys", icon='ERROR')
            if not st.rig_preset or st.rig_preset == "ARKit 52":
                box.prop(st, "name_map", text="")
            row = box.row()
            row.prop(st, "reference_mode")
            row = box.row()
            row.prop(st, "include_gaze")
            row.prop(st, "mirrored_source")
    box.prop(st, "make_empties")


def draw_actions(layout, context) -> None:
    st = context.scene.joyvasa
    busy = runtime.CURRENT is not None
    col = layout.column()
    row = col.row()
    row.enabled = not busy
    row.scale_y = 1.4
    row.operator(JOYVASA_OT_generate_motion.bl_idname, icon='ARMATURE_DATA')
    row = col.row(align=True)
    row.enabled = not busy
    row.operator(JOYVASA_OT_apply_motion.bl_idname, icon='IMPORT')
    row.operator(JOYVASA_OT_reapply_controls.bl_idname, icon='FILE_REFRESH')
    if st.motion_path:
        col.label(text=f"Motion: {bpy.path.basename(st.motion_path)}", icon='FILE')
        row = col.row()
        row.enabled = not busy
        row.operator("joyvasa.export_motion", icon='EXPORT')
    row = col.row(align=True)
    row.enabled = not busy
    row.scale_y = 1.4
    row.operator(JOYVASA_OT_render_preview.bl_idname, icon='IMAGE_DATA')
    row.operator(JOYVASA_OT_render_portrait.bl_idname, icon='RENDER_ANIMATION')
    col.prop(st, "render_use_motion")
    col.prop(st, "add_strips")
    if st.add_strips:
        row = col.row(align=True)
        row.prop(st, "sequencer_scene", text="Strips")
        row.operator(JOYVASA_OT_show_sequencer_scene.bl_idname, text="", icon='SEQUENCE')
    if busy:
        col.label(text="The engine is busy: cancel it or wait", icon='INFO')
    draw_outputs(layout, st)
    from .prefs import draw_engine_state
    draw_engine_state(layout)


def draw_outputs(layout, st) -> None:
    box = layout.box()
    row = box.row()
    row.prop(st, "output_dir")
    row.operator(JOYVASA_OT_open_output_folder.bl_idname, text="", icon='FILE_FOLDER')
    for label, path in (("Motion", st.motion_path), ("Video", st.last_video), ("Preview", st.last_preview)):
        if path:
            box.label(text=f"{label}: {bpy.path.basename(path)}", icon='FILE')


def draw_framing(layout, context, in_image_editor: bool = False) -> None:
    """Framing: mode, points/box/face, scale and shifts, the Frame Face tool and the crop preview."""
    st = context.scene.joyvasa
    busy = runtime.CURRENT is not None
    box = layout.box()
    box.label(text="Face Framing", icon='FACESEL')
    box.prop(st, "crop_mode", text="")
    if st.crop_mode == "POINTS":
        col = box.column(align=True)
        col.prop(st, "face_points", text="")
        if in_image_editor:
            col.operator(JOYVASA_OT_frame_face.bl_idname, icon='RESTRICT_SELECT_OFF')
        else:
            col.label(text="Frame Face: Image Editor › sidebar › JoyVASA", icon='INFO')
    elif st.crop_mode == "BOX":
        box.prop(st, "crop_box", text="")
    elif st.crop_mode == "AUTO":
        box.prop(st, "face_index")
    if st.crop_mode != "NONE":
        col = box.column(align=True)
        col.prop(st, "crop_scale")
        row = col.row(align=True)
        row.prop(st, "crop_vx")
        row.prop(st, "crop_vy")
    row = box.row(align=True)
    row.enabled = not busy
    row.operator(JOYVASA_OT_preview_crop.bl_idname, icon='IMAGE_DATA')
    if st.crop_mode == "AUTO":
        row.operator(JOYVASA_OT_use_detected_points.bl_idname, text="", icon='GREASEPENCIL')
    if st.crop_summary:
        box.label(text=st.crop_summary, icon='CHECKMARK')
    if not st.animal:
        box.prop(st, "normalize_lip")
    img = bpy.data.images.get(CROP_PREVIEW_IMAGE)
    preview = getattr(img, "preview", None) if img is not None else None
    if preview is not None and preview.icon_id:
        box.template_icon(icon_value=preview.icon_id, scale=8.0)


class _JoyVASAPanel:
    bl_region_type = 'UI'
    bl_category = "JoyVASA"

    def draw(self, context):
        layout = self.layout
        st = context.scene.joyvasa
        draw_job(layout)
        draw_inputs(layout, context)
        draw_generation(layout, st)
        draw_controls(layout, st)
        draw_targets(layout, st, context)
        draw_framing(layout, context)
        draw_actions(layout, context)


class JOYVASA_PT_view3d(_JoyVASAPanel, bpy.types.Panel):
    bl_idname = "JOYVASA_PT_view3d"
    bl_label = "JoyVASA"
    bl_space_type = 'VIEW_3D'


class JOYVASA_PT_sequencer(_JoyVASAPanel, bpy.types.Panel):
    bl_idname = "JOYVASA_PT_sequencer"
    bl_label = "JoyVASA"
    bl_space_type = 'SEQUENCE_EDITOR'


class JOYVASA_UL_rig_mapping(bpy.types.UIList):
    """Mapping table rows: channel -> target, gain."""

    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index=0):
        row = layout.row(align=True)
        row.prop(item, "channel", text="", emboss=False)
        row.label(text="", icon='FORWARD')
        row.prop(item, "target", text="", emboss=False)
        row.prop(item, "gain", text="")


class _RigMappingPanel:
    """Sub-panel: the rig preset's mapping table (channel -> target, gain), editable and saveable."""
    bl_label = "Rig Mapping"
    bl_region_type = 'UI'
    bl_category = "JoyVASA"
    bl_options = {'DEFAULT_CLOSED'}

    def draw(self, context):
        from .ops_rigs import (JOYVASA_OT_mapping_add, JOYVASA_OT_mapping_load, JOYVASA_OT_mapping_remove,
                               JOYVASA_OT_save_rig_preset)

        layout = self.layout
        st = context.scene.joyvasa
        layout.prop(st, "rig_preset", text="Preset")
        layout.operator(JOYVASA_OT_mapping_load.bl_idname, icon='COPYDOWN')
        if not len(st.rig_mapping):
            layout.label(text="Edit Mapping copies the preset's table here", icon='INFO')
            return
        layout.prop(st, "use_rig_mapping")
        layout.label(text=f"From: {st.rig_mapping_from}")
        row = layout.row()
        row.template_list("JOYVASA_UL_rig_mapping", "", st, "rig_mapping", st, "rig_mapping_index", rows=6)
        col = row.column(align=True)
        col.operator(JOYVASA_OT_mapping_add.bl_idname, text="", icon='ADD')
        col.operator(JOYVASA_OT_mapping_remove.bl_idname, text="", icon='REMOVE')
        if 0 <= st.rig_mapping_index < len(st.rig_mapping):
            item = st.rig_mapping[st.rig_mapping_index]
            box = layout.box()
            box.prop(item, "kind")
            if item.kind == "property":
                box.prop(item, "bone")
            if item.kind.startswith("bone") or item.kind == "property":
                r = box.row(align=True)
                if item.kind.startswith("bone"):
                    r.prop(item, "axis", text="")
                r.prop(item, "full")
                r.prop(item, "rest")
                if item.kind.startswith("bone"):
                    r = box.row(align=True)
                    r.prop(item, "space", text="")
                    if item.kind == "bone_location":
                        r.prop(item, "aim")
                    r = box.row(align=True)                      # the axis probe: preview, pick
                    r.label(text="Probe:")
                    for axis in "XYZ":
                        for sign, text in ((1.0, f"+{axis}"), (-1.0, f"-{axis}")):
                            op = r.operator("joyvasa.probe_axis", text=text)
                            op.axis, op.sign = axis, sign
                    r.operator("joyvasa.probe_reset", text="", icon='LOOP_BACK')
            r = box.row(align=True)
            r.prop(item, "offset")
            r.prop(item, "lo")
            r.prop(item, "hi")
        layout.operator(JOYVASA_OT_save_rig_preset.bl_idname, icon='FILE_TICK')


class JOYVASA_PT_rig_mapping(_RigMappingPanel, bpy.types.Panel):
    bl_idname = "JOYVASA_PT_rig_mapping"
    bl_parent_id = "JOYVASA_PT_view3d"
    bl_space_type = 'VIEW_3D'


class JOYVASA_PT_rig_mapping_sequencer(_RigMappingPanel, bpy.types.Panel):
    bl_idname = "JOYVASA_PT_rig_mapping_sequencer"
    bl_parent_id = "JOYVASA_PT_sequencer"
    bl_space_type = 'SEQUENCE_EDITOR'


class JOYVASA_PT_image(bpy.types.Panel):
    """The framing tools where the portrait is: the Image Editor's sidebar."""
    bl_idname = "JOYVASA_PT_image"
    bl_label = "JoyVASA Framing"
    bl_space_type = 'IMAGE_EDITOR'
    bl_region_type = 'UI'
    bl_category = "JoyVASA"

    def draw(self, context):
        draw_job(self.layout)
        draw_framing(self.layout, context, in_image_editor=True)


CLASSES = (JOYVASA_PT_view3d, JOYVASA_PT_sequencer, JOYVASA_PT_image, JOYVASA_UL_rig_mapping, JOYVASA_PT_rig_mapping,
           JOYVASA_PT_rig_mapping_sequencer)
