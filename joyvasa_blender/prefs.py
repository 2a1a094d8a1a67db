"""Add-on preferences: the engine's interpreter, weights, device, precision; engine checks;
the warm engine (Start / Stop / Release Memory, idle timeout); Download Weights (ops_weights.py).

The engine runs in its own Python (a virtual environment with torch); this is never
Blender's Python. "Create Engine Environment" makes one in the add-on's user folder. With
"Keep Engine Warm" (default) one ``python -m engine serve`` process serves every Generate
Motion, Render and Check Engine, so the networks load once per session (core/worker.py).
"""

import json
import os
import subprocess
from pathlib import Path

import bpy
from bpy.props import BoolProperty, EnumProperty, IntProperty, StringProperty

from .core import engine_client as ec
from .core import torch_build
from .core.worker import EngineWorker, worker_for
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
            "watchdog_s": ec.watchdog_seconds(p.watchdog_s if p else None),
            "keep_warm": bool(p.keep_warm) if p else True}


def engine_env(cfg: dict) -> dict:
    env = {"PYTHONPATH": str(cfg["engine_src"])}
    if cfg["weights"]:
        env["JOYVASA_WEIGHTS"] = cfg["weights"]
    return ec.clean_env(env)


def worker(cfg: dict) -> EngineWorker:
    """The warm engine for this configuration (a preference change restarts it); started on first use."""
    runtime.WORKER = worker_for(runtime.WORKER, cfg["python"], cfg["engine_src"], engine_env(cfg))
    if not bpy.app.timers.is_registered(_idle_check):
        bpy.app.timers.register(_idle_check, first_interval=30.0, persistent=True)
    return runtime.WORKER


def _idle_check():
    """Stop the warm engine after the idle timeout (frees its memory); runs every 30 s while it exists."""
    w = runtime.WORKER
    if w is None or not w.alive():
        return None
    p = get_prefs()
    if p is not None and runtime.CURRENT is None:
        w.stop_if_idle(60.0 * p.idle_minutes)
    return 30.0


def input_devices(report: object) -> list[str]:
    """The microphone names of a doctor report (``microphones.devices``; the Live panel's menu)."""
    mics = report.get("microphones") if isinstance(report, dict) else None
    devices = mics.get("devices") if isinstance(mics, dict) else None
    names = [d.get("name") if isinstance(d, dict) else d for d in (devices if isinstance(devices, list) else [])]
    return [str(n) for n in names if isinstance(n, str) and n]


def engine_state_text() -> str:
    w = runtime.WORKER
    return w.describe() if w is not None else "Engine stopped (starts on first use)"


class JOYVASA_OT_engine_start(bpy.types.Operator):
    """Start the warm engine now (it also starts by itself on first use)"""
    bl_idname = "joyvasa.engine_start"
    bl_label = "Start Engine"

    def execute(self, context):
        cfg = engine_config(context)
        if cfg["error"]:
            self.report({'ERROR'}, cfg["error"])
            return {'CANCELLED'}
        try:
            worker(cfg).start()
        except OSError as exc:
            self.report({'ERROR'}, f"could not start the engine ({cfg['python']}): {exc}")
            return {'CANCELLED'}
        self.report({'INFO'}, engine_state_text())
        return {'FINISHED'}


class JOYVASA_OT_engine_stop(bpy.types.Operator):
    """Stop the warm engine (frees all its memory; the next request starts it again)"""
    bl_idname = "joyvasa.engine_stop"
    bl_label = "Stop Engine"

    @classmethod
    def poll(cls, context):
        return runtime.WORKER is not None and runtime.WORKER.alive() and runtime.CURRENT is None

    def execute(self, context):
        runtime.stop_worker()
        self.report({'INFO'}, "Engine stopped")
        return {'FINISHED'}


