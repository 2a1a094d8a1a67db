"""Process-wide state that must not be saved in the .blend: the running engine job, the warm
engine worker, the environment installer, the last "Check engine" answer. Only the UI thread
touches it."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .core.engine_client import EngineProcess, StepRunner
from .core.run_state import JobState
from .core.torch_build import Machine, probe_machine
from .core.worker import EngineWorker, WorkerJob

if TYPE_CHECKING:
    from .core.weights_fetch import FetchProgress


@dataclass
class Running:
    job: JobState
    proc: EngineProcess | WorkerJob
    kind: str                       # motion | animate
    params: dict[str, Any] = field(default_factory=dict)
    cancel: bool = False


@dataclass
class Fetch:
    """The Download Weights run (ops_weights.py): its engine process and what its events said."""
    proc: EngineProcess | None       # None: refused before starting (Allow Online Access off)
    progress: FetchProgress


CURRENT: Running | None = None       # at most one engine run at a time
LAST: JobState | None = None         # the last finished run (panel shows its message / error)
INSTALLER: StepRunner | None = None
DOCTOR: dict[str, Any] = {}          # {"ok": bool, "text": [...lines]}
WORKER: EngineWorker | None = None   # the warm engine (python -m engine serve), started on first use
FETCH: Fetch | None = None           # the last/current Download Weights run (independent of CURRENT)
MACHINE: Machine | None = None       # platform + GPU probe for Create Engine Environment (once per session)
LIVE: Any = None                     # the running live session (ops_live.Session), at most one
LIVE_LAST: dict[str, Any] = {}       # the Live panel's status line: {"state", "message"}


def machine() -> Machine:
    """This machine's platform and GPUs (nvidia-smi / ROCm probes run once; tests set MACHINE)."""
    global MACHINE
    if MACHINE is None:
        MACHINE = probe_machine()
    return MACHINE


def stop_worker() -> None:
    if WORKER is not None:
        WORKER.stop(timeout=5.0)


def cancel_all(stop_engine: bool = True) -> None:
    """Cancel the running job and the installer; stop the warm engine too unless ``stop_engine``
    is False (opening another .blend keeps the loaded networks: they belong to no scene)."""
    global CURRENT
    if LIVE is not None:
        LIVE.cancel()            # ops_live.Session: the shell ends it (restores the detached Actions)
    if CURRENT is not None:
        CURRENT.cancel = True
        CURRENT.proc.cancel(grace=3.0)
        CURRENT = None
    if stop_engine:
        stop_worker()
        if FETCH is not None and FETCH.proc is not None and not FETCH.progress.finished:
            FETCH.proc.cancel(grace=5.0)   # unregister: the download stops (a re-run resumes); a file load keeps it
    if INSTALLER is not None and not INSTALLER.done:
        INSTALLER.cancel()
