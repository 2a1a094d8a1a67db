"""``python -m engine crop``: only the face framing, no weights needed.

Why a command of its own: the Blender add-on previews the crop before a long render, and users
fix hard cases (animals, paintings, profiles) by trying ``--crop points:...``/``--scale``
quickly. ``animate`` frames with the same function and the same options, so what you see here
is what gets animated.

``--json`` prints exactly one JSON object on one line (the framing, see
:meth:`engine.framing.frame.Framing.to_json`, plus ``warnings`` and ``out``; on failure
``{"error": CODE, "message": ...}`` and exit 1). ``--progress json`` speaks the protocol
instead (hello, ``framing``, warnings, artifact, done), as every engine command does.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from engine.errors import BadRequest, EngineError, OutputError
from engine.runner import Reporter, run_protocol_command


def add_framing_arguments(c: Any) -> None:
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


def optional_weights_root(arg: str | None) -> Path | None:
    """``--weights``/``$JOYVASA_WEIGHTS`` if it names a folder; framing never requires one."""
    raw = arg or os.environ.get("JOYVASA_WEIGHTS", "")
    if not raw:
        return None
    root = Path(raw).expanduser()
    return root if root.is_dir() else None


def framing_options(args: argparse.Namespace, weights_root: Path | None = None) -> Any:
    """FramingOptions from parsed CLI args (also used by ``animate``)."""
    from engine.framing.frame import FramingOptions, parse_crop_arg

    return FramingOptions(crop=parse_crop_arg(args.crop), scale=args.scale, vx=args.vx, vy=args.vy,
                          face_index=args.face_index, animal=bool(getattr(args, "animal", False)),
                          weights_root=weights_root).validated()


def report_framing(reporter: Reporter, framing: Any) -> None:
    """The ``framing`` event and its warnings (shared with ``animate``)."""
    reporter.events.emit("framing", **framing.to_json())
    reporter.log(f"framing: {framing.method} box={framing.to_json()['box']} angle={framing.angle_deg:.1f} deg")
    for code, message in framing.warnings:
        reporter.warning(code, message)


def run_crop(args: argparse.Namespace, reporter: Reporter | None = None) -> tuple[Any, dict[str, str]]:
    """Frame ``args.image`` and write ``args.out``; returns (Framing, outputs). The worker calls this."""
    import cv2

    from engine.fileio import atomic_path
    from engine.framing.frame import frame_portrait, load_picture

    opts = framing_options(args, optional_weights_root(getattr(args, "weights", None)))
    out = Path(args.out) if args.out else None
    if out is not None:
        if out.suffix.lower() not in (".png", ".jpg", ".jpeg"):
            raise BadRequest(f"--out must end in .png or .jpg (got {out.name})")
        from engine.fileio import check_output_file
        from engine.pathguard import check_run_paths

        check_run_paths({"--image": args.image}, {"--out": out})
        check_output_file(out)
    img = load_picture(args.image)
    framing = frame_portrait(img, opts)
    if reporter is not None:
        report_framing(reporter, framing)
    outputs: dict[str, str] = {}
    if out is not None:
        with atomic_path(out, suffix=out.suffix) as tmp:
            ok = cv2.imwrite(str(tmp), cv2.cvtColor(framing.image, cv2.COLOR_RGB2BGR))
            if not ok:
                raise OutputError(f"cannot write {out}")
        outputs["crop_image"] = str(out)
        if reporter is not None:
            reporter.artifact("crop_image", str(out))
    return framing, outputs


def _run_json(args: argparse.Namespace) -> int:
    """``--json``: one object on stdout, nothing else there (logs and tracebacks go to stderr)."""
    real_stdout = sys.stdout
    sys.stdout = sys.stderr
    try:
        framing, outputs = run_crop(args)
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


def execute(args: argparse.Namespace, ctx: Any) -> dict[str, str]:
    """The pipeline entry (one-shot ``--progress`` runs and the ``serve`` worker)."""
    ctx.reporter.hello("crop", device="cpu", dtype="uint8")
    return run_crop(args, ctx.reporter)[1]


def run(args: argparse.Namespace) -> int:
    if args.json:
        return _run_json(args)

    from engine.pipeline.context import Context

    return run_protocol_command("crop", args.progress, lambda rep: execute(args, Context(rep)))
