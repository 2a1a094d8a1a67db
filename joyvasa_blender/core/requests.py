"""Scene settings -> the engine's job dicts (bpy-free): what every operator sends the engine.

Why one module: a job's settings must change shape at most twice on the way to the pipeline
(panel -> job dict here -> typed job in engine/jobs.py). The warm worker gets the dict as a
``serve`` request's ``args``; a one-shot run gets the very same JSON on stdin
(``python -m engine run --job -``), so the two paths differ only in process lifetime and can
never disagree about an option (the Precision preference, say). The wire form is the engine's:
flat keys = the command's long option names with ``_`` (schema ``joyvasa.job`` v1, documented
in engine/jobs.py; golden files in tests/contract/jobs/ are checked on both sides).

Adding a panel setting that reaches the engine: one row in :data:`SCENE_FIELDS` (or
:data:`PREF_FIELDS`), the field in engine/jobs.py, and a golden job file.
"""
from __future__ import annotations

import json
from typing import Any, Callable, Mapping

from . import framing
from .contract.schema import JOB_SCHEMA, JOB_VERSION


#: THE table: job key <- scene.joyvasa property, for the commands that take it
SCENE_FIELDS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("seed", "seed", ("motion", "animate", "live")),
    ("sampler", "sampler", ("motion", "animate", "live")),
    ("steps", "steps", ("motion", "animate", "live")),          # 0 in the panel = the sampler's default
    ("cfg_scale", "cfg_scale", ("motion", "animate", "live")),
    ("smooth", "smooth", ("motion", "animate")),
    ("region", "region", ("animate",)),
    ("animal", "animal", ("animate", "crop")),
    ("normalize_lip", "normalize_lip", ("animate",)),   # not sent with animal (the animal pipeline decides)
)
#: job key <- the add-on preference (engine_config()), for the commands that load networks
PREF_FIELDS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("weights", "weights", ("motion", "animate", "crop", "live")),
    ("device", "device", ("motion", "animate", "live")),
    ("dtype", "dtype", ("motion", "animate", "live")),          # the Precision preference: every network of the job
)


def _scene_value(key: str, value: Any) -> Any:
    """Panel values -> job values (the panel's 0 steps = default; cfg rounded as the UI shows it)."""
    if key == "steps":
        return int(value) if value else None
    if key == "cfg_scale":
        return round(float(value), 4)
    if key == "seed":
        return int(value)
    return value


def job_dict(command: str, settings: Callable[[str], Any] | Mapping[str, Any] | None = None,
             prefs: Mapping[str, Any] | None = None, **given: Any) -> dict[str, Any]:
    """The job for ``command``: the table's scene ``settings`` (a getter or a mapping of
    property values) and ``prefs``, then the operator's own ``given`` fields (paths, outputs).
    ``None`` and empty preference strings are left out (= the engine's default)."""
    get = settings if callable(settings) else (settings or {}).get
    job: dict[str, Any] = {"schema": JOB_SCHEMA, "version": JOB_VERSION, "command": command}
    if settings is not None:
        for key, prop, commands in SCENE_FIELDS:
            value = get(prop) if command in commands else None
            if value is not None:
                job[key] = _scene_value(key, value)
        if command == "animate" and job.get("animal"):
            job.pop("normalize_lip", None)
    job.update(given)
    return with_prefs({k: v for k, v in job.items() if v is not None}, prefs or {})


def with_prefs(job: Mapping[str, Any], prefs: Mapping[str, Any]) -> dict[str, Any]:
    """``job`` plus the preference fields of its command (weights, device, Precision)."""
    out = dict(job)
    for key, pref, commands in PREF_FIELDS:
        value = prefs.get(pref)
        if out.get("command") in commands and value not in (None, "") and key not in out:
            out[key] = value
    return out


def one_shot_argv(python: str) -> list[str]:
    """The one-shot engine process for any job: the job itself goes to its stdin (:func:`to_line`)."""
    return [python, "-m", "engine", "run", "--job", "-", "--progress", "json"]


def framing_fields(settings: Callable[[str], Any]) -> dict[str, Any]:
    """The framing part of a crop/animate job from the scene's framing settings (ValueError with a
    user message when the box or points are incomplete); defaults are left to the engine."""
    f = framing.framing_fields(settings("crop_mode"), box=tuple(settings("crop_box")),
                               points=tuple(settings("face_points")), scale=settings("crop_scale"),
                               vx=settings("crop_vx"), vy=settings("crop_vy"), face_index=settings("face_index"))
    return f


def to_line(job: Mapping[str, Any]) -> str:
    """The job as one JSON line (what ``engine run --job -`` reads from stdin)."""
    return json.dumps(dict(job), separators=(",", ":"), allow_nan=False) + "\n"