class JOYVASA_OT_engine_release(bpy.types.Operator):
    """Free the engine's loaded networks and GPU memory (e.g. before rendering with Cycles); the engine stays running"""
    bl_idname = "joyvasa.engine_release"
    bl_label = "Release Memory"

    @classmethod
    def poll(cls, context):
        return runtime.WORKER is not None and runtime.WORKER.alive()

    def execute(self, context):
        ok = runtime.WORKER.release()
        self.report({'INFO'} if ok else {'WARNING'}, "Engine memory released" if ok else "The engine is not running")
        return {'FINISHED'}


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
        if cfg["keep_warm"]:
            return self._check_warm(cfg)
        argv = ec.engine_argv(cfg["python"], "doctor", ["--json"], weights=cfg["weights"])
        try:
            cp = subprocess.run(argv, cwd=str(cfg["engine_src"]), env=engine_env(cfg), capture_output=True,
                                text=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as exc:
            runtime.DOCTOR = {"ok": False, "text": [f"engine doctor could not run: {exc}"]}
            self.report({'ERROR'}, runtime.DOCTOR["text"][0])
            return {'CANCELLED'}
        try:
            report, failure = json.loads(cp.stdout), []
        except json.JSONDecodeError:
            report = None
            failure = ["engine doctor did not answer JSON (exit %d):" % cp.returncode]
            failure += [ln for ln in (cp.stdout + cp.stderr).splitlines() if ln.strip()][-8:]
        return self._show(cfg, report, failure, cp.returncode == 0)

    def _check_warm(self, cfg):
        """``doctor`` as a request to the warm engine (starting it): the check also warms it up."""
        events = []
        try:
            rc = worker(cfg).submit("doctor", {"weights": cfg["weights"]} if cfg["weights"] else {}).run_sync(
                events.append, timeout=300)
        except OSError as exc:
            runtime.DOCTOR = {"ok": False, "text": [f"the engine could not start: {exc}"]}
            self.report({'ERROR'}, runtime.DOCTOR["text"][0])
            return {'CANCELLED'}
        done = next((e for e in events if e.get("type") == "done"), None)
        report = done.get("report") if done is not None and isinstance(done.get("report"), dict) else None
        failure = []
        if report is None:
            err = next((e for e in events if e.get("type") == "error"), None)
            failure = [f"engine doctor failed (exit {rc}): " + (err["message"] if err else "no answer")]
            failure += [ln for ln in runtime.WORKER.stderr_tail(8) if ln.strip()]
        return self._show(cfg, report, failure, rc == 0, warm=True)

    def _show(self, cfg, report, failure, rc_ok, warm=False):
        """The same answer whether the one-shot doctor or the warm engine ran it."""
        lines = [f"Python: {cfg['python']} ({cfg['why']})"]
        if report is not None:
            ok = bool(report.get("ok", rc_ok))
            synthetic = bool(report.get("synthetic"))
            lines += ec.summarize_doctor(report)
        else:
            ok, synthetic = False, False
            lines += failure
        if warm:
            lines.append(engine_state_text())
        devices = report.get("devices") if isinstance(report, dict) and isinstance(report.get("devices"), dict) else {}
        gpu_warning = bool(devices.get("gpu_warning"))
        runtime.DOCTOR = {"ok": ok, "text": lines, "synthetic": synthetic, "device": str(devices.get("in_use") or ""),
                          "gpu_warning": gpu_warning, "inputs": input_devices(report)}
        if ok and gpu_warning:
            self.report({'WARNING'}, f"Engine OK, but {devices['in_use']}")
        elif ok and synthetic:
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


def install_plan(context=None) -> tuple[torch_build.TorchChoice, list[tuple[str, list[str]]]] | str:
    """What Create Engine Environment will run: the torch choice for this machine (Torch Build
    preference, probed GPU) and the command lines; a string says why nothing can run."""
    p = get_prefs(context)
    src = ec.find_engine_src(p.engine_src if p else "")
    req = src / "requirements.txt" if src else None
    if req is None or not req.exists():
        return "engine requirements.txt not found next to the engine sources"
    base = ec.base_python_for_venv()
    if base is None:
        return "no Python found to create the environment with"
    try:
        choice = torch_build.choose(runtime.machine(), p.torch_build if p else "auto")
    except ValueError as exc:
        return str(exc)
    return choice, torch_build.install_steps(base, Path(user_dir()) / "venv", req, choice)


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
    """(Re)create the engine's virtual environment in the add-on's user folder: torch built for this machine's GPU (see Torch Build), then the engine's requirements (runs in the background; large download)"""
    bl_idname = "joyvasa.install_engine"
    bl_label = "Create Engine Environment"

    def execute(self, context):
        if runtime.INSTALLER is not None and not runtime.INSTALLER.done:
            self.report({'WARNING'}, "Already installing")
            return {'CANCELLED'}
        plan = install_plan(context)
        if isinstance(plan, str):
            self.report({'ERROR'}, plan)
            return {'CANCELLED'}
        choice, steps = plan
        if runtime.CURRENT is not None:
            self.report({'ERROR'}, "an engine job is running: cancel it before recreating the environment")
            return {'CANCELLED'}
        runtime.stop_worker()      # the warm engine may run from this venv (files in use on Windows)
        self.report({'INFO'}, f"Installing {choice.summary}")
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
        from .ops_weights import draw_download
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


CLASSES = (JOYVASA_OT_check_engine, JOYVASA_OT_detect_python, JOYVASA_OT_install_engine,
           JOYVASA_OT_cancel_install, JOYVASA_OT_engine_start, JOYVASA_OT_engine_stop, JOYVASA_OT_engine_release,
           JoyVASAPreferences)
