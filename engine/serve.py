"""``python -m engine serve``: a long-lived worker that keeps the networks loaded between takes.

Why: a one-shot ``engine motion`` pays interpreter start-up, imports, construction and loading on
every take; an artist re-taking a line with a new seed only needs the sampler. The worker reads
requests (one JSON line each, see :mod:`engine.contract.protocol`) from stdin, runs them one at a time in
the main thread as the CLI runs them: the request's ``args`` are the job's wire form
(:func:`engine.jobs.job_from_dict`), dispatched through :func:`engine.pipeline.run_pipeline`;
the worker keeps one :class:`~engine.pipeline.context.ModelCache` for its whole life. A reader thread handles ``cancel`` immediately; ``run`` and ``release`` are
queued in order. End of stdin: finish the queue, exit 0.

Live sessions (protocol 1.5): ``live_start`` is queued like ``run`` and runs in the main thread
(engine/pipeline/live.py) while the reader thread goes on reading: ``push_pcm`` goes straight into
the session's audio queue and ``live_stop`` ends its audio, both from the reader, so neither waits
behind a window. A bad push_pcm, one for no session or another job, a second live_start or a run
during a session is one non-fatal ``bad_request``; the worker keeps serving afterwards.
"""
from __future__ import annotations

import contextlib
import queue
import signal
import sys
import threading
from typing import IO, TYPE_CHECKING, Any

from engine.contract.protocol import REQUEST_TYPES, EventWriter
from engine.errors import BadRequest
from engine.jobs import LiveJob, job_from_dict
from engine.pipeline import Context, ModelCache, pipeline_commands, run_pipeline
from engine.runner import Done, Reporter, run_job

if TYPE_CHECKING:
    from types import FrameType

    from engine.live.session import LiveSession
    from engine.live.sources import PcmSource

class _LiveSlot:
    """The one live session of the worker, from its live_start until its last event."""

    def __init__(self, job: str, pcm: PcmSource | None) -> None:
        self.job = job
        self.pcm = pcm            # the push_pcm queue for source pcm, else None
        self.session: LiveSession | None = None
        self.stop_requested = False


