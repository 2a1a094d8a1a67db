"""Add-on preferences: the engine's interpreter, weights, device, precision; engine checks.

The engine runs in its own Python (a virtual environment with torch); this is never
Blender's Python. "Create Engine Environment" makes one in the add-on's user folder.
"""

import json
import os
import subprocess
from pathlib import Path

import bpy
from bpy.props import EnumProperty, IntProperty, StringProperty

from .core import engine_client as ec
from . import runtime

DEVICES = [("auto", "Auto", "CUDA, then Apple MPS, then CPU"), ("cuda", "CUDA", "NVIDIA GPU"),
           ("mps", "Apple MPS", "Apple Silicon GPU"), ("cpu", "CPU", "Slow but always available")]
DTYPES = [("auto", "Auto", "fp16 on CUDA (upstream policy), fp32 elsewhere"), ("float32", "FP32", "Full precision"),
          ("float16", "FP16", "Half precision (CUDA)"), ("bfloat16", "BF16", "bfloat16 (recent GPUs)")]


def user_dir(sub: str = "") -> str:
    """The extension's per-user folder (survives updates), or Blender's temp dir as a fallback."""
    try:
        return bpy.utils.extension_path_user(__package__, path=sub, create=True)
    except (ValueError, RuntimeError, AttributeError):
        path = Path(bpy.app.tempdir or "/tmp") / "joyvasa" / sub
        path.mkdir(parents=True, exist_ok=True)
        return str(path)


def get_prefs(context=None):
    context = context or bpy.context
    addon = context.preferences.addons.get(__package__)
    return addon.preferences if addon else None


def engine_config(context=None) -> dict:
    """Everything needed to start the engine: python, sources, weights, device, dtype.
    ``python`` is None (and ``error`` says why) when no interpreter is usable."""
    p = get_prefs(context)
    src = ec.find_engine_src(p.engine_src if p else "")
    kw = dict(pref=bpy.path.abspath(p.engine_python) if p and p.engine_python else "",
              weights_dir=bpy.path.abspath(p.weights_dir) if p and p.weights_dir else "",
              user_dir=user_dir(), engine_src=src)
    python, why = ec.detect_interpreter(**kw)
    weights = kw["weights_dir"] or os.environ.get("JOYVASA_WEIGHTS", "")
    err = None if python else why
    if src is None:
        err = "engine sources not found (reinstall the extension, or set Preferences > Engine Sources)"
    return {"python": python, "why": why, "engine_src": src, "weights": weights,
            "device": p.device if p else "auto", "dtype": p.dtype if p else "auto", "error": err,
            "watchdog_s": ec.watchdog_seconds(p.watchdog_s if p else None)}


def engine_env(cfg: dict) -> dict:
    env = {"PYTHONPATH": str(cfg["engine_src"])}
    if cfg["weights"]:
        env["JOYVASA_WEIGHTS"] = cfg["weights"]
    return ec.clean_env(env)


