"""Pipeline: a motion file + a controls file -> the re-edited motion file (no sampling, no torch).

Used by ``engine edit``, ``serve`` and the add-on's Re-apply Controls / Apply Motion File. Edits
never stack: the controls apply to the file's raw arrays (a file written without controls is its
own raw motion), so the same controls always give the same file, equal to what
``engine motion --controls`` wrote for the same sampling. Steps of :func:`run_edit`:
  1. ``hello``;
  2. validate cheap things first: inputs vs the output (the output may replace the input motion),
     then read the motion file (a bad one is ``bad_request``, nothing written);
  3. the voice level, from ``audio`` only for silence handling on files without ``vad_db``;
  4. apply the controls (engine/motion/edit.py);
  5. write the motion file atomically.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.audio import load_audio
from engine.errors import BadRequest
from engine.fileio import check_output_file
from engine.jobs import EditJob
from engine.motion.controls import ControlsError, load_controls
from engine.motion.edit import apply_controls, vad_for_motion
from engine.motion.npz import MotionData, MotionFileError, load_motion, save_motion
from engine.pathguard import check_run_paths
from engine.pipeline.context import Context
from engine.runner import Done


def read_motion(path: str) -> MotionData:
    """A motion file, or ``bad_request`` saying what is wrong with it (edit, export, animate)."""
    try:
        return load_motion(path)
    except MotionFileError as exc:
        raise BadRequest(str(exc)) from None


def run_edit(job: EditJob, ctx: Context) -> Done:
    """Run the numbered steps above; returns the ``done`` event's ``outputs``."""
    rep = ctx.reporter
    rep.hello("edit")                                                          # 1
    check_run_paths({"--motion": job.motion, "--controls": job.controls, "--audio": job.audio},   # 2
                    {"--out": job.out}, may_replace=(("--out", "--motion"),))
    check_output_file(Path(job.out))
    rep.progress("motion", 0, 1, "file")
    motion = read_motion(job.motion)
    vad = vad_for_motion(motion, load_audio(job.audio)) if job.audio else None  # 3
    try:
        edited = apply_controls(motion, load_controls(job.controls), vad_db=vad)  # 4
    except ControlsError as exc:
        raise BadRequest(str(exc)) from None
    path = save_motion(job.out, edited)                                        # 5
    rep.progress("motion", 1, 1, "file")
    rep.artifact("motion_npz", str(path))
    rep.log(f"{edited.n_frames} frames; controls {'applied' if edited.raw is not None else 'neutral'}")
    return Done({"motion_npz": str(path)})
