"""``python -m engine serve``: a long-lived worker that keeps the networks loaded between takes.

Why: a one-shot ``engine motion`` pays interpreter start-up, imports, construction and loading on
every take; an artist re-taking a line with a new seed only needs the sampler. The worker reads
requests (one JSON line each, see :mod:`engine.protocol`) from stdin, runs them one at a time in
the main thread through the SAME command modules as the CLI (arguments parsed by the command's
own parser → job config → pipeline), and keeps one :class:`~engine.pipeline.context.ModelCache`
for its whole life. A reader thread handles ``cancel`` immediately; ``run`` and ``release`` are
queued in order. End of stdin: finish the queue, exit 0.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import queue
import signal
import sys
import threading
from typing import IO, Any

from engine.errors import BadRequest
from engine.pipeline.context import Context, ModelCache
from engine.protocol import PROTOCOL_MAJOR, PROTOCOL_MINOR, REQUEST_TYPES, EventWriter
from engine.runner import Reporter, run_job

#: THE command table of the worker: request "command" → module under engine.commands, which
#: provides ``add_arguments(parser)`` and ``execute(args, ctx)``. Adding a command is one line.
WORKER_COMMANDS: dict[str, str] = {
    "motion": "engine.commands.motion",
    "animate": "engine.commands.animate",
    "crop": "engine.commands.crop",
    "doctor": "engine.commands.doctor",
}
#: options that belong to the one-shot process, not to a request
PROCESS_OPTIONS = ("progress",)


def _available_commands() -> dict[str, Any]:
    """The table's commands whose module exists in this checkout (a missing one answers bad_request)."""
    found = {}
    for name, module_name in WORKER_COMMANDS.items():
        try:
            found[name] = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
    return found


class _Parser(argparse.ArgumentParser):
    """argparse that raises BadRequest instead of printing usage and exiting the worker."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise BadRequest(f"{self.prog}: {message}")


def parser_for(command: str, module: Any) -> argparse.ArgumentParser:
    p = _Parser(prog=f"engine {command}", add_help=False)
    module.add_arguments(p)
    return p


def args_to_argv(parser: argparse.ArgumentParser, args: dict[str, Any]) -> list[str]:
    """Request ``args`` → the command line the CLI would get (so both are validated alike).

    Keys are long option names without dashes (``cfg_scale`` = ``--cfg-scale``) or destinations
    (``pe_variant``); a boolean selects the flag of that destination with that value
    (``"smooth": false`` → ``--no-smooth``, ``"relative": false`` → ``--absolute``); a list is
    joined with commas (``"crop": [10, 20, 200, 200]``); None means "default" (omitted).
    """
    by_option: dict[str, argparse.Action] = {}
    by_dest: dict[str, list[argparse.Action]] = {}
    for action in parser._actions:
        for opt in action.option_strings:
            if opt.startswith("--"):
                by_option[opt[2:].replace("-", "_")] = action
        by_dest.setdefault(action.dest, []).append(action)
    argv: list[str] = []
    for key, value in args.items():
        if key in PROCESS_OPTIONS:
            continue
        action = by_option.get(key) or next(iter(by_dest.get(key, [])), None)
        if action is None or not action.option_strings:
            raise BadRequest(f"unknown argument {key!r} for {parser.prog}")
        if value is None:
            continue
        if isinstance(value, bool):
            flags = [a for a in by_dest[action.dest] if a.nargs == 0 and a.const == value]
            if not flags:
                if action.nargs == 0 and action.const is True and value is False and action.default is False:
                    continue  # an off switch left off
                raise BadRequest(f"argument {key!r} takes a value, not {value!r}")
            argv.append(flags[0].option_strings[0])
            continue
        if action.nargs == 0:
            raise BadRequest(f"argument {key!r} is a switch: pass true or false")
        if isinstance(value, (list, tuple)):
            value = ",".join(str(v) for v in value)
        elif isinstance(value, dict):
            raise BadRequest(f"argument {key!r} must be a string, number, boolean or list")
        argv += [action.option_strings[0], str(value)]
    return argv


class Worker:
    """The request loop. ``stdout`` receives protocol events only."""

    def __init__(self, stdin: IO[str], stdout: IO[str]) -> None:
        self.stdin = stdin
        self.events = EventWriter(stdout)
        self.models = ModelCache()
        self.commands = _available_commands()
        self.requests: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._lock = threading.Lock()
        self._current: tuple[str, Reporter] | None = None
        self._cancelled_queued: set[str] = set()

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
            def body(r: Reporter) -> Any:
                module = self.commands.get(command)
                if module is None:
                    known = ", ".join(self.commands)
                    raise BadRequest(f"unknown command {command!r}: this worker runs {known}")
                parser = parser_for(command, module)
                ns = parser.parse_args(args_to_argv(parser, req.get("args") or {}))
                if hasattr(ns, "progress"):
                    ns.progress = "json"
                return module.execute(ns, Context(r, self.models))

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
        while True:
            req = self.requests.get()
            if req is None:
                return 0
            if req["type"] == "run":
                self.run_request(req)
            elif req["type"] == "release":
                self.release(req)


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

    with contextlib.suppress(ValueError, OSError):
        signal.signal(signal.SIGINT, on_sigint)
    try:
        return worker.serve()
    finally:
        sys.stdout = real_stdout
