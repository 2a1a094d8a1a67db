"""Done markers never land outside their state folder.

Why: a job id ``../../victim`` became the path of a done marker (written over the user's file,
deleted when the job failed). Ids become file names only through
:func:`engine.pathguard.safe_name`. (That two jobs never write the same output is checked when
the job file is read: engine/batch/jobfile.py ``check_jobs``.)
"""
from __future__ import annotations

from pathlib import Path

from engine.pathguard import safe_name

MARKER_SUFFIX = ".done.json"


def marker_path(job_id: str, state: Path) -> Path:
    """``<state>/<id>.done.json``; BadRequest when the id cannot be a plain file name there."""
    return Path(state) / safe_name(job_id, "job id", MARKER_SUFFIX)
