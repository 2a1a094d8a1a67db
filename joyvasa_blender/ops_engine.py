"""Operators that manage the engine: Start / Stop / Release Memory of the warm engine, Check Engine,
Detect (the interpreter), Create Engine Environment. Every engine start goes through the one
mechanism of core/engine_client.py (``EngineProcess``) or the warm worker (core/worker.py).
"""

import bpy

from .core import engine_client as ec
from .core import requests
from .core.engine_client import EngineProcess
from .engine_setup import _poll_installer, engine_config, engine_state_text, get_prefs, install_plan, worker
from . import runtime


def input_devices(report: object) -> list[str]:
    """The microphone names of a doctor report (``microphones.devices``; the Live panel's menu)."""
    mics = report.get("microphones") if isinstance(report, dict) else None
    devices = mics.get("devices") if isinstance(mics, dict) else None
    names = [d.get("name") if isinstance(d, dict) else d for d in (devices if isinstance(devices, list) else [])]
    return [str(n) for n in names if isinstance(n, str) and n]


class JOYVASA_OT_engine_start(bpy.types.Operator):
    """Start the warm engine now (it also starts by itself on first use)"""
    bl_idname = "joyvasa.engine_start"
    bl_label = "Start Engine"

    def execute(self, context):
        cfg = engine_config(context)
        if cfg.error:
            self.report({'ERROR'}, cfg.error)
            return {'CANCELLED'}
        try:
            worker(cfg).start()
        except OSError as exc:
            self.report({'ERROR'}, f"could not start the engine ({cfg.python}): {exc}")
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
    """Run the engine's doctor with the configured interpreter (warm or one-shot) and show the answer"""
    bl_idname = "joyvasa.check_engine"
    bl_label = "Check Engine"

    def execute(self, context):
        cfg = engine_config(context)
        if cfg.error:
            runtime.DOCTOR = {"ok": False, "text": [cfg.error]}
            self.report({'ERROR'}, cfg.error)
            return {'CANCELLED'}
        job = requests.job_dict("doctor", weights=cfg.weights or None)
        events: list = []
        try:   # a doctor job like any other: warm (the check also warms the engine up) or one-shot
            if cfg.keep_warm:
                proc = worker(cfg).submit("doctor", job)
            else:
                proc = EngineProcess(requests.one_shot_argv(cfg.python), cwd=cfg.engine_src, env=cfg.env(),
                                     stdin_text=requests.to_line(job)).start()
            rc = proc.run_sync(events.append, timeout=300)
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
            failure += [ln for ln in proc.stderr_tail(8) if ln.strip()]
        return self._show(cfg, report, failure, rc == 0, warm=cfg.keep_warm)

    def _show(self, cfg, report, failure, rc_ok, warm=False):
        """The same answer whether the one-shot doctor or the warm engine ran it."""
        lines = [f"Python: {cfg.python} ({cfg.why})"]
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
        if not cfg.python:
            self.report({'ERROR'}, cfg.why)
            return {'CANCELLED'}
        p.engine_python = cfg.python
        self.report({'INFO'}, f"Engine Python: {cfg.why}")
        return {'FINISHED'}


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


CLASSES = (JOYVASA_OT_check_engine, JOYVASA_OT_detect_python, JOYVASA_OT_install_engine,
           JOYVASA_OT_cancel_install, JOYVASA_OT_engine_start, JOYVASA_OT_engine_stop, JOYVASA_OT_engine_release)
