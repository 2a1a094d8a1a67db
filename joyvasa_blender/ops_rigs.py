"""Rig preset operators: pick a preset, re-key the take with another preset (no sampling), the
mapping table (load, add/remove rows, save as a user preset file), the axis probe."""
from __future__ import annotations

import bpy
import numpy as np
from bpy.props import EnumProperty, FloatProperty, StringProperty

from . import apply_motion, rig_presets, runtime
from .core import retarget
from .core.motion_core import MotionFileError

AUTO = "__AUTO__"


def _items(self, context):
    items = rig_presets.enum_items()
    return [(AUTO, "Auto", items[0][2])] + items[1:]


class JOYVASA_OT_pick_rig_preset(bpy.types.Operator):
    """Choose the rig preset (Auto: the one whose names match the rig and face mesh best)"""
    bl_idname = "joyvasa.pick_rig_preset"
    bl_label = "Rig Preset"
    bl_options = {'REGISTER', 'UNDO'}

    preset: EnumProperty(name="Preset", items=_items)

    def execute(self, context):
        st = context.scene.joyvasa
        st.rig_preset = "" if self.preset == AUTO else self.preset
        st.use_rig_mapping = False
        return {'FINISHED'}


class JOYVASA_OT_reapply_rig(bpy.types.Operator):
    """Key the active take again with the current rig preset, mapping and gains: a new take (new Actions), no sampling, undoable"""
    bl_idname = "joyvasa.reapply_rig"
    bl_label = "Re-apply Rig"
    bl_options = {'REGISTER', 'UNDO'}

    @classmethod
    def poll(cls, context):
        return runtime.CURRENT is None and apply_motion.active_take(context) is not None

    def execute(self, context):
        take = apply_motion.active_take(context)
        if take is None:
            self.report({'ERROR'}, "no JoyVASA take: generate or apply motion first")
            return {'CANCELLED'}
        _name, motion, start = take
        try:
            summary = apply_motion.apply_motion(context, motion, start_frame=start)
        except (MotionFileError, ValueError, OSError) as exc:
            self.report({'ERROR'}, str(exc))
            return {'CANCELLED'}
        for w in summary["warnings"]:
            self.report({'WARNING'}, w)
        removed = f"; earlier take: {'; '.join(summary['removed'])}" if summary.get("removed") else ""
        self.report({'INFO'}, f"Re-applied take {summary['take']} with {summary['preset']} ({summary['coverage']}){removed}")
        return {'FINISHED'}


class JOYVASA_OT_mapping_load(bpy.types.Operator):
    """Copy the current rig preset's mapping into the table to edit it (the table is used while Use Edited Mapping is on)"""
    bl_idname = "joyvasa.rig_mapping_load"
    bl_label = "Edit Mapping"
    bl_options = {'REGISTER', 'UNDO'}

    def execute(self, context):
        st = context.scene.joyvasa
        st.use_rig_mapping = False
        try:
            preset, _cov, _auto = rig_presets.resolve(st)
        except ValueError as exc:
            self.report({'ERROR'}, str(exc))
            return {'CANCELLED'}
        st.rig_mapping.clear()
        for row in retarget.rows_from_preset(preset):
            item = st.rig_mapping.add()
            for key, value in row.items():
                setattr(item, key, value)
        st.rig_mapping_from, st.use_rig_mapping, st.rig_mapping_index = preset.name, True, 0
        return {'FINISHED'}


class JOYVASA_OT_mapping_add(bpy.types.Operator):
    """Add a mapping row (a copy of the selected one)"""
    bl_idname = "joyvasa.rig_mapping_add"
    bl_label = "Add Row"
    bl_options = {'REGISTER', 'UNDO'}

    def execute(self, context):
        st = context.scene.joyvasa
        src = st.rig_mapping[st.rig_mapping_index] if 0 <= st.rig_mapping_index < len(st.rig_mapping) else None
        item = st.rig_mapping.add()
        if src is not None:
            for key in rig_presets.table_rows(st)[st.rig_mapping_index]:
                setattr(item, key, getattr(src, key))
        else:
            item.channel = "jawOpen"
        st.rig_mapping_index = len(st.rig_mapping) - 1
        return {'FINISHED'}


class JOYVASA_OT_mapping_remove(bpy.types.Operator):
    """Remove the selected mapping row"""
    bl_idname = "joyvasa.rig_mapping_remove"
    bl_label = "Remove Row"
    bl_options = {'REGISTER', 'UNDO'}

    @classmethod
    def poll(cls, context):
        return len(context.scene.joyvasa.rig_mapping) > 0

    def execute(self, context):
        st = context.scene.joyvasa
        st.rig_mapping.remove(st.rig_mapping_index)
        st.rig_mapping_index = max(0, min(st.rig_mapping_index, len(st.rig_mapping) - 1))
        return {'FINISHED'}


