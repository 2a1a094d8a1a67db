"""The entry layer: one module per ``python -m engine`` command (options -> typed job), and
:data:`PIPELINES` / :func:`run_job_pipeline`, THE table from a job to the function that runs it.

Every entry point dispatches through this table: the CLI commands, ``engine run --job``,
``engine serve`` requests and ``engine batch`` jobs. Targets are imported on first use so that
building and dispatching a job never imports torch.
"""
from __future__ import annotations

import importlib
from typing import Any

from engine.errors import BadRequest
from engine.jobs import Job
from engine.pipeline.context import Context

#: command -> "module:function(job, ctx)"; ``doctor`` reports and has no steps to share
PIPELINES: dict[str, str] = {
    "motion": "engine.pipeline.motion:run_motion",
    "animate": "engine.pipeline.animate:run_animate",
    "crop": "engine.pipeline.crop:run_crop",
    "edit": "engine.pipeline.edit:run_edit",
    "export": "engine.pipeline.export:run_export",
    "doctor": "engine.commands.doctor:execute",
    "live": "engine.pipeline.live:run_live",
}


def run_job_pipeline(job: Job, ctx: Context) -> Any:
    """Run ``job`` through its command's pipeline; returns the ``done`` event's outputs
    (or ``(outputs, extra done fields)``)."""
    if job.command not in PIPELINES:   # fetch: one-shot only (it prints a plan and asks for space first)
        raise BadRequest(f"{job.command!r} runs only as its own command (python -m engine {job.command}); "
                         f"run --job, serve and batch run {', '.join(PIPELINES)}")
    module, func = PIPELINES[job.command].split(":")
    return getattr(importlib.import_module(module), func)(job, ctx)
