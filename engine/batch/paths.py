"""Batch jobs never write over each other or outside their state folder.

Why before any job runs: two jobs with the same ``out`` both reported ok while the second
silently replaced the first, and a job id ``../../victim`` became the path of a done marker
(written over the user's file, deleted when the job failed). Ids become file names only
through :func:`engine.pathguard.safe_name`; outputs are compared by real path
(:func:`engine.pathguard.same_file`).
"""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING

from engine.errors import BadRequest
from engine.pathguard import animate_outputs, safe_name, same_file

if TYPE_CHECKING:
    from engine.batch.jobs import Job

MARKER_SUFFIX = ".done.json"


def marker_path(job_id: str, state: Path) -> Path:
    """``<state>/<id>.done.json``; BadRequest when the id cannot be a plain file name there."""
    return Path(state) / safe_name(job_id, "job id", MARKER_SUFFIX)


def job_outputs(job: "Job") -> list[tuple[str, Path]]:
    """Every path a job writes: (option, path); a frames folder counts as one output."""
    if job.command == "animate":
        files, folders = animate_outputs(SimpleNamespace(**job.args))
        named = {**files, **folders}
    else:
        named = {"--out": Path(job.args["out"]) if job.args.get("out") else None}
    return [(opt, p) for opt, p in named.items() if p is not None]


def check_jobs(jobs: list["Job"], where: Path) -> None:
    """Refuse unusable ids and any output two jobs share (BadRequest naming both jobs)."""
    seen: list[tuple[str, str, Path]] = []
    for job in jobs:
        marker_path(job.id, Path("."))
        for opt, path in job_outputs(job):
            for other_id, other_opt, other in seen:
                if same_file(path, other):
                    raise BadRequest(f"{where.name}: jobs {other_id!r} ({other_opt}) and {job.id!r} ({opt}) both "
                                     f"write {path}; the second would replace the first: give each job its own output")
            seen.append((job.id, opt, path))
