"""The pipeline layer: ``engine/pipeline/<command>.py`` holds ``run_<command>(job, ctx) -> Done``, a
short numbered list of named steps for one typed job (engine/jobs.py); each module docstring
lists the steps and says where new ones plug in. :mod:`engine.pipeline.context` holds ``Context``
(reporter + ``ModelCache``; the cache is what makes the ``serve`` worker warm).

Every entry point (the CLI commands, ``run --job``, ``serve``, ``batch``) runs a job through
:func:`run_pipeline`: the job type names its pipeline (``Job.pipeline``, the one registry in
engine/jobs.py). Nothing here imports torch at module level.
"""
from __future__ import annotations

import importlib

from engine.errors import BadRequest
from engine.jobs import JOB_TYPES, Job
from engine.pipeline.context import Context, ModelCache
from engine.runner import Done

__all__ = ["Context", "ModelCache", "pipeline_commands", "run_pipeline"]


def pipeline_commands() -> list[str]:
    """The commands that run through :func:`run_pipeline` (``serve``'s hello lists them)."""
    return [name for name, job_type in JOB_TYPES.items() if job_type.pipeline]


def run_pipeline(job: Job, ctx: Context) -> Done:
    """Run ``job`` through the pipeline its type names. A job type without one (``fetch``: it plans,
    checks free space and downloads in a process of its own) is a ``bad_request`` that says so."""
    if not job.pipeline:
        raise BadRequest(f"{job.command!r} runs only as its own command (python -m engine {job.command}); "
                         f"run --job, serve and batch run {', '.join(pipeline_commands())}")
    module, func = job.pipeline.split(":")
    return getattr(importlib.import_module(module), func)(job, ctx)
