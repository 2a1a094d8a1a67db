"""Add-on preferences: they store and draw the engine's interpreter, weights, device, precision,
the warm engine's settings and Download Weights (ops_weights.py). What the settings mean for an
engine start is core/engine_config.py (via engine_setup.py); the buttons are ops_engine.py.

The engine runs in its own Python (a virtual environment with torch); this is never
Blender's Python. "Create Engine Environment" makes one in the add-on's user folder. With
"Keep Engine Warm" (default) one ``python -m engine serve`` process serves every Generate
Motion, Render and Check Engine, so the networks load once per session (core/worker.py).
"""

import bpy
from bpy.props import BoolProperty, EnumProperty, IntProperty, StringProperty

from .core import engine_client as ec
from .core import torch_build
from .engine_setup import engine_state_text, install_plan
from .ops_engine import (JOYVASA_OT_cancel_install, JOYVASA_OT_check_engine, JOYVASA_OT_detect_python,
                         JOYVASA_OT_engine_release, JOYVASA_OT_engine_start, JOYVASA_OT_engine_stop,
                         JOYVASA_OT_install_engine)
from .ops_weights import draw_download
from . import runtime

DEVICES = [("auto", "Auto", "CUDA, then Apple MPS, then CPU"), ("cuda", "CUDA", "NVIDIA GPU"),
           ("mps", "Apple MPS", "Apple Silicon GPU"), ("cpu", "CPU", "Slow but always available")]
#: What the engine does for each choice (engine/device.py select_precision / select_motion_precision):
#: one --dtype for every network of a job; "auto" is resolved per device and per stage.
DTYPES = [("auto", "Auto", "The engine decides per device: rendering in bf16 on NVIDIA Ampere or newer, fp16 on "
                           "older NVIDIA GPUs and on Apple MPS, fp32 on CPU; motion in fp32 (bf16 on CPUs with bf16 "
                           "instructions when a fast sampler is used)"),
          ("float32", "FP32", "Full precision for every network (upstream's numbers; slowest on GPUs)"),
          ("float16", "FP16", "Half precision for every network (CUDA and MPS; not on CPU)"),
          ("bfloat16", "BF16", "bfloat16 for every network (recent NVIDIA GPUs, CPUs with bf16 instructions)")]