class JOYVASA_OT_save_rig_preset(bpy.types.Operator):
    """Save the mapping table as a user rig preset file (the extension's user folder) and use it"""
    bl_idname = "joyvasa.save_rig_preset"
    bl_label = "Save as User Preset"

    name: StringProperty(name="Name", default="My Rig")

    @classmethod
    def poll(cls, context):
        return len(context.scene.joyvasa.rig_mapping) > 0

    def invoke(self, context, event):
        return context.window_manager.invoke_props_dialog(self)

    def execute(self, context):
        st = context.scene.joyvasa
        folder = rig_presets.user_dir(create=True)
        if folder is None:
            self.report({'ERROR'}, "no user folder: the add-on is not installed as an extension")
            return {'CANCELLED'}
        try:
            base = rig_presets.resolve(st)[0]
            preset = retarget.preset_from_rows(self.name.strip(), rig_presets.table_rows(st), base.head,
                                               f"Saved from the mapping of {st.rig_mapping_from or base.name}")
            path = retarget.save_user_preset(preset, folder)
        except (ValueError, OSError) as exc:
            self.report({'ERROR'}, str(exc))
            return {'CANCELLED'}
        st.rig_preset, st.use_rig_mapping = preset.name, False
        self.report({'INFO'}, f"Saved rig preset {preset.name}: {path}")
        return {'FINISHED'}


#: the size of a probe preview when the row's Full is 0: radians (rotation), rig units (location)
PROBE_DEFAULT = {"bone_rotation": 0.35, "bone_location": 0.01}


def _probe_row(context):
    st = context.scene.joyvasa
    if st.rig is None or not 0 <= st.rig_mapping_index < len(st.rig_mapping):
        return None
    row = st.rig_mapping[st.rig_mapping_index]
    return row if row.kind.startswith("bone") and row.target in st.rig.pose.bones else None


class JOYVASA_OT_probe_axis(bpy.types.Operator):
    """Preview the selected bone row along this axis and sign on the rig (no keys) and pick it for the row: click through the axes until the viewport shows the motion the channel means"""
    bl_idname = "joyvasa.probe_axis"
    bl_label = "Probe Axis"
    bl_options = {'REGISTER', 'UNDO'}

    axis: EnumProperty(name="Axis", items=[(a, a, f"Axis {a}") for a in "XYZ"])
    sign: FloatProperty(name="Sign", default=1.0)

    @classmethod
    def poll(cls, context):
        return _probe_row(context) is not None

    def execute(self, context):
        st = context.scene.joyvasa
        row = _probe_row(context)
        row.axis = self.axis
        row.full = (abs(row.full) or PROBE_DEFAULT[row.kind]) * (1.0 if self.sign >= 0 else -1.0)
        try:
            head_section = rig_presets.resolve(st)[0].head
        except ValueError:
            head_section = retarget.Head()
        try:               # this row alone, at full scale (x = 1), through the keying maths
            one = dict(rig_presets.row_dict(row), gain=1.0, offset=0.0, lo=-1.0, hi=1.0)
            preset = retarget.preset_from_rows("probe", [one], head_section)
        except ValueError as exc:
            self.report({'ERROR'}, str(exc))
            return {'CANCELLED'}
        rig = st.rig
        _reset_bone(rig.pose.bones[row.target])
        head = st.head_bone or (preset.head.bone if preset.head.bone in rig.pose.bones else "") \
            or apply_motion.guess_head_bone(rig)
        geometry = rig_presets.rig_geometry(rig, preset, head, context.view_layer)
        plan = retarget.evaluate(preset, {row.channel: np.ones(1)}, geometry)
        if not apply_motion.pose_from_plan(rig, plan, 0):
            self.report({'WARNING'}, f"{row.target}: a head-space row needs the head bone ({head or 'none found'})")
            return {'CANCELLED'}
        context.view_layer.update()
        self.report({'INFO'}, f"{row.channel} at full: {row.target} {row.kind.split('_')[1]} "
                              f"{'+' if row.full > 0 else '-'}{row.axis} ({row.space.lower()} space)")
        return {'FINISHED'}


def _reset_bone(pb) -> None:
    pb.location = (0.0, 0.0, 0.0)
    pb.rotation_quaternion = (1.0, 0.0, 0.0, 0.0)
    pb.rotation_euler = (0.0, 0.0, 0.0)
    pb.rotation_axis_angle = (0.0, 0.0, 1.0, 0.0)


class JOYVASA_OT_probe_reset(bpy.types.Operator):
    """Put the probed bone back to its rest pose"""
    bl_idname = "joyvasa.probe_reset"
    bl_label = "Reset Probe"
    bl_options = {'REGISTER', 'UNDO'}

    @classmethod
    def poll(cls, context):
        return _probe_row(context) is not None

    def execute(self, context):
        _reset_bone(context.scene.joyvasa.rig.pose.bones[_probe_row(context).target])
        context.view_layer.update()
        return {'FINISHED'}


CLASSES = (JOYVASA_OT_probe_axis, JOYVASA_OT_probe_reset, JOYVASA_OT_pick_rig_preset, JOYVASA_OT_reapply_rig, JOYVASA_OT_mapping_load, JOYVASA_OT_mapping_add,
           JOYVASA_OT_mapping_remove, JOYVASA_OT_save_rig_preset)
