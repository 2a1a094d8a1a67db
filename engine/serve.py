"""``python -m engine serve``: a long-lived worker that keeps the networks loaded between takes.

Why: a one-shot ``engine motion`` pays interpreter start-up, imports, construction and loading on
every take; an artist re-taking a line with a new seed only needs the sampler. The worker reads
requests (one JSON line each, see :mod:`engine.protocol`) from stdin, runs them one at a time in
the main thread as the CLI runs them: the request's ``args`` are the job's wire form
(:func:`engine.jobs.job_from_dict`), dispatched through :func:`engine.commands.run_job_pipeline`;
the worker keeps one :class:`~engine.pipeline.context.ModelCache` for its whole life. A reader thread handles ``cancel`` immediately; ``run`` and ``release`` are
queued in order. End of stdin: finish the queue, exit 0.
"""
from __future__ import annotations

import contextlib
import queue
import signal
import sys
import threading
from typing import IO, Any

from engine.commands import PIPELINES, run_job_pipeline
from engine.jobs import job_from_dict
from engine.pipeline.context import Context, ModelCache
from engine.protocol import PROTOCOL_MAJOR, PROTOCOL_MINOR, REQUEST_TYPES, EventWriter
from engine.runner import Reporter, run_job

class Worker:
    """The request loop. ``stdout`` receives protocol events only."""

    def __init__(self, stdin: IO[str], stdout: IO[str]) -> None:
        self.stdin = stdin
        self.events = EventWriter(stdout)
        self.models = ModelCache()
        self.commands = list(PIPELINES)
        self.requests: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._lock = threading.Lock()
        self._current: tuple[str, Reporter] | None = None
        self._cancelled_queued: set[str] = set()
        self.terminating = False   # SIGTERM: cancel the running job, then exit 143

    # -- stdin ------------------------------------------------------------------------------
    def _read(self) -> None:
        """The stdin thread (engine/stdin_requests.py): cancel now, queue the rest; bad lines get one
        non-fatal ``bad_request`` error each and the worker keeps serving."""
        from engine.stdin_requests import read_requests

        def on_request(req: dict[str, Any]) -> None:
            if req["type"] == "cancel":
                self.cancel(req.get("job"))
            else:
                self.requests.put(req)

        def on_bad(message: str, job: str | None) -> None:
            self.events.emit("error", **({"job": job} if job else {}), code="bad_request",
                             message=message, fatal=False)

        try:
            read_requests(self.stdin, on_request, on_bad)
        finally:
            self.requests.put(None)  # end of stdin

    def cancel(self, job: str | None) -> None:
        with self._lock:
            if self._current is not None and (job is None or job == self._current[0]):
                self._current[1].cancel.set()
            elif job is not None and any(r is not None and r.get("job") == job for r in list(self.requests.queue)):
                self._cancelled_queued.add(job)

    # -- requests ---------------------------------------------------------------------------
    def run_request(self, req: dict[str, Any]) -> None:
        job, command = req["job"], req["command"]
        rep = Reporter(None, job=job, writer=self.events)
        rep.command = command
        with self._lock:
            if job in self._cancelled_queued:
                self._cancelled_queued.discard(job)
                rep.hello(command, device="unknown", dtype="unknown")
                rep.events.emit("cancelled", at={"stage": "queued", "done": 0})
                return
            self._current = (job, rep)
        try:
            def body(r: Reporter) -> Any:    # an unknown command or a bad job: one bad_request
                return run_job_pipeline(job_from_dict(req.get("args") or {}, command), Context(r, self.models))

            run_job(rep, body)
        finally:
            with self._lock:
                self._current = None

    def release(self, req: dict[str, Any]) -> None:
        released = self.models.release()
        fields: dict[str, Any] = {"job": req["job"]} if "job" in req else {}
        from engine.profiling import peak_rss_mb

        self.events.emit("done", **fields, outputs={}, released=released,
                         peak_mem={"host_mb": round(peak_rss_mb(), 1)})
        print(f"released {released} cached network set(s)", file=sys.stderr, flush=True)

    def serve(self) -> int:
        self.events.emit("hello", engine_version=_version(), protocol=[PROTOCOL_MAJOR, PROTOCOL_MINOR],
                         python=sys.version.split()[0], torch=None, device="unknown", dtype="unknown",
                         command="serve", capabilities={"commands": list(self.commands),
                                                        "requests": list(REQUEST_TYPES)})
        threading.Thread(target=self._read, name="serve-stdin", daemon=True).start()
        try:
            while not self.terminating:
                req = self.requests.get()
                if req is None:
                    return 0
                if req["type"] == "run":
                    self.run_request(req)
                elif req["type"] == "release":
                    self.release(req)
        except Terminated:
            pass
        print("terminated (SIGTERM)", file=sys.stderr, flush=True)
        return EXIT_TERMINATED


#: the exit code of a worker ended by SIGTERM (128 + 15, what a shell reports for it)
EXIT_TERMINATED = 143


class Terminated(BaseException):
    """Raised by the SIGTERM handler while the worker waits for a request (no job to cancel)."""


def _version() -> str:
    from engine import __version__

    return __version__


def main() -> int:
    """Serve stdin → stdout; stray prints go to stderr; SIGINT cancels the running request."""
    real_stdout = sys.stdout
    sys.stdout = sys.stderr
    worker = Worker(sys.stdin, real_stdout)

    def on_sigint(signum: int, frame: Any) -> None:  # noqa: ARG001
        current = worker._current  # no lock in a signal handler (see runner.CancelToken)
        if current is not None:
            current[1].cancel.set()

    def on_sigterm(signum: int, frame: Any) -> None:  # noqa: ARG001
        """Like a one-shot command: the running job ends with ``cancelled`` (its atomic writers
        remove their partials), then the worker exits 143; idle, it exits at once."""
        worker.terminating = True
        current = worker._current
        if current is not None:
            current[1].cancel.set()
        else:
            raise Terminated

    with contextlib.suppress(ValueError, OSError):
        signal.signal(signal.SIGINT, on_sigint)
    with contextlib.suppress(ValueError, OSError, AttributeError):
        signal.signal(signal.SIGTERM, on_sigterm)
    try:
        return worker.serve()
    finally:
        sys.stdout = real_stdout
