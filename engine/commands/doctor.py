"""``python -m engine doctor``: is this installation ready to animate? (the report itself:
engine/pipeline/doctor.py). Exit code 0 when everything required is present and loads, 1 otherwise.
"""
from __future__ import annotations

import argparse
import json

from engine.pipeline.doctor import build_report, print_text


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", default=None, help="weights folder (default $JOYVASA_WEIGHTS)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.add_argument("--no-load", action="store_true", help="only check that files exist (fast)")


def run(args: argparse.Namespace) -> int:
    report = build_report(args.weights, load=not args.no_load)
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print_text(report)
    return 0 if report["ok"] else 1
