"""argparse builds the typed job and nothing else: every option of a job command is a field of its
job type (engine/jobs.py) under the same name, and every field has an option (bar the ones only
code sets), so a flag added to a parser cannot be dropped silently on its way to the pipeline."""
from __future__ import annotations

import argparse

import pytest

from engine.cli import build_parser
from engine.jobs import JOB_TYPES

#: options that steer the process, not the job
PROCESS_OPTIONS = {"progress", "json", "help"}
#: job fields no command line sets (wire-only)
WIRE_ONLY: dict[str, set[str]] = {"live": {"source"}}   # live: --audio / --mic pick the source


def _dests(command: str) -> set[str]:
    parser = build_parser([command])
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {a.dest for a in sub.choices[command]._actions if a.option_strings} - PROCESS_OPTIONS


@pytest.mark.parametrize("command", sorted(JOB_TYPES))
def test_every_option_is_a_job_field_and_back(command: str) -> None:
    keys = set(JOB_TYPES[command].wire_keys())
    dests = _dests(command)
    assert dests - keys == set(), f"{command}: options without a job field (dropped by from_args)"
    assert keys - dests - WIRE_ONLY.get(command, set()) == set(), f"{command}: job fields without an option"


@pytest.mark.parametrize("command", sorted(JOB_TYPES))
def test_parsed_defaults_are_the_job_defaults(command: str) -> None:
    """Each required option given once: the parsed job equals the job built from only those values."""
    job_type = JOB_TYPES[command]
    required = {"audio": "a.wav", "out": {"motion": "m.npz", "animate": "o.mp4", "crop": "c.png", "edit": "e.npz",
                                          "export": "x.bvh", "fetch": "/w", "live": "t.npz"}.get(command, "o"),
                "image": "p.png", "motion": "m.npz", "controls": "c.json", "format": "bvh"}
    need = {k for k, path in job_type.wire_keys().items() if path in job_type.required()}
    argv = [command] + [x for k in sorted(need) for x in ("--" + k.replace("_", "-"), required[k])]
    if command == "animate":
        argv += ["--audio", "a.wav", "--out", "o.mp4"]
    if command == "live":
        argv += ["--audio", "a.wav"]
    parsed = job_type.from_args(build_parser([command]).parse_args(argv))
    given = {k: required[k] for k in need} | ({"audio": "a.wav", "out": "o.mp4"} if command == "animate" else {}) \
        | ({"audio": "a.wav"} if command == "live" else {})
    assert parsed == job_type.from_dict(given)
