"""``python -m engine parity --reference DIR [--only PREFIXES]``."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--reference", required=True, type=Path,
                   help="reference folder (checkpoints + reference.npz), e.g. the output of: python tools/fixtures.py unpack upstream_tiny_seed0")
    p.add_argument("--only", default="",
                   help="comma-separated name prefixes, e.g. F_,M_ (default: every array)")


def run(args: argparse.Namespace) -> int:
    from engine.parity.run import run_parity

    only = [s.strip() for s in args.only.split(",") if s.strip()] or None
    try:
        failures = run_parity(args.reference, only)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"parity: {failures} failure(s)", file=sys.stderr)
    return 1 if failures else 0
