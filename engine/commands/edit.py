"""``python -m engine edit``: re-apply art-direction controls to a motion file, without sampling.

    python -m engine edit --motion M.npz --controls C.json --out E.npz [--audio A.wav]

Options -> :class:`engine.jobs.EditJob` -> :func:`engine.pipeline.edit.run_edit`, which reads the
motion's raw arrays (``raw_*``; a file written without controls is its own raw
motion), applies the controls (engine/motion/edit.py) and writes a new motion file: edits
never stack, so the same controls always give the same file, and it equals what
``engine motion --controls C.json`` wrote for the same sampling. No torch, no audio decoding
unless ``--audio`` is given (only needed for ``silence`` on files older than motion schema 1.1,
which have no ``vad_db``).

Protocol events (``--progress json``): ``hello`` {command: "edit"}, ``progress`` (stage
"motion", unit "file"), ``artifact`` {kind: "motion_npz", path}, ``done`` {outputs: {motion_npz}};
a bad motion or controls file is one ``bad_request`` error and nothing is written.
"""
from __future__ import annotations

import argparse

from engine.pipeline import run_pipeline
from engine.jobs import EditJob
from engine.pipeline.context import Context
from engine.runner import run_protocol_command


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--motion", required=True, help="motion .npz written by `engine motion` (edited or not)")
    p.add_argument("--controls", required=True, help="controls .json (schema: engine/motion/controls.py; docs: art direction)")
    p.add_argument("--out", required=True, help="output motion .npz (may be --motion itself)")
    p.add_argument("--audio", default=None,
                   help="the motion's audio: only for silence handling on files without vad_db")
    p.add_argument("--progress", choices=("text", "json"), default="text",
                   help="json: protocol-v1 events on stdout")


def run(args: argparse.Namespace) -> int:
    return run_protocol_command("edit", args.progress,
                                lambda rep: run_pipeline(EditJob.from_args(args), Context(rep)))
