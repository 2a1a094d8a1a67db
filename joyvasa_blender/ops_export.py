"""Export Motion: the active take as Live Link Face CSV, LivePortrait template or BVH.

Runs ``engine export`` through the engine client like every other engine command (modal with
progress in the UI, synchronous in background mode), so the add-on keeps no second copy of
the writers. The active take is the JoyVASA take on the active object (its action, or its
shape keys' action), else the last take keyed in this scene; it is exported at the scene's
frame rate, on the same audio timeline the take was keyed on. Entries: File › Export and the
JoyVASA panel.
"""

from pathlib import Path

import bpy
from bpy.props import EnumProperty, StringProperty

from . import apply_media, apply_motion
from .core import requests
from .ops_engine_run import EngineRunMixin

FORMATS = (
    ("bvh", "BVH (.bvh)", "Head joint + root for any DCC (Blender, Maya, MotionBuilder)", ".bvh"),
    ("livelinkface-csv", "Live Link Face CSV (.csv)", "52 ARKit blendshapes + head rotation, for Unreal", ".csv"),
    ("lp-pkl", "LivePortrait template (.pkl)", "LivePortrait's motion template (driving template)", ".pkl"),
)
SUFFIX = {f[0]: f[3] for f in FORMATS}


def active_take(context) -> tuple[str, str]:
    """(take name, motion file) of the active take; ValueError when there is none."""
    take = apply_motion.active_take(context)
    if take is None:
        raise ValueError("no JoyVASA take to export: generate or apply motion first")
    return take[0], take[1]


class JOYVASA_OT_export_motion(EngineRunMixin, bpy.types.Operator):
    """Export the active JoyVASA take (head pose + expression) to another tool's format"""
    bl_idname = "joyvasa.export_motion"
    bl_label = "Export Motion"
    kind = "export"

    filepath: StringProperty(name="File", subtype='FILE_PATH', default="")
    filter_glob: StringProperty(default="*.bvh;*.csv;*.pkl", options={'HIDDEN'})
    format: EnumProperty(name="Format", items=[f[:3] for f in FORMATS], default="bvh")

    def check(self, context):
        """File browser hook: keep the file name's suffix in step with the chosen format."""
        if not self.filepath:
            return False
        want = Path(self.filepath).with_suffix(SUFFIX[self.format])
        if str(want) != self.filepath:
            self.filepath = str(want)
            return True
        return False

    def invoke(self, context, event):
        try:
            take, _ = active_take(context)
        except ValueError as exc:
            self.report({'ERROR'}, str(exc))
            return {'CANCELLED'}
        if not self.filepath:
            self.filepath = str(apply_media.output_dir(context) / f"{bpy.path.clean_name(take)}{SUFFIX[self.format]}")
        context.window_manager.fileselect_add(self)
        return {'RUNNING_MODAL'}

    def execute(self, context):
        if bpy.app.background or context.window is None:
            return EngineRunMixin.execute(self, context)
        return EngineRunMixin.invoke(self, context, None)      # modal: progress, Esc cancels

    def build(self, context):
        take, motion = active_take(context)
        if not Path(motion).is_file():
            raise ValueError(f"the take's motion file {motion} does not exist")
        if not self.filepath:
            raise ValueError("choose a file to export to")
        out = Path(bpy.path.abspath(self.filepath)).with_suffix(SUFFIX[self.format])
        out.parent.mkdir(parents=True, exist_ok=True)
        fps = context.scene.render.fps / context.scene.render.fps_base
        job = requests.job_dict("export", motion=motion, format=self.format, out=str(out), fps=float(f"{fps:g}"))
        return job, {"out": str(out), "take": take}

    def apply(self, context, job, params):
        path = job.outputs.get("motion_export") or params["out"]
        return f"Exported {params['take']} to {path}"


def menu_export(self, context):
    self.layout.operator(JOYVASA_OT_export_motion.bl_idname, text="JoyVASA Motion (.bvh/.csv/.pkl)")


def register_menus() -> None:
    bpy.types.TOPBAR_MT_file_export.append(menu_export)


def unregister_menus() -> None:
    bpy.types.TOPBAR_MT_file_export.remove(menu_export)


CLASSES = (JOYVASA_OT_export_motion,)
