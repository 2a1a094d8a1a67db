"""Runs the engine as a subprocess and reads its JSON-lines events (bpy-free).

Why a subprocess: the engine needs torch and friends, which must never be loaded into
Blender's Python. The engine runs with its own interpreter (a venv chosen in the
preferences) as ``<python> -m engine <command> ... --progress json``; stdout carries only
protocol events (see protocol.py), stderr is a log of which we keep the tail for error
reports. Reader threads put parsed events on a queue; the UI thread drains it (timer or
modal operator), or :meth:`EngineProcess.run_sync` blocks in background mode.
"""
from __future__ import annotations

import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

from .contract.protocol import ProtocolError, hello_problem, parse_event
from .contract.schema import SYNTHETIC_NOTE

if TYPE_CHECKING:
    from typing import Protocol

    class EventSource(Protocol):
        """What :func:`pump_events` drives: an :class:`EngineProcess` or a warm worker's request."""
        events: queue.Queue[dict[str, Any]]
        cancel_requested: bool
        watchdog_fired: bool

        def request_cancel(self) -> None: ...
        def enforce_cancel(self) -> None: ...

STDERR_TAIL = 200
CANCEL_GRACE_S = 15.0    # the engine checks for cancel between steps; model loading can take seconds
#: background/synchronous runs: an engine that sends no event for this long is hung (0 = never).
#: The engine reports progress at least every load step, window and frame, so minutes of silence
#: mean it is stuck (a driver hang, a deadlock), and a batch must go on with the next job.
DEFAULT_WATCHDOG_S = 300
ADDON_DIR = Path(__file__).resolve().parents[1]   # joyvasa_blender/ (this file is in core/)


# -- where the engine sources and interpreter are ---------------------------------------------
def find_engine_src(override: str = "") -> Path | None:
    """Folder that contains the ``engine`` package: the preference override, the copy bundled
    in the extension (``engine_src/``), or the repository root in a development checkout."""
    cands = [Path(override)] if override else []
    cands += [ADDON_DIR / "engine_src", ADDON_DIR.parent]
    for c in cands:
        if (c / "engine" / "__main__.py").is_file():
            return c
    return None


def venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def interpreter_candidates(pref: str = "", weights_dir: str = "", user_dir: str = "",
                           engine_src: Path | None = None) -> list[tuple[str, str]]:
    """(path, why) in the order they are tried by :func:`detect_interpreter`."""
    out: list[tuple[str, str]] = []
    if pref:
        out.append((pref, "preferences"))
    env = os.environ.get("JOYVASA_ENGINE_PYTHON")
    if env:
        out.append((env, "$JOYVASA_ENGINE_PYTHON"))
    if weights_dir:
        w = Path(weights_dir)
        for v in (w / ".venv", w / "venv", w.parent / ".venv", w.parent / "venv"):
            out.append((str(venv_python(v)), "venv next to the weights"))
    if user_dir:
        out.append((str(venv_python(Path(user_dir) / "venv")), "extension venv"))
    if engine_src is not None:
        out.append((str(venv_python(engine_src / ".venv")), "venv next to the engine sources"))
    for name in ("python3", "python"):
        found = shutil.which(name)
        if found:
            out.append((found, "PATH"))
    return out


def check_interpreter(path: str, timeout: float = 20.0) -> tuple[bool, str]:
    """Is ``path`` a runnable Python >= 3.10? Returns (ok, version text or reason)."""
    if not path:
        return False, "no interpreter given"
    if not Path(path).is_file():
        return False, f"{path} does not exist"
    try:
        cp = subprocess.run([path, "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"],
                            capture_output=True, text=True, timeout=timeout, env=clean_env())
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"{path} cannot be run: {exc}"
    if cp.returncode != 0:
        return False, f"{path} failed: {cp.stderr.strip()[-200:]}"
    version = cp.stdout.strip()
    try:
        major, minor = (int(x) for x in version.split(".")[:2])
    except ValueError:
        return False, f"{path} printed {version!r}"
    if (major, minor) < (3, 10):
        return False, f"{path} is Python {version}; the engine needs 3.10 or newer"
    return True, version


