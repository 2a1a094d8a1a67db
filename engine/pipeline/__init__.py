"""The pipeline layer: frozen job configs → numbered pipeline steps, behind every entry point.

* :mod:`engine.pipeline.config` — ``MotionJob``/``AnimateJob`` made of ``MotionConfig``,
  ``RenderConfig`` and ``RuntimeConfig`` (device + the one precision); JSON round-trip.
* :mod:`engine.pipeline.context` — ``Context`` (reporter + ``ModelCache``); the cache is what
  makes the ``serve`` worker warm.
* :mod:`engine.pipeline.motion` — ``run_motion(job, ctx)``; :mod:`engine.pipeline.animate` —
  ``run_animate(job, ctx)``. Their module docstrings list the numbered steps and say where
  new steps plug in.

Entry points: ``engine/commands/<name>.py`` is "parse arguments → job config → pipeline";
``engine serve`` parses a request's ``args`` with the same parser (:mod:`engine.serve`);
``bench`` calls the same functions. Nothing here imports torch at module level.
"""
from __future__ import annotations

from engine.pipeline.config import (AnimateJob, MotionConfig, MotionJob, RenderConfig,  # noqa: F401
                                    RuntimeConfig)
from engine.pipeline.context import Context, ModelCache  # noqa: F401

__all__ = ["AnimateJob", "Context", "ModelCache", "MotionConfig", "MotionJob", "RenderConfig", "RuntimeConfig"]
