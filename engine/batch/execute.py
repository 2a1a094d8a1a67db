"""The seam between a batch job and the engine: ``(command, args) -> outputs``, in this process.

A job is exactly a request of the warm worker (``engine serve``): the same command table
(:data:`engine.serve.WORKER_COMMANDS`), the same ``args`` -> command line translation
(:func:`engine.serve.args_to_argv`) validated by the command's own parser, the same
``execute(args, ctx)`` -> job config -> pipeline, under the same :func:`engine.runner.run_job`
(one ``done``/``error``/``cancelled`` per job, failures classified into protocol codes). The
worker's :class:`~engine.pipeline.context.ModelCache` is passed in, so a worker loads each
network once for all its jobs.
"""
from __future__ import annotations

import argparse
import importlib
from typing import Any, Callable

from engine.batch.jobs import COMMANDS as BATCH_COMMANDS
from engine.errors import BadRequest
from engine.protocol import EventWriter

Event = dict[str, Any]


class JobFailed(Exception):
    """The job ran and failed: ``code`` is the protocol error code of its ``error`` event."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class _Sink(EventWriter):
    """An event writer that hands each event to a callback instead of a stream."""

    def __init__(self, sink: Callable[[Event], None]) -> None:
        super().__init__(None)
        self._sink = sink

    def emit(self, type_: str, **fields: Any) -> Event:
        event = super().emit(type_, **fields)
        self._sink(event)
        return event


def parse(command: str, args: dict[str, Any]) -> tuple[Any, argparse.Namespace]:
    """(command module, its Namespace for ``args``); BadRequest with the parser's message."""
    from engine.serve import WORKER_COMMANDS, args_to_argv, parser_for

    if command not in BATCH_COMMANDS:
        raise BadRequest(f"batch jobs run {', '.join(BATCH_COMMANDS)}, not {command!r}")
    module = importlib.import_module(WORKER_COMMANDS[command])
    parser = parser_for(command, module)
    ns = parser.parse_args(args_to_argv(parser, args))
    if hasattr(ns, "progress"):
        ns.progress = "json"
    return module, ns


def execute(command: str, args: dict[str, Any], on_event: Callable[[Event], None] | None = None,
            cache: Any = None, job: str | None = None) -> dict[str, str]:
    """Run one job in this process; returns its ``done`` outputs or raises JobFailed/BadRequest."""
    from engine.pipeline.context import Context, ModelCache
    from engine.runner import Reporter, run_job

    module, ns = parse(command, args)
    events: list[Event] = []

    def sink(event: Event) -> None:
        events.append(event)
        if on_event is not None:
            on_event(event)

    reporter = Reporter(None, job=job, writer=_Sink(sink))
    reporter.command = command
    models = cache if cache is not None else ModelCache()
    code = run_job(reporter, lambda rep: module.execute(ns, Context(rep, models)))
    done = next((e for e in reversed(events) if e.get("type") == "done"), None)
    if code == 0 and done is not None:
        return dict(done.get("outputs") or {})
    err = next((e for e in reversed(events) if e.get("type") == "error"), None)
    if err is not None:
        raise JobFailed(str(err.get("code", "internal")), str(err.get("message", "")))
    if any(e.get("type") == "cancelled" for e in events):
        raise JobFailed("cancelled", "the job was cancelled")
    raise JobFailed("internal", f"{command} ended with code {code} without an error event")
