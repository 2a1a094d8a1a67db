"""The warm engine: one ``python -m engine serve`` process that Blender keeps between takes (bpy-free).

Why: a one-shot engine run pays interpreter start-up, imports and network loading on every
Generate Motion / Render; the worker keeps the networks loaded, so a re-take with a new seed
costs only the sampling. Requests and events are the protocol's (``core/contract/protocol.py``: run /
cancel / release, every event carries its ``job``).

:class:`WorkerJob` has the same surface as :class:`~.engine_client.EngineProcess` (drain,
finished, returncode, request_cancel, enforce_cancel, cancel, stderr_tail, run_sync), so the
operators and :class:`~.jobs.JobState` treat a warm request and a one-shot run alike.

Failure handling: if the worker dies mid-request, the request ends as a crash (exit code of the
worker, stderr tail in the report) and the next request starts a fresh worker. A cancel that is
not honoured within the grace period kills the worker (the next request restarts it).
"""
from __future__ import annotations

import itertools
import os
import queue
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable

from .engine_client import CANCEL_GRACE_S, STDERR_TAIL, drain_queue, kill_process, pump_events, spawn_engine
from .contract.protocol import EXIT_CANCELLED, EXIT_ERROR, EXIT_OK, ProtocolError, hello_problem, make_request, parse_event

START_TIMEOUT_S = 120.0   # interpreter + engine imports; torch alone takes seconds on a cold disk
#: commands the add-on sends to the warm engine (those that load networks); others run one-shot
WARM_COMMANDS = ("motion", "animate", "doctor")
_ids = itertools.count(1)


