"""One warm batch worker: runs job requests one after the other in its own process.

The same class runs in the local batch (in the ``engine batch`` process) and inside each Ray
actor. A result is a plain dict (it crosses process boundaries)::

    {"id", "ok", "outputs", "code", "message", "wall_s", "pid"}
"""
from __future__ import annotations

import os
import time
from typing import Any, Callable

from engine.errors import EngineError


class Worker:
    def __init__(self) -> None:
        from engine.pipeline.context import ModelCache

        self.cache = ModelCache()       # networks stay loaded between this worker's jobs
        self.jobs_run = 0

    def run(self, request: dict[str, Any], on_event: Callable[[dict], None] | None = None) -> dict[str, Any]:
        from engine.batch.execute import JobFailed, execute

        t0 = time.monotonic()
        result: dict[str, Any] = {"id": request["id"], "ok": False, "outputs": {}, "code": None, "message": "",
                                  "pid": os.getpid()}
        try:
            result["outputs"] = execute(request["command"], request["args"], on_event, self.cache, request["id"])
            result["ok"] = True
        except JobFailed as exc:
            result["code"], result["message"] = exc.code, str(exc)
        except EngineError as exc:
            result["code"], result["message"] = exc.code, str(exc)
        except Exception as exc:  # noqa: BLE001 - one job's bug must not end the worker
            result["code"], result["message"] = "internal", f"{type(exc).__name__}: {exc}"
        result["wall_s"] = round(time.monotonic() - t0, 3)
        result["model_loads"] = dict(self.cache.loads)      # cumulative: stays flat once warm
        self.jobs_run += 1
        return result
