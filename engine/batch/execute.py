"""The seam between a batch job and the engine: ``(command, args) -> outputs``, in this process.

A job is exactly a request of the warm worker (``engine serve``): its ``args`` are the job's wire
form, parsed by :func:`engine.jobs.job_from_dict` (the one set of checks) and dispatched through
:func:`engine.commands.run_job_pipeline`, under the same :func:`engine.runner.run_job`
(one ``done``/``error``/``cancelled`` per job, failures classified into protocol codes). The
worker's :class:`~engine.pipeline.context.ModelCache` is passed in, so a worker loads each
network once for all its jobs.
"""
from __future__ import annotations

from typing import Any, Callable

from engine.batch.jobs import COMMANDS as BATCH_COMMANDS
from engine.commands import run_job_pipeline
from engine.errors import BadRequest
from engine.jobs import Job, job_from_dict
from engine.pipeline.context import Context, ModelCache
from engine.contract.protocol import EventWriter
from engine.runner import Reporter, run_job

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


def parse(command: str, args: dict[str, Any]) -> Job:
    """The typed job of a batch job's ``args``; BadRequest names the option."""
    if command not in BATCH_COMMANDS:
        raise BadRequest(f"batch jobs run {', '.join(BATCH_COMMANDS)}, not {command!r}")
    return job_from_dict(args, command)


def execute(command: str, args: dict[str, Any], on_event: Callable[[Event], None] | None = None,
            cache: Any = None, job: str | None = None) -> dict[str, str]:
    """Run one job in this process; returns its ``done`` outputs or raises JobFailed/BadRequest."""
    typed = parse(command, args)
    events: list[Event] = []

    def sink(event: Event) -> None:
        events.append(event)
        if on_event is not None:
            on_event(event)

    reporter = Reporter(None, job=job, writer=_Sink(sink))
    reporter.command = command
    models = cache if cache is not None else ModelCache()
    code = run_job(reporter, lambda rep: run_job_pipeline(typed, Context(rep, models)))
    done = next((e for e in reversed(events) if e.get("type") == "done"), None)
    if code == 0 and done is not None:
        return dict(done.get("outputs") or {})
    err = next((e for e in reversed(events) if e.get("type") == "error"), None)
    if err is not None:
        raise JobFailed(str(err.get("code", "internal")), str(err.get("message", "")))
    if any(e.get("type") == "cancelled" for e in events):
        raise JobFailed("cancelled", "the job was cancelled")
    raise JobFailed("internal", f"{command} ended with code {code} without an error event")