class WorkerJob:
    """One request to the worker, seen like an engine process."""

    def __init__(self, worker: "EngineWorker", job_id: str, command: str) -> None:
        self.worker = worker
        self.job_id = job_id
        self.command = command
        self.events: "queue.Queue[dict[str, Any]]" = queue.Queue()
        self.cancel_requested = False
        self.watchdog_fired = False
        self._kill_at: float | None = None
        self._end: str | None = None          # done | error | cancelled | crash
        self._crash_code: int | None = None
        self.started = time.monotonic()

    # called by the worker's reader thread
    def _deliver(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind in ("done", "error", "cancelled") and self._end is None:
            self._end = str(kind)
        self.events.put(event)
        if self._end is not None:
            self.events.put({"type": "_eof"})

    def _crashed(self, code: int | None) -> None:
        if self._end is None:
            self._end, self._crash_code = "crash", code
            self.events.put({"type": "_eof"})

    # -- the EngineProcess surface ----------------------------------------------------------
    def drain(self) -> list[dict[str, Any]]:
        return drain_queue(self.events)

    def finished(self) -> bool:
        if self._end is None and not self.worker.alive():
            self.worker._reap()
        return self._end is not None

    def poll(self) -> int | None:
        return self.returncode if self.finished() else None

    @property
    def returncode(self) -> int | None:
        if self._end is None:
            return None
        if self._end == "crash":
            code = self._crash_code
            return code if code not in (None, 0) else EXIT_ERROR
        return {"done": EXIT_OK, "error": EXIT_ERROR, "cancelled": EXIT_CANCELLED}[self._end]

    def stderr_tail(self, n: int = 20) -> list[str]:
        return self.worker.stderr_tail(n)

    def request_cancel(self, grace: float = CANCEL_GRACE_S) -> None:
        if self.cancel_requested or self.finished():
            self.cancel_requested = True
            return
        self.cancel_requested = True
        self._kill_at = time.monotonic() + grace
        self.worker.send(make_request("cancel", self.job_id))

    def enforce_cancel(self) -> None:
        """Kill the worker when a cancel is not honoured in time (it restarts on the next request)."""
        if self._kill_at is not None and time.monotonic() > self._kill_at and not self.finished():
            self.worker.kill()
            self._crashed(EXIT_CANCELLED)

    def cancel(self, grace: float = CANCEL_GRACE_S) -> None:
        self.request_cancel(grace)
        end = time.monotonic() + grace
        while not self.finished() and time.monotonic() < end:
            time.sleep(0.02)
        if not self.finished():
            self.worker.kill()
            self._crashed(EXIT_CANCELLED)

    def kill(self) -> None:
        self.worker.kill()
        self._crashed(EXIT_CANCELLED)

    def join(self, timeout: float = 5.0) -> None:  # noqa: ARG002 - nothing per request to join
        return None

    def run_sync(self, on_event: Callable[[dict[str, Any]], None] | None = None,
                 should_cancel: Callable[[], bool] | None = None, timeout: float | None = None,
                 poll_s: float = 0.05, idle_timeout: float | None = None) -> int:
        """Blocking wait for this request (background mode, batches, tests); ``idle_timeout`` is the
        watchdog of :class:`~.engine_client.EngineProcess`: silence that long = hung, cancelled."""
        pump_events(self, on_event, should_cancel, timeout, poll_s, idle_timeout,
                    tick=self.finished)  # finished() notices a dead worker
        for ev in self.drain():
            if ev.get("type") != "_eof" and on_event:
                on_event(ev)
        rc = self.returncode
        return EXIT_ERROR if rc is None else rc


class EngineWorker:
    """A ``python -m engine serve`` process for one (interpreter, sources, environment)."""

    def __init__(self, python: str, cwd: str | os.PathLike[str] | None, env: dict[str, str]) -> None:
        self.key = (str(python), str(cwd or ""), tuple(sorted(env.items())))
        self.argv = [str(python), "-m", "engine", "serve"]
        self.cwd = str(cwd) if cwd else None
        self.env = env
        self.proc: subprocess.Popen[str] | None = None
        self.hello: dict[str, Any] | None = None
        self.jobs: dict[str, WorkerJob] = {}
        self.current: WorkerJob | None = None
        self.requests = 0
        self.starts = 0
        self.last_used = time.monotonic()
        self.last_exit: int | None = None
        self.last_crash: list[str] = []
        self._stderr: list[str] = []
        self._stderr_t = time.monotonic()
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- lifecycle ----------------------------------------------------------------------------
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def state(self) -> str:
        """stopped | starting | ready | busy | crashed (the panel shows it)."""
        if not self.alive():
            return "crashed" if self.last_crash else "stopped"
        if not self._ready.is_set():
            return "starting"
        return "busy" if self.current is not None and not self.current.finished() else "ready"

    def start(self) -> "EngineWorker":
        if self.alive():
            return self
        self.hello, self._stderr = None, []
        self._ready.clear()
        self.proc = spawn_engine(self.argv, self.cwd, self.env)
        self.starts += 1
        self._threads = [threading.Thread(target=fn, args=(self.proc,), daemon=True)
                         for fn in (self._read_stdout, self._read_stderr)]
        for th in self._threads:
            th.start()
        return self

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> bool:
        return self._ready.wait(timeout)

    def _read_stdout(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            try:
                event = parse_event(line)
            except ProtocolError as exc:
                if "protocol v" in str(exc):
                    self._fail_all({"type": "error", "code": "protocol", "message": str(exc), "fatal": True})
                continue
            if event is None:
                continue
            job_id = event.get("job")
            if job_id is None and event.get("type") == "hello" and event.get("command") == "serve":
                problem = hello_problem(event)
                if problem:  # an engine of another protocol major: nothing it says can be trusted
                    self._fail_all({"type": "error", "code": "protocol", "message": problem, "fatal": True})
                    self.kill()
                    return
                self.hello = event
                self._ready.set()
                continue
            with self._lock:
                target = self.jobs.get(str(job_id)) if job_id is not None else None
            if target is None:
                continue
            problem = hello_problem(event) if event.get("type") == "hello" else None
            target._deliver(event)
            if problem:  # as EngineProcess does: refuse the request, ask the engine to stop it
                target._deliver({"type": "error", "code": "protocol", "message": problem, "fatal": True,
                                 "job": target.job_id})
                self.send(make_request("cancel", target.job_id))
        proc.wait()
        self._reap()

    def _read_stderr(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            with self._lock:
                self._stderr_t = time.monotonic()
                self._stderr.append(line.rstrip("\n"))
                if len(self._stderr) > STDERR_TAIL:
                    del self._stderr[: len(self._stderr) - STDERR_TAIL]

    def _fail_all(self, event: dict[str, Any]) -> None:
        with self._lock:
            pending = [j for j in self.jobs.values() if j._end is None]
        for j in pending:
            j._deliver(dict(event, job=j.job_id))

    def _reap(self) -> None:
        """The process is gone: every unfinished request ends as a crash with the stderr tail."""
        p = self.proc
        if p is None or p.poll() is None:
            return
        self.last_exit = p.returncode
        with self._lock:
            pending = [j for j in self.jobs.values() if j._end is None]
            tail = list(self._stderr[-40:])
        if pending:
            self.last_crash = tail or [f"engine worker exited with code {p.returncode}"]
        for j in pending:
            j._crashed(p.returncode)

    def stderr_tail(self, n: int = 20, settle_s: float = 0.25) -> list[str]:
        """The last ``n`` log lines. stdout and stderr are read by separate threads, so a log line
        written just before a request's final event may still be in flight: wait until stderr has
        been read for 0.1 s and quiet for 50 ms (at most ``settle_s``)."""
        start = time.monotonic()
        while settle_s > 0 and time.monotonic() - start < settle_s:
            now = time.monotonic()
            if now - start >= 0.1 and now - self._stderr_t >= 0.05:
                break
            time.sleep(0.01)
        with self._lock:
            return list(self._stderr[-n:])

    def send(self, line: str) -> bool:
        p = self.proc
        if p is None or p.poll() is not None or p.stdin is None:
            return False
        try:
            p.stdin.write(line)
            p.stdin.flush()
            return True
        except (OSError, ValueError):
            return False

    # -- requests -----------------------------------------------------------------------------
    def submit(self, command: str, args: dict[str, Any], request: str = "run") -> WorkerJob:
        """Start (or restart) the worker if needed and send one run request; ``args`` is the job
        dict of core/requests.py (the engine's job wire form). ``request="live_start"`` starts a
        live session instead (``command`` "live"; its events are the job's, :meth:`live_stop` ends it)."""
        if not self.alive():
            self.start()
        job = WorkerJob(self, f"{os.getpid()}-{next(_ids)}", command)
        with self._lock:
            self.jobs[job.job_id] = job
            # keep only unfinished and the last few finished requests
            for old in [k for k, j in self.jobs.items() if j._end is not None][:-8]:
                del self.jobs[old]
        self.current = job
        self.requests += 1
        self.last_used = time.monotonic()
        self.last_crash = []
        line = (make_request("run", job.job_id, command=command, args=args) if request == "run"
                else make_request(request, job.job_id, args=args))
        if not self.send(line):
            self._reap()
            job._crashed(self.proc.poll() if self.proc else None)
        return job

    def live_stop(self, job: WorkerJob) -> bool:
        """End ``job``'s live session: the engine flushes, writes the WAV and the motion file, then ``done``."""
        self.last_used = time.monotonic()
        return self.send(make_request("live_stop", job.job_id))

    def release(self) -> bool:
        """Ask the worker to free every cached network (and GPU memory)."""
        self.last_used = time.monotonic()
        return self.send(make_request("release"))

    def stop(self, timeout: float = 10.0) -> int | None:
        """End of stdin: the worker finishes its queue and exits 0; killed after ``timeout``."""
        p = self.proc
        if p is None:
            return None
        if p.poll() is None:
            try:
                assert p.stdin is not None
                p.stdin.close()
            except (OSError, ValueError, AssertionError):
                pass
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        for th in self._threads:
            th.join(2.0)
        self.last_exit = p.returncode
        return p.returncode

    def kill(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        kill_process(self.proc)
        self._reap()

    def idle_for(self) -> float:
        return time.monotonic() - self.last_used

    def stop_if_idle(self, idle_timeout_s: float) -> bool:
        """Stop a ready worker that has not been used for ``idle_timeout_s`` (0 = never)."""
        if idle_timeout_s > 0 and self.state == "ready" and self.idle_for() > idle_timeout_s:
            self.stop()
            return True
        return False

    def describe(self) -> str:
        """One line for the panel and preferences."""
        st = self.state
        if st == "stopped":
            return "Engine stopped (starts on first use)"
        if st == "crashed":
            return f"Engine crashed (exit {self.last_exit}); restarts on the next request"
        pid = self.proc.pid if self.proc else "?"
        if st == "starting":
            return f"Engine starting (pid {pid})"
        if st == "busy":
            return f"Engine busy (pid {pid}, request {self.requests})"
        return f"Engine warm (pid {pid}, {self.requests} request(s), idle {self.idle_for():.0f} s)"


def worker_for(current: EngineWorker | None, python: str, cwd: Path | str | None,
               env: dict[str, str]) -> EngineWorker:
    """Reuse ``current`` when it was started for the same interpreter, sources and environment;
    otherwise stop it and make a new one (changing the preferences restarts the engine)."""
    fresh = EngineWorker(python, cwd, env)
    if current is not None and current.key == fresh.key:
        return current
    if current is not None:
        current.stop(timeout=5.0)
    return fresh