#: candidates the user chose explicitly: when they do not work that is an error, never a silent fallback
EXPLICIT_SOURCES = {"preferences": "Preferences > Add-ons > JoyVASA Portrait Animator > Engine Python",
                    "$JOYVASA_ENGINE_PYTHON": "the environment variable JOYVASA_ENGINE_PYTHON"}


def detect_interpreter(**kw: Any) -> tuple[str | None, str]:
    """First valid candidate -> (path, why); (None, reasons) when none works.

    An interpreter the user set (preference or $JOYVASA_ENGINE_PYTHON) that does not work is
    reported as such: falling back to ``python3`` from PATH would only lead to a confusing
    "No module named torch" and hide the wrong setting."""
    reasons = []
    seen = set()
    for path, why in interpreter_candidates(**kw):
        if path in seen:
            continue
        seen.add(path)
        if why in EXPLICIT_SOURCES:
            ok, info = check_interpreter(path)
            if ok:
                return path, f"{why}: Python {info}"
            return None, (f"{EXPLICIT_SOURCES[why]} is set to {path}, which is not a working Python 3.10+ "
                          f"({info}); fix it or clear it to let the add-on find the engine environment")
        if not Path(path).is_file():
            continue
        ok, info = check_interpreter(path)
        if ok:
            return path, f"{why}: Python {info}"
        reasons.append(info)
    return None, ("no engine Python found (set Preferences > JoyVASA > Engine Python, or create the "
                  "engine environment)" + (": " + "; ".join(reasons) if reasons else ""))


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a child Python: Blender's PYTHONHOME/PYTHONPATH removed."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "PYTHONPATH", "PYTHONSTARTUP")}
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("PYTHONIOENCODING", "utf-8")
    if extra:
        env.update({k: v for k, v in extra.items() if v is not None})
    return env


# -- command lines ----------------------------------------------------------------------------
def engine_argv(python: str, command: str, args: Sequence[str], *, weights: str = "",
                progress: bool = True) -> list[str]:
    """A plain command line (``doctor --json``, ``crop --json``). Jobs are not sent this way:
    they travel as JSON (core/requests.py: ``engine run --job -`` or a warm request)."""
    argv = [python, "-m", "engine", command, *args]
    if weights:
        argv += ["--weights", str(weights)]
    if progress and command != "doctor":
        argv += ["--progress", "json"]
    return argv


# -- the process ------------------------------------------------------------------------------
def spawn_engine(argv: Sequence[str], cwd: str | None, env: dict[str, str]) -> "subprocess.Popen[str]":
    """Start an engine process: the one place that does (one-shot runs, the warm worker, Check
    Engine, downloads). Text pipes on all three streams, UTF-8, line-buffered, and its own process
    group/session so a cancel's signal reaches the engine and not Blender."""
    win = sys.platform == "win32"
    return subprocess.Popen(
        list(argv), cwd=cwd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, encoding="utf-8", errors="replace", bufsize=1,
        creationflags=getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0) if win else 0,
        start_new_session=not win)


