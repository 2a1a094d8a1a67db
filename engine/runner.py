"""Runs a command under the protocol: events, cancellation, error mapping, exit codes.

Why a single runner: ``motion`` and ``animate`` (and any later command) must behave the same
for the add-on: the first line is ``hello``, failures are one ``error`` event with a stable
code, SIGINT/SIGTERM or a ``cancel`` stdin line stop at the next checkpoint, and stdout
carries nothing but protocol lines (library prints are redirected to stderr).
"""
from __future__ import annotations

import contextlib
import math
import platform
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any, Callable, NamedTuple

from engine import __version__
from engine import profiling
from engine.errors import Cancelled, classify_failure
from engine.profiling import Breakdown, peak_rss_mb  # noqa: F401  (peak_rss_mb re-exported)
from engine.contract.protocol import (EXIT_CANCELLED, EXIT_ERROR, EXIT_OK, PROTOCOL_MAJOR, PROTOCOL_MINOR,
                             EventWriter)

if TYPE_CHECKING:
    from types import FrameType


class CancelToken:
    """Set from a signal handler or the stdin reader; polled at checkpoints.

    A plain flag on purpose: ``threading.Event.set()`` inside a signal handler can deadlock
    when the signal interrupts the main thread while it holds the Event's lock.
    """

    def __init__(self) -> None:
        self._flag = False

    def set(self) -> None:
        self._flag = True

    @property
    def is_set(self) -> bool:
        return self._flag

    def check(self, stage: str = "", done: int = 0) -> None:
        if self._flag:
            raise Cancelled(stage, done)


class _JobEvents:
    """Emits through a shared :class:`EventWriter`, stamping every event with this request's ``job``."""

    def __init__(self, writer: EventWriter, job: str | None) -> None:
        self._writer = writer
        self.job = job

    @property
    def enabled(self) -> bool:
        return self._writer.enabled

    def emit(self, type_: str, **fields: Any) -> dict[str, Any]:
        if self.job is not None:
            fields = {"job": self.job, **fields}
        return self._writer.emit(type_, **fields)


class Reporter:
    """Progress/events for one job: JSON lines on stdout and/or readable lines on stderr.

    One-shot commands own their writer; the ``serve`` worker passes its shared writer and the
    request's ``job`` id so every event of the request carries it (and ``seq`` stays global).
    """

    def __init__(self, json_stdout: IO[str] | None, *, quiet: bool = False, job: str | None = None,
                 writer: EventWriter | None = None) -> None:
        self.events = _JobEvents(writer if writer is not None else EventWriter(json_stdout), job)
        self.quiet = quiet
        self.cancel = CancelToken()
        self._stage_start: dict[str, float] = {}
        self._last_emit: dict[str, float] = {}
        self._first_unit: dict[str, tuple[float, int]] = {}
        self.timings: dict[str, float] = {}
        self.breakdown = Breakdown()
        self.command = ""
        self.hello_sent = False

    # -- events ---------------------------------------------------------------------------
    def log(self, message: str) -> None:
        if not self.quiet:
            print(message, file=sys.stderr, flush=True)

    def hello(self, command: str, device: str = "cpu", dtype: str = "float32", **extra: Any) -> None:
        # echoed options may be non-finite (``--cfg-scale inf``): refused right after hello, but
        # hello itself must still be valid JSON
        extra = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in extra.items()}
        self.hello_sent = True
        torch_version = getattr(sys.modules.get("torch"), "__version__", None)
        self.events.emit("hello", engine_version=__version__, protocol=[PROTOCOL_MAJOR, PROTOCOL_MINOR],
                         python=platform.python_version(), torch=torch_version, device=device,
                         dtype=dtype, command=command, **extra)
        self.log(f"joyvasa-engine {__version__} {command} on {device} ({dtype})")

    def stage_begin(self, stage: str) -> None:
        self._stage_start[stage] = time.monotonic()

    def stage_end(self, stage: str) -> None:
        start = self._stage_start.pop(stage, None)
        if start is not None:
            self.timings[stage] = round(self.timings.get(stage, 0.0) + time.monotonic() - start, 3)

    def progress(self, stage: str, done: int, total: int, unit: str, *, force: bool = False,
                 **fields: Any) -> None:
        """Report ``done/total``; throttled to 10 events/s per stage (first and last always sent).
        ``fields`` are stage-specific extras of the event (``download``: the file and its bytes)."""
        self.cancel.check(stage, done)
        now = time.monotonic()
        start = self._stage_start.setdefault(stage, now)
        if done > 0:
            self._first_unit.setdefault(stage, (now, done))
        last = self._last_emit.get(stage, 0.0)
        if not (force or done in (0, total) or now - last >= 0.1):
            return
        self._last_emit[stage] = now
        rate = self._rate(stage, start, now, done)
        eta = (total - done) / rate if rate else None
        self.events.emit("progress", stage=stage, done=int(done), total=int(total), unit=unit,
                         eta_s=None if eta is None else round(eta, 2),
                         rate=None if rate is None else round(rate, 3), **fields)
        if not self.quiet:
            eta_txt = f" ETA {eta:.1f}s" if eta is not None else ""
            print(f"[{stage}] {done}/{total} {unit}{eta_txt}", file=sys.stderr, flush=True)

    def _rate(self, stage: str, start: float, now: float, done: int) -> float | None:
        """Units/s, measured from the end of the first unit once a second one is done: the first
        unit carries the warm-up (allocator, oneDNN kernels, lazy imports) and made the ETA of a long
        render start several times too high; with it excluded the ETA is right from frame 2."""
        if done <= 0:
            return None
        first = self._first_unit[stage]
        if done > first[1] and now > first[0]:
            return (done - first[1]) / (now - first[0])
        return done / (now - start) if now > start else None

    def artifact(self, kind: str, path: str) -> None:
        self.events.emit("artifact", kind=kind, path=str(path))
        self.log(f"wrote {kind}: {path}")

    def warning(self, code: str, message: str) -> None:
        self.events.emit("warning", code=code, message=message)
        self.log(f"warning: {message}")

    def done(self, outputs: dict[str, str], **extra: Any) -> None:
        self.events.emit("done", outputs=outputs, timings=self.timings, breakdown=self.breakdown.as_dict(),
                         breakdown_cpu=self.breakdown.cpu_dict(), peak_mem={"host_mb": round(peak_rss_mb(), 1)},
                         **extra)
        if self.breakdown.wall:
            self.log(f"time breakdown, wall (CPU) s: {self.breakdown.line()}")


