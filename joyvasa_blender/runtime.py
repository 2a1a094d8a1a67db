"""Process-wide state that must not be saved in the .blend: the running engine job, the
environment installer, the last "Check engine" answer. Only the UI thread touches it."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .core.engine_client import EngineProcess, StepRunner
from .core.jobs import JobState


@dataclass
class Running:
    job: JobState
    proc: EngineProcess
    kind: str                       # motion | animate
    params: dict[str, Any] = field(default_factory=dict)
    cancel: bool = False


CURRENT: Running | None = None       # at most one engine run at a time
LAST: JobState | None = None         # the last finished run (panel shows its message / error)
INSTALLER: StepRunner | None = None
DOCTOR: dict[str, Any] = {}          # {"ok": bool, "text": [...lines]}


def cancel_all() -> None:
    """Stop everything (unregister, file load): kill the engine and the installer."""
    global CURRENT
    if CURRENT is not None:
        CURRENT.cancel = True
        CURRENT.proc.cancel(grace=3.0)
        CURRENT = None
    if INSTALLER is not None and not INSTALLER.done:
        INSTALLER.cancel()
