"""``python -m engine edit``: re-apply art-direction controls to a motion file, without sampling.

    python -m engine edit --motion M.npz --controls C.json --out E.npz [--audio A.wav]

Reads the motion's raw arrays (``raw_*``; a file written without controls is its own raw
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
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--motion", required=True, help="motion .npz written by `engine motion` (edited or not)")
    p.add_argument("--controls", required=True, help="controls .json (schema in README.md, 'Art direction')")
    p.add_argument("--out", required=True, help="output motion .npz (may be --motion itself)")
    p.add_argument("--audio", default=None,
                   help="the motion's audio: only for silence handling on files without vad_db")
    p.add_argument("--progress", choices=("text", "json"), default="text",
                   help="json: protocol-v1 events on stdout")


def run(args: argparse.Namespace) -> int:
    from engine.runner import run_protocol_command

    def body(reporter) -> dict[str, str]:  # type: ignore[no-untyped-def]
        from engine.errors import BadRequest
        from engine.motion.controls import ControlsError, load_controls
        from engine.motion.edit import apply_controls, vad_for_motion
        from engine.motion.npz import MotionFileError, load_motion, save_motion

        reporter.hello("edit")
        out = Path(args.out)
        if out.suffix.lower() != ".npz":
            raise BadRequest(f"--out must end in .npz, got {out}")
        from engine.fileio import check_output_file
        from engine.pathguard import check_run_paths

        check_run_paths({"--motion": args.motion, "--controls": args.controls, "--audio": args.audio},
                        {"--out": out}, may_replace=(("--out", "--motion"),))
        check_output_file(out)
        reporter.progress("motion", 0, 1, "file")
        try:
            motion = load_motion(args.motion)
        except MotionFileError as exc:
            raise BadRequest(str(exc)) from None
        vad = None
        if args.audio:
            from engine.audio import load_audio
            vad = vad_for_motion(motion, load_audio(args.audio))
        try:
            edited = apply_controls(motion, load_controls(args.controls), vad_db=vad)
        except ControlsError as exc:
            raise BadRequest(str(exc)) from None
        path = save_motion(out, edited)
        reporter.progress("motion", 1, 1, "file")
        reporter.artifact("motion_npz", str(path))
        reporter.log(f"{edited.n_frames} frames; controls {'applied' if edited.raw is not None else 'neutral'}")
        return {"motion_npz": str(path)}

    return run_protocol_command("edit", args.progress, body)
