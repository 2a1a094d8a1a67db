"""Pipeline: a motion file -> Live Link Face CSV, LivePortrait template .pkl or BVH.

Used by ``engine export``, ``serve`` and the add-on's export operator. Steps of :func:`run_export`:
  1. ``hello`` (with the format and the formats this engine writes);
  2. validate cheap things first: the input is not the output, the output location;
  3. read the motion file (a bad or empty one is ``bad_request``, nothing written);
  4. write the export on the engine's one timeline (engine/export/__init__.py), atomically.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.errors import BadRequest
from engine.export import FORMATS, export_motion
from engine.fileio import check_output_file
from engine.jobs import ExportJob
from engine.pathguard import check_run_paths
from engine.pipeline.context import Context
from engine.runner import Done
from engine.pipeline.edit import read_motion


def run_export(job: ExportJob, ctx: Context) -> Done:
    """Run the numbered steps above; returns the ``done`` event's ``outputs``."""
    rep = ctx.reporter
    rep.hello("export", format=job.format, capabilities={"formats": list(FORMATS)})   # 1
    out = Path(job.out)
    check_run_paths({"--motion": job.motion}, {"--out": out})                          # 2
    check_output_file(out)
    motion = read_motion(job.motion)                                                    # 3
    if motion.n_frames == 0:
        raise BadRequest(f"{job.motion} has no frames")
    options = {"reference_mode": job.reference_mode} if job.format == "livelinkface-csv" else {}
    rep.progress("export", 0, motion.n_frames, "frame")
    frames = export_motion(motion, job.format, out, fps=job.fps, upstream_timing=job.upstream_timing,  # 4
                           **options)
    rep.progress("export", frames.n_frames, frames.n_frames, "frame")
    rep.artifact("motion_export", str(out))
    rep.log(f"{frames.n_frames} frames at {frames.fps:g} fps")
    return Done({"motion_export": str(out)})
