"""Batch job files: reading, validation, identity (hash), outputs that must not collide, done markers.

A job is finished when its marker ``<state>/<id>.done.json`` holds the same job hash and every
output it lists exists: a re-run skips it; changing any argument of a job re-runs it.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from engine.errors import BadRequest
from engine.fileio import atomic_path
from engine.batch.paths import marker_path
from engine.jobs import job_from_dict
from engine.pathguard import animate_outputs, same_file

#: the commands a batch job may name (generation and rendering; run as the warm worker runs them)
COMMANDS = ("motion", "animate")
#: argument names whose values are file system paths (made absolute against the job file)
PATH_ARGS = ("audio", "image", "out", "motion", "frames_dir", "save_motion", "controls", "weights")
RESERVED = ("progress",)


@dataclass
class BatchJob:
    id: str
    command: str
    args: dict[str, Any]                 # the job's wire form (engine/jobs.py), paths absolute, incl. "out"
    attempt: int = 0
    result: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """Identity of what the job computes (command + args), for done markers."""
        blob = json.dumps({"command": self.command, "args": self.args}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:20]

    def to_request(self) -> dict[str, Any]:
        return {"id": self.id, "command": self.command, "args": dict(self.args)}


def load_jobs(path: Path, weights: str | None = None) -> list[BatchJob]:
    """Read and validate ``path``; BadRequest says which job and what is wrong."""
    path = Path(path)
    from engine.pathguard import input_problem
    from engine.contract.protocol import JSONLimitError, loads_limited

    problem = input_problem(path)
    if problem:
        raise BadRequest(f"job file {path} {problem}")
    try:
        data = loads_limited(path.read_bytes(), "the file", max_bytes=64 * 1024 * 1024)
    except OSError as exc:
        raise BadRequest(f"job file {path} cannot be read: {exc}") from None
    except JSONLimitError as exc:
        raise BadRequest(f"job file {path} is not readable JSON ({exc})") from None
    defaults: dict[str, Any] = {}
    if isinstance(data, dict):
        defaults = data.get("defaults", {})
        data = data.get("jobs")
    if not isinstance(data, list) or not all(isinstance(j, dict) for j in data) or not isinstance(defaults, dict):
        raise BadRequest(f"{path}: expected a JSON list of job objects (or {{\"jobs\": [...], \"defaults\": {{}}}})")
    base = path.resolve().parent
    default_weights = weights or os.environ.get("JOYVASA_WEIGHTS") or None
    jobs: list[BatchJob] = []
    for i, raw in enumerate(data):
        raw = {**defaults, **raw}
        jid = str(raw.pop("id", f"job{i}"))
        where = f"{path.name} job {i} ({jid})"
        command = raw.pop("command", None)
        if command not in COMMANDS:
            raise BadRequest(f"{where}: \"command\" must be one of {', '.join(COMMANDS)}, got {command!r}")
        if not raw.get("out"):
            raise BadRequest(f"{where}: \"out\" (the output path) is required")
        for key in list(raw):
            if "-" in key or key in RESERVED:
                raise BadRequest(f"{where}: {key!r} is not a job argument (use long option names with '_' "
                                 f"for '-', without 'progress')")
        if default_weights and not raw.get("weights"):
            raw["weights"] = default_weights
        for key in PATH_ARGS:
            if isinstance(raw.get(key), str) and raw[key]:
                raw[key] = str((base / os.path.expanduser(raw[key])).resolve())
        jobs.append(BatchJob(jid, command, raw))
    ids = [j.id for j in jobs]
    dup = sorted({x for x in ids if ids.count(x) > 1})
    if dup:
        raise BadRequest(f"{path}: job ids must be unique, repeated: {', '.join(dup)}")
    for i, job in enumerate(jobs):          # the job type's checks, before any job runs
        try:
            job_from_dict(job.args, job.command)
        except BadRequest as exc:
            raise BadRequest(f"{path.name} job {i} ({job.id}): {exc}") from None
    check_jobs(jobs, path)
    return jobs


def state_dir(jobs_file: Path) -> Path:
    """Where done markers live: ``<jobs file>.state/`` next to the job file."""
    p = Path(jobs_file).resolve()
    return p.with_name(p.name + ".state")


def is_done(job: BatchJob, state: Path) -> bool:
    marker = marker_path(job.id, state)
    try:
        data = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    outputs = data.get("outputs") or {}
    return data.get("key") == job.key and bool(outputs) and all(Path(p).exists() for p in outputs.values())


def mark_done(job: BatchJob, state: Path, outputs: dict[str, str]) -> None:
    state.mkdir(parents=True, exist_ok=True)
    with atomic_path(marker_path(job.id, state)) as tmp:
        tmp.write_text(json.dumps({"key": job.key, "command": job.command, "outputs": outputs}, indent=1))


def clear_done(job: BatchJob, state: Path) -> None:
    try:
        marker_path(job.id, state).unlink()
    except OSError:
        pass


def job_outputs(job: BatchJob) -> list[tuple[str, Path]]:
    """Every path a job writes: (option, path); a frames folder counts as one output."""
    if job.command == "animate":
        files, folders = animate_outputs(SimpleNamespace(**job.args))
        named = {**files, **folders}
    else:
        named = {"--out": Path(job.args["out"]) if job.args.get("out") else None}
    return [(opt, p) for opt, p in named.items() if p is not None]


def check_jobs(jobs: list[BatchJob], where: Path) -> None:
    """Refuse unusable ids and any output two jobs share (BadRequest naming both jobs), before any
    job runs: two jobs with the same ``out`` both reported ok while the second silently replaced
    the first. Outputs are compared by real path (:func:`engine.pathguard.same_file`)."""
    seen: list[tuple[str, str, Path]] = []
    for job in jobs:
        marker_path(job.id, Path("."))
        for opt, path in job_outputs(job):
            for other_id, other_opt, other in seen:
                if same_file(path, other):
                    raise BadRequest(f"{where.name}: jobs {other_id!r} ({other_opt}) and {job.id!r} ({opt}) both "
                                     f"write {path}; the second would replace the first: give each job its own output")
            seen.append((job.id, opt, path))