class NullReporter(Reporter):
    """A reporter that tells no one: no events, no log lines (library calls and tests without a
    job). It still has a cancel token, timings and a breakdown, so code never asks "is there a
    reporter?"."""

    def __init__(self) -> None:
        super().__init__(None, quiet=True)


@dataclass(frozen=True)
class Done:
    """What a pipeline returns: the ``done`` event's ``outputs`` and its extra fields (doctor's
    ``report``, live totals)."""

    outputs: dict[str, str]
    extra: dict[str, Any] = field(default_factory=dict)


class JobError(NamedTuple):
    """The ``error`` (or ``cancelled``) that ended a job: its protocol code and message."""

    code: str
    message: str


@dataclass(frozen=True)
class JobResult:
    """How a job ended, as a value (the events said the same to the client): ``code`` is the exit
    code (EXIT_OK, EXIT_ERROR, EXIT_CANCELLED), ``outputs``/``extra`` the ``done`` event's,
    ``error`` the ``error`` event's code and message (code ``cancelled`` for a cancelled job)."""

    code: int
    outputs: dict[str, str] = field(default_factory=dict)
    error: JobError | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.code == EXIT_OK


def cancel_signals() -> list[int]:
    """Signals that mean "stop and clean up": SIGINT, SIGTERM, SIGHUP (terminal closed, ssh
    dropped) and Windows' SIGBREAK (console close)."""
    names = ("SIGINT", "SIGTERM", "SIGHUP", "SIGBREAK")
    return [getattr(signal, n) for n in names if hasattr(signal, n)]


def _install_cancel_sources(reporter: Reporter, watch_stdin: bool) -> dict[int, Any]:
    """Route SIGINT/SIGTERM/SIGHUP (and Windows SIGBREAK) and stdin ``cancel`` lines to the cancel
    token; returns the previous signal handlers so in-process callers get them back."""
    def on_signal(signum: int, frame: FrameType | None) -> None:  # noqa: ARG001
        reporter.cancel.set()

    previous: dict[int, Any] = {}
    for sig in cancel_signals():
        with contextlib.suppress(ValueError, OSError):
            previous[sig] = signal.signal(sig, on_signal)

    if watch_stdin and sys.stdin is not None and not sys.stdin.isatty():
        def read_stdin() -> None:
            from engine.stdin_requests import read_requests

            def on_request(req: dict[str, Any]) -> None:
                if req.get("type") == "cancel":
                    reporter.cancel.set()

            read_requests(sys.stdin, on_request, lambda message, job: None)  # only cancel matters here

        threading.Thread(target=read_stdin, name="stdin-cancel", daemon=True).start()
    return previous


