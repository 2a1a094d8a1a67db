"""``python -m engine export``: motion ``.npz`` -> Live Link Face CSV, LivePortrait template, BVH.

    python -m engine export --motion M.npz --format livelinkface-csv|lp-pkl|bvh --out FILE [--fps F]

Protocol events (``--progress json``): ``hello`` {command: "export", format}, ``progress``
(stage "export", unit "frame"), ``artifact`` {kind: "motion_export", path}, ``done``
{outputs: {motion_export}}; a bad motion file, format/suffix mismatch or a bad fps is one
``bad_request`` error and nothing is written. Formats and the timeline: engine/export/.
"""
from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    from engine.export import FORMATS
    from engine.export.arkit import REFERENCE_MODES

    p.add_argument("--motion", required=True, help="motion .npz written by `engine motion` (edited or not)")
    p.add_argument("--format", required=True, choices=tuple(FORMATS),
                   help="; ".join(f"{f.name}: {f.description} ({f.suffix})" for f in FORMATS.values()))
    p.add_argument("--out", required=True, help="output file, with the format's suffix (.csv, .pkl, .bvh)")
    p.add_argument("--fps", type=float, default=None, help="frame rate of the export (default: the motion's)")
    p.add_argument("--reference", dest="reference_mode", choices=REFERENCE_MODES, default="auto",
                   help="livelinkface-csv: the neutral expression of the ARKit readout (default auto, as the add-on)")
    p.add_argument("--upstream-timing", action="store_true",
                   help="keep every generated frame (frame 0 at -0.08 s) instead of the audio timeline")
    p.add_argument("--progress", choices=("text", "json"), default="text",
                   help="json: protocol-v1 events on stdout")


def run(args: argparse.Namespace) -> int:
    from engine.runner import run_protocol_command

    def body(reporter) -> dict[str, str]:  # type: ignore[no-untyped-def]
        from engine.errors import BadRequest
        from engine.export import FORMATS, export_motion
        from engine.motion.npz import MotionFileError, load_motion

        fmt = FORMATS[args.format]
        out = Path(args.out)
        reporter.hello("export", format=fmt.name, capabilities={"formats": list(FORMATS)})
        if out.suffix.lower() != fmt.suffix:
            raise BadRequest(f"--out for {fmt.name} must end in {fmt.suffix}, got {out}")
        from engine import preflight
        from engine.fileio import check_output_file

        preflight.check_number("--fps", args.fps, preflight.FPS_MIN, preflight.FPS_MAX)
        from engine.pathguard import check_run_paths

        check_run_paths({"--motion": args.motion}, {"--out": out})
        check_output_file(out)
        try:
            motion = load_motion(args.motion)
        except MotionFileError as exc:
            raise BadRequest(str(exc)) from None
        if motion.n_frames == 0:
            raise BadRequest(f"{args.motion} has no frames")
        options = {"reference_mode": args.reference_mode} if fmt.name == "livelinkface-csv" else {}
        reporter.progress("export", 0, motion.n_frames, "frame")
        frames = export_motion(motion, fmt.name, out, fps=args.fps, upstream_timing=args.upstream_timing, **options)
        reporter.progress("export", frames.n_frames, frames.n_frames, "frame")
        reporter.artifact("motion_export", str(out))
        reporter.log(f"{frames.n_frames} frames at {frames.fps:g} fps")
        return {"motion_export": str(out)}

    return run_protocol_command("export", args.progress, body)