class JOYVASA_OT_check_engine(bpy.types.Operator):
    """Run `python -m engine doctor --json` with the configured interpreter and show the answer"""
    bl_idname = "joyvasa.check_engine"
    bl_label = "Check Engine"

    def execute(self, context):
        cfg = engine_config(context)
        if cfg["error"]:
            runtime.DOCTOR = {"ok": False, "text": [cfg["error"]]}
            self.report({'ERROR'}, cfg["error"])
            return {'CANCELLED'}
        argv = ec.engine_argv(cfg["python"], "doctor", ["--json"], weights=cfg["weights"])
        try:
            cp = subprocess.run(argv, cwd=str(cfg["engine_src"]), env=engine_env(cfg), capture_output=True,
                                text=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as exc:
            runtime.DOCTOR = {"ok": False, "text": [f"engine doctor could not run: {exc}"]}
            self.report({'ERROR'}, runtime.DOCTOR["text"][0])
            return {'CANCELLED'}
        lines = [f"Python: {cfg['python']} ({cfg['why']})"]
        synthetic = False
        try:
            report = json.loads(cp.stdout)
            ok = bool(report.get("ok", cp.returncode == 0))
            synthetic = bool(report.get("synthetic"))
            lines += ec.summarize_doctor(report)
        except json.JSONDecodeError:
            ok = False
            lines += ["engine doctor did not answer JSON (exit %d):" % cp.returncode]
            lines += [ln for ln in (cp.stdout + cp.stderr).splitlines() if ln.strip()][-8:]
        runtime.DOCTOR = {"ok": ok, "text": lines, "synthetic": synthetic}
        if ok and synthetic:
            self.report({'WARNING'}, f"Engine OK, but {ec.SYNTHETIC_NOTE}: videos will show noise")
        else:
            self.report({'INFO'} if ok else {'WARNING'}, "Engine OK" if ok else "Engine check found problems: see the preferences")
        return {'FINISHED'}


class JOYVASA_OT_detect_python(bpy.types.Operator):
    """Find an engine interpreter automatically and store it in the preferences"""
    bl_idname = "joyvasa.detect_python"
    bl_label = "Detect"

    def execute(self, context):
        p = get_prefs(context)
        cfg = engine_config(context)
        if not cfg["python"]:
            self.report({'ERROR'}, cfg["why"])
            return {'CANCELLED'}
        p.engine_python = cfg["python"]
        self.report({'INFO'}, f"Engine Python: {cfg['why']}")
        return {'FINISHED'}


def _poll_installer():
    inst = runtime.INSTALLER
    for window in getattr(bpy.context.window_manager, "windows", []):
        for area in window.screen.areas:
            area.tag_redraw()
    if inst is None or inst.done:
        p = get_prefs()
        if inst is not None and inst.error is None and not inst.cancelled and p is not None:
            p.engine_python = str(ec.venv_python(Path(user_dir()) / "venv"))
        return None
    return 0.5


class JOYVASA_OT_install_engine(bpy.types.Operator):
    """Create a virtual environment in the add-on's user folder and install the engine's requirements (runs in the background; large download)"""
    bl_idname = "joyvasa.install_engine"
    bl_label = "Create Engine Environment"

    def execute(self, context):
        if runtime.INSTALLER is not None and not runtime.INSTALLER.done:
            self.report({'WARNING'}, "Already installing")
            return {'CANCELLED'}
        src = ec.find_engine_src(get_prefs(context).engine_src)
        req = src / "requirements.txt" if src else None
        if req is None or not req.exists():
            self.report({'ERROR'}, "engine requirements.txt not found next to the engine sources")
            return {'CANCELLED'}
        base = ec.base_python_for_venv()
        if base is None:
            self.report({'ERROR'}, "no Python found to create the environment with")
            return {'CANCELLED'}
        steps = ec.install_steps(base, Path(user_dir()) / "venv", req)
        runtime.INSTALLER = ec.StepRunner(steps).start()
        if bpy.app.background:
            runtime.INSTALLER.join()
            _poll_installer()
            if runtime.INSTALLER.error:
                self.report({'ERROR'}, runtime.INSTALLER.error)
                return {'CANCELLED'}
        else:
            bpy.app.timers.register(_poll_installer, first_interval=0.5)
        return {'FINISHED'}


class JOYVASA_OT_cancel_install(bpy.types.Operator):
    """Stop the environment installation"""
    bl_idname = "joyvasa.cancel_install"
    bl_label = "Cancel Install"

    def execute(self, context):
        if runtime.INSTALLER is not None:
            runtime.INSTALLER.cancel()
        return {'FINISHED'}


class JoyVASAPreferences(bpy.types.AddonPreferences):
    bl_idname = __package__

    engine_python: StringProperty(name="Engine Python", subtype='FILE_PATH',
                                  description="Python interpreter of the engine's virtual environment (empty: detect)")
    engine_src: StringProperty(name="Engine Sources", subtype='DIR_PATH',
                               description="Folder containing the 'engine' package (empty: the copy inside the extension)")
    weights_dir: StringProperty(name="Weights", subtype='DIR_PATH', description="Folder with the JoyVASA/LivePortrait weights (empty: $JOYVASA_WEIGHTS)")
    device: EnumProperty(name="Device", items=DEVICES, default="auto")
    dtype: EnumProperty(name="Precision", items=DTYPES, default="auto")
    watchdog_s: IntProperty(name="Watchdog (s)", min=0, soft_max=3600, default=ec.DEFAULT_WATCHDOG_S,
                            description="Background and scripted runs: stop an engine that sends nothing for this "
                                        "many seconds and report it as hung, so batches never hang (0: off; "
                                        "$JOYVASA_WATCHDOG_S overrides)")
    output_dir: StringProperty(name="Output Folder", subtype='DIR_PATH', default="//joyvasa",
                               description="Motion files and videos ('//' = next to the saved .blend)")
    unsaved_output_dir: StringProperty(name="Unsaved Files", subtype='DIR_PATH', default="",
                                       description="Where outputs of a never-saved .blend go (empty: ~/JoyVASA)")

    def draw(self, context):
        layout = self.layout
        row = layout.row(align=True)
        row.prop(self, "engine_python")
        row.operator(JOYVASA_OT_detect_python.bl_idname, text="", icon='VIEWZOOM')
        layout.prop(self, "weights_dir")
        row = layout.row()
        row.prop(self, "device")
        row.prop(self, "dtype")
        layout.prop(self, "engine_src")
        layout.prop(self, "watchdog_s")
        row = layout.row()
        row.prop(self, "output_dir")
        row.prop(self, "unsaved_output_dir")
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
            if inst is not None and inst.error:
                layout.label(text=inst.error[:120], icon='ERROR')
        if runtime.DOCTOR:
            box = layout.box()
            synthetic = runtime.DOCTOR.get("synthetic")
            box.label(text=("Engine OK - " + ec.SYNTHETIC_NOTE) if runtime.DOCTOR["ok"] and synthetic
                      else "Engine OK" if runtime.DOCTOR["ok"] else "Engine problems",
                      icon='ERROR' if synthetic or not runtime.DOCTOR["ok"] else 'CHECKMARK')
            for line in runtime.DOCTOR["text"]:
                box.label(text=line[:140])


CLASSES = (JOYVASA_OT_check_engine, JOYVASA_OT_detect_python, JOYVASA_OT_install_engine,
           JOYVASA_OT_cancel_install, JoyVASAPreferences)
