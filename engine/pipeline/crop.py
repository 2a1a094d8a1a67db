"""Pipeline: a portrait -> its 512x512 face crop and where it sits. Used by ``engine crop``,
``serve`` and (steps 2-3) ``animate``, so what ``crop`` shows is what gets animated.

Steps of :func:`run_crop`:
  1. ``hello`` (framing runs on the CPU, no weights needed);
  2. validate cheap things first: the image is not the output, the output path;
  3. frame the picture (engine.framing; the optional detector files from the weights folder);
  4. report: the ``framing`` event and its warnings;
  5. write the crop atomically (when ``out`` is given).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from engine.errors import OutputError
from engine.fileio import atomic_path, check_output_file
from engine.framing.frame import Framing, FramingOptions, frame_portrait, load_picture
from engine.jobs import CropJob, RenderConfig, parse_crop
from engine.pathguard import check_run_paths
from engine.pipeline.context import Context
from engine.runner import Done, NullReporter, Reporter


def optional_weights_root(arg: str | None) -> Path | None:
    """``weights``/``$JOYVASA_WEIGHTS`` if it names a folder; framing never requires one."""
    raw = arg or os.environ.get("JOYVASA_WEIGHTS", "")
    if not raw:
        return None
    root = Path(raw).expanduser()
    return root if root.is_dir() else None


def framing_options(job: CropJob | RenderConfig, weights_root: Path | None = None) -> FramingOptions:
    """The engine.framing options of a crop job or an animate job's render config (the same object)."""
    crop = job.crop_mode if isinstance(job, RenderConfig) else job.crop
    return FramingOptions(crop=parse_crop(crop), scale=job.scale, vx=job.vx, vy=job.vy, face_index=job.face_index,
                          animal=job.animal, weights_root=weights_root)


def report_framing(reporter: Reporter, framing: Framing) -> None:
    """Step 4: the ``framing`` event and its warnings (shared with ``animate``)."""
    reporter.events.emit("framing", **framing.to_json())
    reporter.log(f"framing: {framing.method} box={framing.to_json()['box']} angle={framing.angle_deg:.1f} deg"
                 + (f" ({framing.detector_note})" if framing.detector_note else ""))
    for code, message in framing.warnings:
        reporter.warning(code, message)


def write_crop(out: Path, framing: Framing) -> None:
    """Step 5: the crop as PNG/JPEG, atomically."""
    import cv2  # deferred: OpenCV's import costs start-up time of commands that never write a crop

    with atomic_path(out, suffix=out.suffix) as tmp:
        if not cv2.imwrite(str(tmp), cv2.cvtColor(framing.image, cv2.COLOR_RGB2BGR)):
            raise OutputError(f"cannot write {out}")


def frame_job(job: CropJob, reporter: Reporter | None = None) -> tuple[Framing, dict[str, str]]:
    """Steps 2-5 without ``hello``: also what ``engine crop --json`` prints."""
    opts = framing_options(job, optional_weights_root(job.weights))       # 2
    out = Path(job.out) if job.out else None
    if out is not None:
        check_run_paths({"--image": job.image}, {"--out": out})
        check_output_file(out)
    rep = reporter or NullReporter()
    framing = frame_portrait(load_picture(job.image), opts)                 # 3
    report_framing(rep, framing)                                            # 4
    outputs: dict[str, str] = {}
    if out is not None:
        write_crop(out, framing)                                            # 5
        outputs["crop_image"] = str(out)
        rep.artifact("crop_image", str(out))
    return framing, outputs


def run_crop(job: CropJob, ctx: Context) -> Done:
    """Run the numbered steps above; returns the ``done`` event's ``outputs``."""
    ctx.reporter.hello("crop", device="cpu", dtype="uint8")                 # 1
    return Done(frame_job(job, ctx.reporter)[1])
