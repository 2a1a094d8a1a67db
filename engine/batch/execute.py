"""The seam between a batch job and the engine: ``(command, args) -> outputs``, in this process.

A job's ``args`` are turned into that command's own command line and parsed by the command's
own argparse parser (``engine.cli``): there is one definition of every option, its defaults
and its validation, whichever way a job arrives. The command then runs under the same runner
as on the command line (events, error codes, atomic outputs); its JSON events are read back
line by line and handed to ``on_event``.

SEAM: when the pipeline layer (``engine/pipeline``: configs + ``execute(args, ctx)`` with a
model cache) is on main, :func:`execute` calls it with the worker's cache instead of
``module.run``, so a worker loads the networks once; nothing else in engine/batch changes.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
from typing import Any, Callable

from engine.errors import BadRequest

Event = dict[str, Any]


class JobFailed(Exception):
    """The job ran and failed: ``code`` is the protocol error code of its ``error`` event."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _parser(command: str) -> argparse.ArgumentParser:
    from engine.cli import build_parser

    root = build_parser(load_commands=[command])
    sub = next(a for a in root._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[command]


def args_to_argv(command: str, args: dict[str, Any]) -> list[str]:
    """``{"cfg_scale": 2, "smooth": False}`` -> ``["--cfg-scale", "2", "--no-smooth"]`` using the
    command's parser to find each option (by ``--long-name`` first, then by destination)."""
    parser = _parser(command)
    by_option: dict[str, argparse.Action] = {}
    by_dest: dict[str, list[argparse.Action]] = {}
    for action in parser._actions:
        for opt in action.option_strings:
            by_option[opt] = action
        by_dest.setdefault(action.dest, []).append(action)
    argv: list[str] = []
    for key, value in args.items():
        action = by_option.get("--" + key.replace("_", "-"))
        if action is None and key in by_dest:
            action = next((a for a in by_dest[key] if a.option_strings), None)
        if action is None or key in ("help", "progress"):
            raise BadRequest(f"{command}: unknown argument {key!r}")
        if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
            if not isinstance(value, bool):
                raise BadRequest(f"{command}: {key!r} takes true or false, got {value!r}")
            want = action if action.const == value else next(
                (a for a in by_dest[action.dest] if getattr(a, "const", None) == value and a.option_strings), None)
            if want is None:
                raise BadRequest(f"{command}: {key!r} cannot be {value}")
            argv.append(want.option_strings[-1])
        elif value is None:
            continue
        else:
            argv += [action.option_strings[-1], str(value)]
    return argv


def parse(command: str, args: dict[str, Any]) -> argparse.Namespace:
    """The command's Namespace for ``args`` (BadRequest with argparse's own message)."""
    parser = _parser(command)
    argv = args_to_argv(command, args)
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            ns = parser.parse_args(argv)
    except SystemExit:
        msg = err.getvalue().strip().splitlines()
        raise BadRequest(f"{command}: {msg[-1] if msg else 'bad arguments'}") from None
    return ns


class _EventLines(io.TextIOBase):
    """A text stream that parses each complete JSON line and calls ``sink(event)``."""

    def __init__(self, sink: Callable[[Event], None]) -> None:
        self._buf = ""
        self._sink = sink

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._buf += text
        while "\n" in self._buf:
            line, self._buf = self._buf.split("\n", 1)
            if line.strip():
                with contextlib.suppress(ValueError):
                    self._sink(json.loads(line))
        return len(text)


def execute(command: str, args: dict[str, Any], on_event: Callable[[Event], None] | None = None,
            cache: Any = None) -> dict[str, str]:  # noqa: ARG001 - cache: see SEAM in the module doc
    """Run one job in this process; returns its ``done`` outputs or raises JobFailed/BadRequest."""
    ns = parse(command, args)
    ns.progress = "json"
    events: list[Event] = []

    def sink(event: Event) -> None:
        events.append(event)
        if on_event is not None:
            on_event(event)

    stream = _EventLines(sink)
    real = sys.stdout
    sys.stdout = stream          # the runner writes its events to the stdout it finds
    try:
        code = ns._module.run(ns)
    finally:
        sys.stdout = real
    done = next((e for e in reversed(events) if e.get("type") == "done"), None)
    if code == 0 and done is not None:
        return dict(done.get("outputs") or {})
    err = next((e for e in reversed(events) if e.get("type") == "error"), None)
    if err is not None:
        raise JobFailed(str(err.get("code", "internal")), str(err.get("message", "")))
    if any(e.get("type") == "cancelled" for e in events):
        raise JobFailed("cancelled", "the job was cancelled")
    raise JobFailed("internal", f"{command} exited with code {code} without an error event")
