"""The Live panel (3D Viewport and Sequencer sidebar, JoyVASA tab). Draw code only."""
from __future__ import annotations

import bpy

from . import runtime
from .ops_live import JOYVASA_OT_live_pick_device, JOYVASA_OT_live_start, JOYVASA_OT_live_stop


def draw_live(layout, context) -> None:
    scene = context.scene
    lv, st = scene.joyvasa_live, scene.joyvasa
    sess = runtime.LIVE
    col = layout.column()
    col.enabled = sess is None
    col.row().prop(lv, "source", expand=True)
    if lv.source == "MIC":
        row = col.row(align=True)
        row.prop(lv, "mic_device", text="Device")
        row.operator_menu_enum(JOYVASA_OT_live_pick_device.bl_idname, "device", text="", icon='DOWNARROW_HLT')
        if not runtime.DOCTOR.get("inputs"):
            col.label(text="Check Engine (preferences) lists the input devices", icon='INFO')
    else:
        what = st.audio_strip if st.audio_source == "STRIP" else (bpy.path.basename(st.audio_path) or "(none)")
        col.label(text=f"Plays {'strip' if st.audio_source == 'STRIP' else 'file'} {what} at real time", icon='SOUND')
        col.prop(lv, "pace", text="")
        if lv.pace == "REALTIME":
            col.prop(lv, "monitor")
    col.prop(lv, "latency")
    col.prop(lv, "record")
    row = layout.row()
    row.scale_y = 1.4
    if sess is None:
        row.operator(JOYVASA_OT_live_start.bl_idname, icon='PLAY')
        if runtime.CURRENT is not None:
            layout.label(text="An engine run is in progress: wait or cancel it", icon='INFO')
    else:
        row.operator(JOYVASA_OT_live_stop.bl_idname, icon='SNAP_FACE' if sess.record else 'PAUSE')
    last = runtime.LIVE_LAST
    if last.get("message"):
        box = layout.box()
        icon = {"running": 'REC' if sess is not None and sess.record else 'PLAY', "done": 'CHECKMARK',
                "failed": 'ERROR', "cancelled": 'CANCEL'}.get(last.get("state", ""), 'INFO')
        for i, line in enumerate(str(last["message"]).splitlines()[:6]):
            box.label(text=line[:160], icon=icon if i == 0 else 'BLANK1')
        if sess is not None and sess.tick_s:
            box.label(text=f"Timer {1000 * sorted(sess.tick_s)[len(sess.tick_s) // 2]:.1f} ms per tick", icon='BLANK1')


class _LivePanel:
    bl_label = "Live"
    bl_region_type = 'UI'
    bl_category = "JoyVASA"

    def draw(self, context):
        draw_live(self.layout, context)


class JOYVASA_PT_live_view3d(_LivePanel, bpy.types.Panel):
    bl_idname = "JOYVASA_PT_live_view3d"
    bl_parent_id = "JOYVASA_PT_view3d"
    bl_space_type = 'VIEW_3D'


class JOYVASA_PT_live_sequencer(_LivePanel, bpy.types.Panel):
    bl_idname = "JOYVASA_PT_live_sequencer"
    bl_parent_id = "JOYVASA_PT_sequencer"
    bl_space_type = 'SEQUENCE_EDITOR'


CLASSES = (JOYVASA_PT_live_view3d, JOYVASA_PT_live_sequencer)
