"""``python -m engine run --job JOB.json|-``: run one job given in its wire form (engine/jobs.py).

Why: the Blender add-on's one-shot path sends exactly the JSON it would send the warm worker
(``engine serve``), so the cold and the warm paths differ only in process lifetime. ``--job -``
reads the job from the first line of stdin; later stdin lines may be ``cancel`` (as for every
``--progress json`` command). The job names its ``command``; events are that command's.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from engine.pipeline import run_pipeline
from engine.errors import BadRequest
from engine.jobs import job_from_dict
from engine.pipeline.context import Context
from engine.runner import Done, Reporter, run_protocol_command


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--job", required=True, metavar="JOB.json|-",
                   help="the job as one JSON object (schema joyvasa.job, with its command); - = the first stdin line")
    p.add_argument("--progress", choices=("text", "json"), default="text",
                   help="json: protocol-v1 events on stdout (for the Blender add-on)")


def read_job_text(source: str) -> str | bytes:
    """The job's JSON text from a file or (``-``) the first line of stdin, at most MAX_LINE_BYTES.
    A FIFO, device or folder is refused, not read (reading a FIFO blocks forever)."""
    from engine.pathguard import input_problem
    from engine.contract.protocol import MAX_LINE_BYTES

    if source == "-":
        return getattr(sys.stdin, "buffer", sys.stdin).readline(MAX_LINE_BYTES + 1)
    why = input_problem(source)
    if why:
        raise BadRequest(f"the job file {source} {why}")
    try:
        with open(source, "rb") as fh:
            return fh.read(MAX_LINE_BYTES + 1)
    except OSError as exc:
        raise BadRequest(f"cannot read the job file {source}: {exc.strerror or exc}") from None


def parse_job_text(text: str | bytes) -> dict[str, Any]:
    """The one job reader: the limited JSON loader (UTF-8, size, depth and number limits)."""
    from engine.contract.protocol import JSONLimitError, loads_limited

    try:
        data = loads_limited(text, "the job")
    except JSONLimitError as exc:
        raise BadRequest(str(exc)) from None
    if not isinstance(data, dict):
        raise BadRequest(f"the job must be a JSON object, got {type(data).__name__}")
    return data


def run(args: argparse.Namespace) -> int:
    try:
        data: dict[str, Any] | BadRequest = parse_job_text(read_job_text(args.job))
    except BadRequest as exc:
        data = exc
    command = str(data.get("command") or "run") if isinstance(data, dict) else "run"

    def body(rep: Reporter) -> Done:
        if isinstance(data, BadRequest):
            raise data
        return run_pipeline(job_from_dict(data), Context(rep))

    return run_protocol_command(command, args.progress, body)
