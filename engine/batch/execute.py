"""The seam between a batch job and the engine: ``(command, args) -> outputs``, in this process.

A job is exactly a request of the warm worker (``engine serve``): its ``args`` are the job's wire
form, parsed by :func:`engine.jobs.job_from_dict` (the one set of checks) and dispatched through
:func:`engine.pipeline.run_pipeline`, under the same :func:`engine.runner.run_job` (one
``done``/``error``/``cancelled`` per job, failures classified into protocol codes); its
:class:`~engine.runner.JobResult` is the job's result. The worker's
:class:`~engine.pipeline.context.ModelCache` is passed in, so a worker loads each network once
for all its jobs.
"""
from __future__ import annotations

from typing import Any, Callable

from engine.batch.jobfile import COMMANDS as BATCH_COMMANDS
from engine.contract.protocol import EventWriter
from engine.errors import BadRequest
from engine.jobs import Job, job_from_dict
from engine.pipeline import Context, ModelCache, run_pipeline
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
            cache: ModelCache | None = None, job: str | None = None) -> dict[str, str]:
    """Run one job in this process; returns its ``done`` outputs or raises JobFailed/BadRequest."""
    typed = parse(command, args)
    reporter = Reporter(None, job=job, writer=_Sink(on_event or (lambda event: None)))
    reporter.command = command
    models = cache if cache is not None else ModelCache()
    result = run_job(reporter, lambda rep: run_pipeline(typed, Context(rep, models)))
    if result.error is not None:
        raise JobFailed(result.error.code, result.error.message)
    return dict(result.outputs)