class Worker:
    """The request loop. ``stdout`` receives protocol events only."""

    def __init__(self, stdin: IO[str], stdout: IO[str]) -> None:
        self.stdin = stdin
        self.events = EventWriter(stdout)
        self.models = ModelCache()
        self.commands = pipeline_commands()
        self.requests: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._lock = threading.Lock()
        self._current: tuple[str, Reporter] | None = None
        self._cancelled_queued: set[str] = set()
        self._live: _LiveSlot | None = None
        self.terminating = False   # SIGTERM: cancel the running job, then exit 143

    # -- stdin ------------------------------------------------------------------------------
    def _read(self) -> None:
        """The stdin thread (engine/stdin_requests.py): cancel now, queue the rest; bad lines get one
        non-fatal ``bad_request`` error each and the worker keeps serving."""
        from engine.stdin_requests import read_requests

        def on_request(req: dict[str, Any]) -> None:
            try:
                if req["type"] == "cancel":
                    self.cancel(req.get("job"))
                elif req["type"] == "push_pcm":
                    self.push_pcm(req)
                elif req["type"] == "live_stop":
                    self.live_stop(req)
                elif req["type"] == "live_start":
                    self.queue_live(req)
                elif req["type"] == "run" and req.get("command") == "live":
                    raise BadRequest("a live job runs with a live_start request (then push_pcm / live_stop), not run")
                elif req["type"] == "run" and self._live is not None:
                    raise BadRequest(f"live session {self._live.job!r} is running: send live_stop (or cancel) "
                                     "before a run request")
                else:
                    self.requests.put(req)
            except BadRequest as exc:
                on_bad(str(exc), req.get("job"))

        def on_bad(message: str, job: str | None) -> None:
            self.events.emit("error", **({"job": job} if job else {}), code="bad_request",
                             message=message, fatal=False)

        try:
            read_requests(self.stdin, on_request, on_bad)
        finally:
            slot = self._live        # no client any more: a live session ends as with live_stop
            if slot is not None:
                slot.stop_requested = True
                if slot.pcm is not None:
                    slot.pcm.stop()
                if slot.session is not None:
                    slot.session.stop()
            self.requests.put(None)  # end of stdin

    def cancel(self, job: str | None) -> None:
        with self._lock:
            if self._current is not None and (job is None or job == self._current[0]):
                self._current[1].cancel.set()
            elif job is not None and any(r is not None and r.get("job") == job for r in list(self.requests.queue)):
                self._cancelled_queued.add(job)

    # -- live (reader thread) ------------------------------------------------------------------
    def _slot(self, req: dict[str, Any]) -> _LiveSlot:
        with self._lock:
            slot = self._live
        if slot is None:
            raise BadRequest(f"{req['type']}: no live session is running (send live_start first)")
        if req.get("job") != slot.job:
            raise BadRequest(f"{req['type']} for job {req.get('job')!r}, but the live session is {slot.job!r}")
        return slot

    def queue_live(self, req: dict[str, Any]) -> None:
        """Reserve the worker's one live session now, so push_pcm right after live_start is kept."""
        from engine.live.sources import PcmSource

        with self._lock:
            if self._live is not None:
                raise BadRequest(f"live session {self._live.job!r} is already running: one at a time "
                                 "(send live_stop first)")
            args = req.get("args") or {}
            self._live = _LiveSlot(req["job"], PcmSource() if args.get("source") == "pcm" else None)
        self.requests.put(req)

    def push_pcm(self, req: dict[str, Any]) -> None:
        slot = self._slot(req)
        if slot.pcm is None:
            raise BadRequest(f"live session {slot.job!r} does not take push_pcm (its source is not pcm)")
        slot.pcm.push(req.get("pcm16"), req.get("rate"))

    def live_stop(self, req: dict[str, Any]) -> None:
        slot = self._slot(req)
        slot.stop_requested = True
        if slot.pcm is not None:
            slot.pcm.stop()
        if slot.session is not None:
            slot.session.stop()

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
            def body(r: Reporter) -> Done:   # an unknown command or a bad job: one bad_request
                return run_pipeline(job_from_dict(req.get("args") or {}, command), Context(r, self.models))

            run_job(rep, body)
        finally:
            with self._lock:
                self._current = None

    def run_live(self, req: dict[str, Any]) -> None:
        """A live_start: the session runs here (main thread) until live_stop, the end of its file, or cancel."""
        from engine.pipeline.live import run_live

        job = req["job"]
        rep = Reporter(None, job=job, writer=self.events)
        rep.command = "live"
        slot = self._live
        with self._lock:
            if job in self._cancelled_queued:
                self._cancelled_queued.discard(job)
                self._live = None
                rep.hello("live", device="unknown", dtype="unknown")
                rep.events.emit("cancelled", at={"stage": "queued", "done": 0})
                return
            self._current = (job, rep)

        def on_session(session: LiveSession) -> None:
            if slot is not None:
                slot.session = session
                if slot.stop_requested:
                    session.stop()

        def end_session() -> None:   # before the last event: a request sent after it sees no session
            with self._lock:
                self._live = None
            if slot is not None and slot.pcm is not None:
                slot.pcm.close()

        try:
            def body(r: Reporter) -> Done:
                try:
                    live = job_from_dict(req.get("args") or {}, "live")
                    assert isinstance(live, LiveJob)
                    return run_live(live, Context(r, self.models), pcm=slot.pcm if slot else None,
                                    on_session=on_session)
                finally:
                    end_session()

            run_job(rep, body)
        finally:
            end_session()
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
        Reporter(None, quiet=True, writer=self.events).hello(
            "serve", device="unknown", dtype="unknown",
            capabilities={"commands": list(self.commands), "requests": list(REQUEST_TYPES)})
        threading.Thread(target=self._read, name="serve-stdin", daemon=True).start()
        try:
            while not self.terminating:
                req = self.requests.get()
                if req is None:
                    return 0
                if req["type"] == "run":
                    self.run_request(req)
                elif req["type"] == "live_start":
                    self.run_live(req)
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


def main() -> int:
    """Serve stdin → stdout; stray prints go to stderr; SIGINT cancels the running request."""
    real_stdout = sys.stdout
    sys.stdout = sys.stderr
    worker = Worker(sys.stdin, real_stdout)

    def on_sigint(signum: int, frame: FrameType | None) -> None:  # noqa: ARG001
        current = worker._current  # no lock in a signal handler (see runner.CancelToken)
        if current is not None:
            current[1].cancel.set()

    def on_sigterm(signum: int, frame: FrameType | None) -> None:  # noqa: ARG001
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
