"""The pipeline layer: ``engine/pipeline/<command>.py`` holds ``run_<command>(job, ctx)``, a short
numbered list of named steps for one typed job (engine/jobs.py); each module docstring lists the
steps and says where new ones plug in. :mod:`engine.pipeline.context` holds ``Context``
(reporter + ``ModelCache``; the cache is what makes the ``serve`` worker warm).

Entry points never call these modules directly: they go through
:func:`engine.commands.run_job_pipeline`. Nothing here imports torch at module level.
"""
from __future__ import annotations

from engine.pipeline.context import Context, ModelCache

__all__ = ["Context", "ModelCache"]