def ignore_exit_signals() -> None:
    """Called by ``python -m engine`` just before the process exits. A late SIGINT/SIGTERM (the
    add-on and a user may both send one) would otherwise hit the interpreter's shutdown, where
    Python-level handlers revert to the default, and turn exit code 130 into "killed by SIGINT"."""
    for sig in cancel_signals():
        with contextlib.suppress(ValueError, OSError):
            signal.signal(sig, signal.SIG_IGN)


def run_job(reporter: Reporter, body: Callable[[Reporter], Done], *,
            cleanup: Callable[[], None] | None = None) -> JobResult:
    """Run ``body(reporter)`` and end with exactly one ``done``, ``error`` or ``cancelled`` event;
    returns the same ending as a :class:`JobResult`.

    ``cleanup`` runs on error or cancel (atomic writers already remove their own temp files).
    Shared by the one-shot commands, every request of the ``serve`` worker and every batch job.
    A failure before the body's ``hello`` still sends a ``hello`` first (the add-on expects it as
    the first line).
    """
    try:
        done = body(reporter)
        reporter.done(done.outputs, **done.extra)
        return JobResult(EXIT_OK, dict(done.outputs), None, dict(done.extra))
    except (Cancelled, KeyboardInterrupt) as exc:
        if cleanup:
            cleanup()
        _ensure_hello(reporter)
        at = {"stage": getattr(exc, "stage", ""), "done": getattr(exc, "done", 0)}
        reporter.events.emit("cancelled", at=at)
        print("cancelled; partial outputs removed", file=sys.stderr, flush=True)
        return JobResult(EXIT_CANCELLED, error=JobError("cancelled", "the job was cancelled"))
    except (Exception, MemoryError) as exc:  # noqa: BLE001 - every failure: one coded error event
        if cleanup:
            cleanup()
        _ensure_hello(reporter)  # the hello event is always the first line, even for early errors
        coded = classify_failure(exc, reporter.command or "animate")
        if coded is None:  # a bug: keep the traceback for the report
            traceback.print_exc(file=sys.stderr)
            error = JobError("internal", f"{type(exc).__name__}: {exc}")
        else:
            error = JobError(coded.code, str(coded))
            print(f"error [{coded.code}]: {coded}", file=sys.stderr, flush=True)
        reporter.events.emit("error", code=error.code, message=error.message, fatal=True)
        return JobResult(EXIT_ERROR, error=error)


def _ensure_hello(reporter: Reporter) -> None:
    if not reporter.hello_sent:
        reporter.hello(reporter.command or "unknown", device="unavailable", dtype="unknown")


def run_protocol_command(command: str, progress: str | None, body: Callable[[Reporter], Done],
                         *, cleanup: Callable[[], None] | None = None, quiet: bool = False) -> int:
    """One-shot command: :func:`run_job` plus the process-level guarantees.

    ``progress='json'`` sends events to the real stdout; in any case ``sys.stdout`` is pointed
    at stderr while the body runs so that stray prints cannot corrupt the channel. SIGINT/SIGTERM
    and a ``cancel`` line on stdin cancel the job.
    """
    real_stdout = sys.stdout
    reporter = Reporter(real_stdout if progress == "json" else None, quiet=quiet)
    reporter.command = command
    if profiling.COLD_PROCESS:
        age = profiling.process_age_s()
        if age is not None:  # interpreter + engine imports + argument parsing, before the job began
            reporter.breakdown.add("startup", age, time.process_time())
    previous_handlers = _install_cancel_sources(reporter, watch_stdin=progress == "json")
    sys.stdout = sys.stderr
    try:
        return run_job(reporter, body, cleanup=cleanup).code
    finally:
        sys.stdout = real_stdout
        for sig, handler in previous_handlers.items():
            with contextlib.suppress(ValueError, OSError, TypeError):
                signal.signal(sig, handler)
