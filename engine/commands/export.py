"""``python -m engine export``: motion ``.npz`` -> Live Link Face CSV, LivePortrait template, BVH.

    python -m engine export --motion M.npz --format livelinkface-csv|lp-pkl|bvh --out FILE [--fps F]

Protocol events (``--progress json``): ``hello`` {command: "export", format}, ``progress``
(stage "export", unit "frame"), ``artifact`` {kind: "motion_export", path}, ``done``
{outputs: {motion_export}}; a bad motion file, format/suffix mismatch or a bad fps is one
``bad_request`` error and nothing is written. Options -> :class:`engine.jobs.ExportJob` ->
:func:`engine.pipeline.export.run_export`. Formats and the timeline: engine/export/.
"""
from __future__ import annotations

import argparse

from engine.pipeline import run_pipeline
from engine.export import FORMATS
from engine.jobs import REFERENCE_MODES, ExportJob
from engine.pipeline.context import Context
from engine.runner import run_protocol_command


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--motion", required=True, help="motion .npz written by `engine motion` (edited or not)")
    p.add_argument("--format", required=True, choices=tuple(FORMATS),
                   help="; ".join(f"{f.name}: {f.description} ({f.suffix})" for f in FORMATS.values()))
    p.add_argument("--out", required=True, help="output file, with the format's suffix (.csv, .pkl, .bvh)")
    p.add_argument("--fps", type=float, default=None, help="frame rate of the export (default: the motion's)")
    p.add_argument("--reference", choices=REFERENCE_MODES, default="auto",
                   help="livelinkface-csv: the neutral expression of the ARKit readout (default auto, as the add-on)")
    p.add_argument("--upstream-timing", action="store_true",
                   help="keep every generated frame (frame 0 at -0.08 s) instead of the audio timeline")
    p.add_argument("--progress", choices=("text", "json"), default="text",
                   help="json: protocol-v1 events on stdout")


def run(args: argparse.Namespace) -> int:
    return run_protocol_command("export", args.progress,
                                lambda rep: run_pipeline(ExportJob.from_args(args), Context(rep)))