class EngineProcess:
    """One engine run. Threads read stdout (events -> queue) and stderr (tail); never touch bpy."""

    def __init__(self, argv: Sequence[str], cwd: str | os.PathLike[str] | None = None,
                 env: dict[str, str] | None = None, stdin_text: str = "") -> None:
        self.argv = [str(a) for a in argv]
        self.stdin_text = stdin_text     # written first (``engine run --job -`` reads its job there)
        self.cwd = str(cwd) if cwd else None
        self.env = env if env is not None else clean_env()
        self.events: "queue.Queue[dict[str, Any]]" = queue.Queue()
        self.stderr_lines: list[str] = []
        self.proc: subprocess.Popen[str] | None = None
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self.cancel_requested = False
        self.watchdog_fired = False
        self._kill_at: float | None = None

    def start(self) -> "EngineProcess":
        self.proc = spawn_engine(self.argv, self.cwd, self.env)
        if self.stdin_text:              # stdin stays open afterwards: it carries ``cancel``
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write(self.stdin_text)
                self.proc.stdin.flush()
            except (OSError, ValueError):
                pass                      # the engine died at once: its exit code and stderr say why
        for fn in (self._read_stdout, self._read_stderr):
            th = threading.Thread(target=fn, daemon=True)
            th.start()
            self._threads.append(th)
        return self

    def _read_stdout(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                event = parse_event(line)
            except ProtocolError as exc:
                if "protocol v" in str(exc):
                    event = {"type": "error", "code": "protocol", "message": str(exc), "fatal": True}
                else:  # a stray print on stdout: keep it as a log line, it is not fatal
                    event = {"type": "log", "text": line.rstrip()}
            if event is not None and event.get("type") == "hello":
                problem = hello_problem(event)
                if problem:  # cannot trust anything it says next: stop it
                    self.events.put(event)
                    event = {"type": "error", "code": "protocol", "message": problem, "fatal": True}
                    self.request_cancel(grace=2.0)
            if event is not None:
                self.events.put(event)
        self.events.put({"type": "_eof"})

    def _read_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._lock:
                self.stderr_lines.append(line.rstrip("\n"))
                if len(self.stderr_lines) > STDERR_TAIL:
                    del self.stderr_lines[: len(self.stderr_lines) - STDERR_TAIL]

    def stderr_tail(self, n: int = 20) -> list[str]:
        with self._lock:
            return list(self.stderr_lines[-n:])

    def drain(self) -> list[dict[str, Any]]:
        return drain_queue(self.events)

    def poll(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    @property
    def returncode(self) -> int | None:
        return self.poll()

    def finished(self) -> bool:
        """The process exited and both pipes were read to the end."""
        return self.poll() is not None and all(not t.is_alive() for t in self._threads)

    def request_cancel(self, grace: float = CANCEL_GRACE_S) -> None:
        """Non-blocking cancel: ask the engine to stop (stdin ``cancel`` + SIGINT to its process
        group) and arm a deadline; :meth:`enforce_cancel` kills it when the deadline passes.
        The engine honours cancel at its next checkpoint (it cleans up partial outputs)."""
        p = self.proc
        if self.cancel_requested or p is None or p.poll() is not None:
            self.cancel_requested = True
            return
        self.cancel_requested = True
        self._kill_at = time.monotonic() + grace
        try:
            assert p.stdin is not None
            p.stdin.write('{"v":1,"type":"cancel"}\n')
            p.stdin.flush()
        except (OSError, ValueError, AssertionError):
            pass
        try:
            if sys.platform == "win32":
                p.send_signal(signal.CTRL_BREAK_EVENT)  # type: ignore[attr-defined]
            else:
                os.killpg(p.pid, signal.SIGINT)
        except (OSError, ProcessLookupError):
            pass

    def enforce_cancel(self) -> None:
        """Kill the engine if a requested cancel has not been honoured in time (call per tick)."""
        if self._kill_at is not None and time.monotonic() > self._kill_at and self.poll() is None:
            self.kill()

    def cancel(self, grace: float = CANCEL_GRACE_S) -> None:
        """Blocking cancel (unregister, file load, tests): request, wait up to ``grace``, kill."""
        self.request_cancel(grace)
        p = self.proc
        if p is None:
            return
        try:
            p.wait(grace)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        kill_process(self.proc)

    def join(self, timeout: float = 5.0) -> None:
        for t in self._threads:
            t.join(timeout)

    def run_sync(self, on_event: Callable[[dict[str, Any]], None] | None = None,
                 should_cancel: Callable[[], bool] | None = None, timeout: float | None = None,
                 poll_s: float = 0.05, idle_timeout: float | None = None) -> int:
        """Blocking run for background mode/tests: forwards events, honours ``should_cancel`` and
        ``timeout`` (cancels when exceeded). ``idle_timeout``: the watchdog; an engine silent for
        that long is reported (a ``_watchdog`` event) and cancelled. Returns the exit code."""
        if self.proc is None:
            self.start()
        pump_events(self, on_event, should_cancel, timeout, poll_s, idle_timeout)
        assert self.proc is not None
        rc = self.proc.wait()
        self.join()
        for ev in self.drain():
            if ev.get("type") != "_eof" and on_event:
                on_event(ev)
        return rc


def drain_queue(events: "queue.Queue[dict[str, Any]]") -> list[dict[str, Any]]:
    """Every event queued so far, without waiting (the one-shot engine and the warm worker)."""
    out = []
    while True:
        try:
            out.append(events.get_nowait())
        except queue.Empty:
            return out


def kill_process(p: "subprocess.Popen[str] | None") -> None:
    """Kill an engine and everything it started (its process group on POSIX), then reap it."""
    if p is None or p.poll() is not None:
        return
    try:
        if sys.platform == "win32":
            p.kill()
        else:
            os.killpg(p.pid, signal.SIGKILL)
    except (OSError, ProcessLookupError):
        p.kill()
    p.wait()


def pump_events(handle: EventSource, on_event: Callable[[dict[str, Any]], None] | None,
                should_cancel: Callable[[], bool] | None, timeout: float | None, poll_s: float,
                idle_timeout: float | None, tick: Callable[[], Any] | None = None) -> None:
    """The one blocking event loop behind every ``run_sync`` (a one-shot :class:`EngineProcess` and
    a warm worker's request alike): forwards events until ``_eof``, feeds the :class:`Watchdog`
    (silence for ``idle_timeout`` s = hung: reported as a ``_watchdog`` event, then cancelled),
    and cancels on ``should_cancel()`` or after ``timeout`` s. ``tick`` runs once per poll."""
    t0 = time.monotonic()
    dog = Watchdog(idle_timeout or 0)
    dog.start()
    while True:
        try:
            ev = handle.events.get(timeout=poll_s)
        except queue.Empty:
            ev = None
        if ev is not None:
            dog.feed()
            if ev.get("type") == "_eof":
                break
            if on_event:
                on_event(ev)
        if dog.expired() and not handle.cancel_requested:
            handle.watchdog_fired = True
            if on_event:
                on_event({"type": "_watchdog", "message": dog.message()})
            handle.request_cancel()
        if (should_cancel and should_cancel()) or (timeout and time.monotonic() - t0 > timeout):
            handle.request_cancel()
        handle.enforce_cancel()
        if tick is not None:
            tick()


class Watchdog:
    """No engine event for ``timeout_s`` while a request is in flight means the engine hung.

    ``start()`` when a request is sent, ``feed()`` on every event, ``stop()`` when its final event
    arrived: a warm worker that waits between requests is paused, not hung. ``timeout_s`` 0 = off.
    """

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = float(timeout_s or 0)
        self._last: float | None = None

    def start(self) -> None:
        self._last = time.monotonic()

    feed = start

    def stop(self) -> None:
        self._last = None

    def silent_for(self) -> float:
        return 0.0 if self._last is None else time.monotonic() - self._last

    def expired(self) -> bool:
        return self.timeout_s > 0 and self._last is not None and self.silent_for() > self.timeout_s

    def message(self) -> str:
        return (f"the engine sent nothing for {self.timeout_s:.0f} s and was stopped by the watchdog "
                "(it looked hung); run it again, or raise Preferences > JoyVASA > Watchdog for very slow machines")


def watchdog_seconds(pref: float | None = None) -> float:
    """The watchdog time: $JOYVASA_WATCHDOG_S, else the preference, else the default."""
    env = os.environ.get("JOYVASA_WATCHDOG_S", "").strip()
    if env:
        try:
            return max(0.0, float(env))
        except ValueError:
            pass
    return float(DEFAULT_WATCHDOG_S if pref is None else pref)



def summarize_doctor(report: dict[str, Any]) -> list[str]:
    """Readable lines from ``engine doctor --json``: versions, devices, weights (missing files,
    groups that fail to load) and the engine's own next-step advice. Unknown keys are listed."""
    out: list[str] = []
    if report.get("synthetic"):
        out.append(f"WARNING: {SYNTHETIC_NOTE} (weights written by tools/make_synthetic_weights.py)")
    v = report.get("versions")
    if isinstance(v, dict):
        out.append("Versions: " + ", ".join(f"{k} {v[k]}" for k in ("engine", "python", "torch") if k in v))
    d = report.get("devices")
    if isinstance(d, dict):
        out.append(f"Devices: {', '.join(map(str, d.get('available', [])))} (auto: {d.get('auto')}, {d.get('auto_dtype')})")
        if d.get("in_use"):   # "GPU in use: <name>" or "CPU only: <why and the fix>"
            out.append(str(d["in_use"]))
    w = report.get("weights")
    if isinstance(w, dict):
        out.append(f"Weights: {w.get('root')}" + (f" - {w['error']}" if w.get("error") else ""))
        files = w.get("files") or {}
        missing = [k for k, f in files.items() if isinstance(f, dict) and f.get("required") and not f.get("present")]
        if missing:
            out.append("Missing: " + ", ".join(missing))
        for name, g in (w.get("groups") or {}).items():
            if isinstance(g, dict):
                out.append(f"{name}: {'loads' if g.get('loads') else 'does not load'}"
                           + (f" ({g.get('error')})" if g.get("error") else ""))
    for line in report.get("next") or []:
        out.append(str(line))
    known = {"versions", "devices", "weights", "next", "ok", "synthetic"}
    for key, value in report.items():
        if key not in known:
            out.append(f"{key}: {value}"[:200])
    return out[:16]


# -- engine environment installer (the steps: core/torch_build.install_steps) ------------------
def base_python_for_venv() -> str | None:
    """A real CPython to create the venv with: Blender's own interpreter (sys.executable is
    Blender's bundled python in 4.2+), else python3 on PATH."""
    if Path(sys.executable).name.lower().startswith("python"):
        return sys.executable
    return shutil.which("python3") or shutil.which("python")


class StepRunner:
    """Runs a list of commands one after another in a thread; exposes step, last output line,
    and the result, for a panel polled by a timer."""

    def __init__(self, steps: Iterable[tuple[str, list[str]]]) -> None:
        self.steps = list(steps)
        self.index = 0
        self.last_line = ""
        self.log: list[str] = []
        self.error: str | None = None
        self.done = False
        self.cancelled = False
        self._proc: subprocess.Popen[str] | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "StepRunner":
        self._thread.start()
        return self

    @property
    def progress(self) -> float:
        return 1.0 if self.done else self.index / max(1, len(self.steps))

    @property
    def label(self) -> str:
        return self.steps[min(self.index, len(self.steps) - 1)][0] if self.steps else ""

    def _run(self) -> None:
        for i, (label, argv) in enumerate(self.steps):
            self.index = i
            if self.cancelled:
                break
            try:
                self._proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                              errors="replace", env=clean_env(), stdin=subprocess.DEVNULL)
            except OSError as exc:
                self.error = f"{label}: {exc}"
                break
            assert self._proc.stdout is not None
            for line in self._proc.stdout:
                line = line.rstrip()
                if line:
                    self.last_line = line[-160:]
                    self.log = (self.log + [line])[-200:]
            rc = self._proc.wait()
            if rc != 0 and not self.cancelled:
                self.error = f"{label} failed (exit {rc}): {self.last_line}"
                break
        self.index = len(self.steps)
        self.done = True

    def cancel(self) -> None:
        self.cancelled = True
        if self._proc and self._proc.poll() is None:
            self._proc.terminate()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)
