"""What starting the engine needs, as one value: interpreter, sources, weights, device, precision.

Why a dataclass in core/: the preferences only draw and store settings; turning them into a
usable configuration (detect the interpreter, find the sources, the watchdog's override) is
logic, tested without Blender, and every engine start (one-shot runs, the warm worker, Check
Engine, downloads) reads the same fields from the same object.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from . import engine_client as ec


@dataclass(frozen=True)
class EngineConfig:
    python: str | None           # the engine's interpreter (None: none usable, ``error`` says why)
    why: str                     # where ``python`` came from, or why none was found
    engine_src: Path | None      # the folder holding the ``engine`` package
    weights: str                 # weights folder ("" = the engine's $JOYVASA_WEIGHTS)
    device: str = "auto"
    dtype: str = "auto"
    error: str | None = None     # why the engine cannot start (None: it can)
    watchdog_s: float = float(ec.DEFAULT_WATCHDOG_S)
    keep_warm: bool = True

    @classmethod
    def resolve(cls, *, engine_python: str = "", engine_src: str = "", weights_dir: str = "", user_dir: str = "",
                device: str = "auto", dtype: str = "auto", watchdog_s: float | None = None,
                keep_warm: bool = True) -> "EngineConfig":
        """The configuration for these preference values (paths already absolute)."""
        src = ec.find_engine_src(engine_src)
        python, why = ec.detect_interpreter(pref=engine_python, weights_dir=weights_dir, user_dir=user_dir,
                                            engine_src=src)
        error = None if python else why
        if src is None:
            error = "engine sources not found (reinstall the extension, or set Preferences > Engine Sources)"
        return cls(python, why, src, weights_dir or os.environ.get("JOYVASA_WEIGHTS", ""), device, dtype, error,
                   ec.watchdog_seconds(watchdog_s), keep_warm)

    def env(self) -> dict[str, str]:
        """The engine process's environment: its sources on PYTHONPATH, the weights folder."""
        env = {"PYTHONPATH": str(self.engine_src)}
        if self.weights:
            env["JOYVASA_WEIGHTS"] = self.weights
        return ec.clean_env(env)

    def job_prefs(self) -> dict[str, str]:
        """The preference fields a job takes (core/requests.py PREF_FIELDS)."""
        return {"weights": self.weights, "device": self.device, "dtype": self.dtype}
