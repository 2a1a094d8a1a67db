"""``python -m engine crop``: only the face framing, no weights needed.

Why a command of its own: the Blender add-on previews the crop before a long render, and users
fix hard cases (animals, paintings, profiles) by trying ``--crop points:...``/``--scale``
quickly. ``animate`` frames with the same pipeline steps (engine/pipeline/crop.py) and the same
options, so what you see here is what gets animated. Options -> :class:`engine.jobs.CropJob`.

``--json`` prints exactly one JSON object on one line (the framing, see
:meth:`engine.framing.frame.Framing.to_json`, plus ``warnings`` and ``out``; on failure
``{"error": CODE, "message": ...}`` and exit 1). ``--progress json`` speaks the protocol
instead (hello, ``framing``, warnings, artifact, done), as every engine command does.
"""
from __future__ import annotations

import argparse
import json
import sys

from engine.pipeline import run_pipeline
from engine.errors import EngineError
from engine.jobs import CropJob
from engine.pipeline.context import Context
from engine.pipeline.crop import frame_job
from engine.runner import run_protocol_command


def add_framing_arguments(c: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """The framing options shared by ``crop`` and ``animate`` (into a parser or an argument group)."""
    c.add_argument("--crop", default="auto", metavar="auto|none|X,Y,W,H|points:LX,LY,RX,RY,MX,MY",
                   help="auto: detect the face (default); none: the whole picture; X,Y,W,H: a face box; "
                        "points: image-left eye, image-right eye, mouth centre (pixels of the picture)")
    c.add_argument("--scale", type=float, default=2.3,
                   help="crop side / face size (upstream app 2.3; larger = more shoulders, smaller face)")
    c.add_argument("--vx", type=float, default=0.0, help="shift the crop sideways by this fraction of its side")
    c.add_argument("--vy", type=float, default=-0.125,
                   help="shift the crop along the face's down axis (upstream -0.125: more forehead)")
    c.add_argument("--face-index", type=int, default=None, metavar="N",
                   help="with several faces: 0 = the largest (default), 1 = the next, ...")


def add_framing_options(p: argparse.ArgumentParser) -> None:
    add_framing_arguments(p.add_argument_group("framing"))


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--image", required=True, help="portrait image (PNG/JPEG/...)")
    p.add_argument("--animal", action="store_true", help="frame an animal face (never fails: centred fallback)")
    add_framing_options(p)
    p.add_argument("--out", default=None, help="write the 512x512 crop here (PNG)")
    p.add_argument("--weights", default=None,
                   help="weights folder (default $JOYVASA_WEIGHTS); optional: upstream's InsightFace "
                        "detector files there are used when present")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print exactly one JSON object on one line")
    out.add_argument("--progress", choices=("text", "json"), default="text",
                     help="json: protocol-v1 events on stdout (for the Blender add-on)")


def _run_json(args: argparse.Namespace) -> int:
    """``--json``: one object on stdout, nothing else there (logs and tracebacks go to stderr)."""
    real_stdout = sys.stdout
    sys.stdout = sys.stderr
    try:
        framing, outputs = frame_job(CropJob.from_args(args))
        obj = framing.to_json()
        obj["warnings"] = [{"code": c, "message": m} for c, m in framing.warnings]
        obj["out"] = outputs.get("crop_image")
        code = 0
    except EngineError as exc:
        obj, code = {"error": exc.code, "message": str(exc)}, 1
    except Exception as exc:  # noqa: BLE001 - one clear line, the traceback on stderr
        import traceback

        traceback.print_exc(file=sys.stderr)
        obj, code = {"error": "internal", "message": f"{type(exc).__name__}: {exc}"}, 1
    finally:
        sys.stdout = real_stdout
    for w in obj.get("warnings", []):
        print(f"warning [{w['code']}]: {w['message']}", file=sys.stderr, flush=True)
    real_stdout.write(json.dumps(obj, separators=(",", ":"), allow_nan=False) + "\n")
    real_stdout.flush()
    return code


def run(args: argparse.Namespace) -> int:
    if args.json:
        return _run_json(args)
    return run_protocol_command("crop", args.progress,
                                lambda rep: run_pipeline(CropJob.from_args(args), Context(rep)))
