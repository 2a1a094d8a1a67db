"""``python -m engine bench render|motion|animate [options]``: benchmarks that print plain numbers.

Each target lives in ``engine/bench/<target>.py`` (``add_arguments(p)``, ``run(args) -> int``).
Target modules are imported when the ``bench`` parser is built, so they must keep torch and other
heavy imports inside ``run``; a missing module gives a clear message instead of a traceback.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from engine.bench import TARGETS

HELP = {"render": "W+G frame rendering at official size (fp32 / bf16, batch sizes)",
        "motion": "motion generation (HuBERT + DiT sampler)",
        "animate": "end-to-end portrait + audio → frames",
        "framing": "face detection + framing: found, where the landmarks land, ms per portrait",
        "codec": "H.264 encoders: libx264 vs h264_nvenc, encode speed and PSNR",
        "live": "live sessions: a WAV through the pcm source per (H, F): latency, D, keeping up, seams, memory"}


def _load(target: str):
    try:
        return importlib.import_module(f"engine.bench.{target}")
    except ModuleNotFoundError as exc:
        if exc.name != f"engine.bench.{target}":
            raise
        return None


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="target", metavar="TARGET")
    for target in TARGETS:
        sp = sub.add_parser(target, help=HELP.get(target, ""), description=HELP.get(target, ""))
        module = _load(target)
        if module is not None:
            module.add_arguments(sp)
        else:
            sp.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    if not getattr(args, "target", None):
        print(f"error: choose a benchmark: {', '.join(TARGETS)}", file=sys.stderr)
        return 2
    module = _load(args.target)
    if module is None:
        print(f"error: benchmark '{args.target}' is not available in this checkout "
              f"(engine/bench/{args.target}.py is missing)", file=sys.stderr)
        return 2
    return int(module.run(args) or 0)