class JoyVASAPreferences(bpy.types.AddonPreferences):
    bl_idname = __package__

    engine_python: StringProperty(name="Engine Python", subtype='FILE_PATH',
                                  description="Python interpreter of the engine's virtual environment (empty: detect)")
    engine_src: StringProperty(name="Engine Sources", subtype='DIR_PATH',
                               description="Folder containing the 'engine' package (empty: the copy inside the extension)")
    weights_dir: StringProperty(name="Weights", subtype='DIR_PATH', description="Folder with the JoyVASA/LivePortrait weights (empty: $JOYVASA_WEIGHTS)")
    device: EnumProperty(name="Device", items=DEVICES, default="auto")
    dtype: EnumProperty(name="Precision", items=DTYPES, default="auto",
                        description="Compute precision of the engine's networks (motion and rendering)")
    torch_build: EnumProperty(name="Torch Build", items=torch_build.BUILD_CHOICES, default="auto",
                              description="Which torch Create Engine Environment installs")
    watchdog_s: IntProperty(name="Watchdog (s)", min=0, soft_max=3600, default=ec.DEFAULT_WATCHDOG_S,
                            description="Background and scripted runs: stop an engine that sends nothing for this "
                                        "many seconds and report it as hung, so batches never hang (0: off; "
                                        "$JOYVASA_WATCHDOG_S overrides)")
    output_dir: StringProperty(name="Output Folder", subtype='DIR_PATH', default="//joyvasa",
                               description="Motion files and videos ('//' = next to the saved .blend)")
    unsaved_output_dir: StringProperty(name="Unsaved Files", subtype='DIR_PATH', default="",
                                       description="Where outputs of a never-saved .blend go (empty: ~/JoyVASA)")
    download_dir: StringProperty(name="Download To", subtype='DIR_PATH', default="",
                                 description="Download Weights puts the files here (empty: the extension's user "
                                             "folder, which survives add-on updates)")
    fetch_animals: BoolProperty(name="Animal Models", default=False,
                                description="Also LivePortrait's animal models (for Animal portraits; MIT)")
    fetch_xpose: BoolProperty(name="X-Pose", default=False,
                              description="Also the X-Pose animal-face keypoint model (NON-COMMERCIAL research use only)")
    fetch_detector: BoolProperty(name="InsightFace Detector", default=False,
                                 description="Also InsightFace's face detector (NON-COMMERCIAL research use only; "
                                             "the built-in detector needs none)")
    keep_warm: BoolProperty(name="Keep Engine Warm", default=True,
                            description="One engine process serves every request and keeps the networks loaded "
                                        "(re-takes in seconds); off: a fresh engine per request")
    idle_minutes: IntProperty(name="Stop When Idle (min)", default=15, min=0, soft_max=120,
                              description="Stop the warm engine after this many idle minutes (0: never)")

    def draw(self, context):
        layout = self.layout
        from . import compat
        note = compat.version_note()
        layout.label(text=note, icon='ERROR' if note.startswith("Untested") else 'BLENDER')
        row = layout.row(align=True)
        row.prop(self, "engine_python")
        row.operator(JOYVASA_OT_detect_python.bl_idname, text="", icon='VIEWZOOM')
        layout.prop(self, "weights_dir")
        draw_download(layout, self)
        row = layout.row()
        row.prop(self, "device")
        row.prop(self, "dtype")
        layout.prop(self, "engine_src")
        layout.prop(self, "watchdog_s")
        row = layout.row()
        row.prop(self, "output_dir")
        row.prop(self, "unsaved_output_dir")
        draw_engine_state(layout, self)
        row = layout.row()
        row.operator(JOYVASA_OT_check_engine.bl_idname, icon='CHECKMARK')
        inst = runtime.INSTALLER
        if inst is not None and not inst.done:
            col = layout.column()
            col.progress(factor=inst.progress, type='BAR', text=f"{inst.label} ({inst.index + 1}/{len(inst.steps)})")
            col.label(text=inst.last_line[-90:])
            col.operator(JOYVASA_OT_cancel_install.bl_idname, icon='CANCEL')
        else:
            row.operator(JOYVASA_OT_install_engine.bl_idname, icon='CONSOLE')
            row.prop(self, "torch_build", text="")
            draw_install_plan(layout, context)
            if inst is not None and inst.error:
                layout.label(text=inst.error[:120], icon='ERROR')
        if runtime.DOCTOR:
            box = layout.box()
            synthetic = runtime.DOCTOR.get("synthetic")
            box.label(text=("Engine OK - " + ec.SYNTHETIC_NOTE) if runtime.DOCTOR["ok"] and synthetic
                      else "Engine OK" if runtime.DOCTOR["ok"] else "Engine problems",
                      icon='ERROR' if synthetic or not runtime.DOCTOR["ok"] else 'CHECKMARK')
            if runtime.DOCTOR.get("gpu_warning"):   # the one-click fix next to the warning
                box.label(text=runtime.DOCTOR["device"][:140], icon='ERROR')
                box.operator(JOYVASA_OT_install_engine.bl_idname, text="Recreate Engine Environment", icon='CONSOLE')
            for line in runtime.DOCTOR["text"]:
                box.label(text=line[:140])


def draw_install_plan(layout, context) -> None:
    """The torch build Create Engine Environment will install, why, and its pip command line."""
    plan = install_plan(context)
    if isinstance(plan, str):
        layout.label(text=plan, icon='INFO')
        return
    choice, steps = plan
    col = layout.column(align=True)
    col.label(text=f"Torch: {choice.summary}"[:160], icon='INFO')
    torch_step = next((argv for label, argv in steps if label.startswith("Installing torch")), None)
    if torch_step is not None:   # the venv's interpreter path is long: shown on its own line
        col.label(text="Runs: python " + torch_build.command_text(torch_step[1:])[:160])
        col.label(text=f"with python = {torch_step[0]}"[:200])


def draw_engine_state(layout, prefs=None) -> None:
    """Warm-engine box (preferences and sidebar): state, Start / Stop, Release Memory, last crash."""
    box = layout.box()
    if prefs is not None:
        row = box.row()
        row.prop(prefs, "keep_warm")
        row.prop(prefs, "idle_minutes")
    w = runtime.WORKER
    box.label(text=engine_state_text(), icon='CHECKMARK' if w is not None and w.alive() else 'PAUSE')
    row = box.row(align=True)
    if w is not None and w.alive():
        row.operator(JOYVASA_OT_engine_stop.bl_idname, icon='X')
    else:
        row.operator(JOYVASA_OT_engine_start.bl_idname, icon='PLAY')
    row.operator(JOYVASA_OT_engine_release.bl_idname, icon='TRASH')
    if w is not None and w.last_crash:
        for line in [ln for ln in w.last_crash if ln.strip()][-4:]:
            box.label(text=line[:140], icon='ERROR')


CLASSES = (JoyVASAPreferences,)
