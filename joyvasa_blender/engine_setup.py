"""The add-on's engine setup inside Blender: the preferences as an :class:`EngineConfig`, the warm
engine for it, the environment installer's plan. No operators and no drawing (ops_engine.py,
prefs.py): what the operators and panels share, so none of them imports another.
"""

from pathlib import Path

import bpy

from .core import engine_client as ec
from .core import torch_build
from .core.engine_config import EngineConfig
from .core.worker import EngineWorker, worker_for
from . import runtime


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


def engine_config(context=None) -> EngineConfig:
    """Everything needed to start the engine (core/engine_config.py) from the stored preferences;
    ``python`` is None (and ``error`` says why) when no interpreter is usable."""
    p = get_prefs(context)
    return EngineConfig.resolve(
        engine_python=bpy.path.abspath(p.engine_python) if p and p.engine_python else "",
        engine_src=p.engine_src if p else "",
        weights_dir=bpy.path.abspath(p.weights_dir) if p and p.weights_dir else "",
        user_dir=user_dir(), device=p.device if p else "auto", dtype=p.dtype if p else "auto",
        watchdog_s=p.watchdog_s if p else None, keep_warm=bool(p.keep_warm) if p else True)


def worker(cfg: EngineConfig) -> EngineWorker:
    """The warm engine for this configuration (a preference change restarts it); started on first use."""
    runtime.WORKER = worker_for(runtime.WORKER, cfg.python, cfg.engine_src, cfg.env())
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


def engine_state_text() -> str:
    w = runtime.WORKER
    return w.describe() if w is not None else "Engine stopped (starts on first use)"


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
