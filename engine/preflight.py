"""Fail before working: the file-system and package checks a job needs before it loads a network.

Why one module: ``motion`` and ``animate`` (on every entry point) must refuse an unwritable or
full output location, an input that is also an output or a missing package in the first second,
with a stable code, instead of after minutes of work. Option values and bounds are checked once,
when the typed job is built (engine/jobs.py); the pipelines call :func:`check_motion_request` /
:func:`check_animate_request` with the job right after ``hello``. Everything here is cheap (no
torch work, no weights read) so it also runs in a warm worker for every request.
"""
from __future__ import annotations

import importlib
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Iterable

from engine.errors import PACKAGES, BadRequest, DiskFull, OutputError, install_command, missing_dependency  # noqa: F401
from engine.fileio import check_output_file
from engine.jobs import AnimateJob, MotionJob
from engine.pathguard import check_animate_paths, check_run_paths

#: rough bytes per pixel per frame: H.264 CRF 18 (generous) and lossless PNG of a face
MP4_BYTES_PER_PIXEL = 0.25
PNG_BYTES_PER_PIXEL = 2.0
MOTION_BYTES_PER_FRAME = 1024
#: keep this much free beyond the estimate (file system metadata, the temp name's copy)
SPACE_MARGIN_BYTES = 16 * 1024 * 1024


def require_packages(modules: Iterable[str]) -> None:
    """Import each module now; a missing or broken one is ``missing_dependency`` naming the fix."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise missing_dependency(module, exc) from None


# -- outputs --------------------------------------------------------------------------------------

def _existing_ancestor(path: Path) -> Path:
    p = path.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def check_free_space(folder: Path, need_bytes: int, what: str) -> None:
    """``disk_full`` when the file system holding ``folder`` clearly cannot take ``need_bytes``."""
    try:
        free = shutil.disk_usage(_existing_ancestor(folder)).free
    except OSError:
        return  # cannot tell (exotic file system): the write itself will say
    if free < need_bytes + SPACE_MARGIN_BYTES:
        raise DiskFull(f"not enough free space for {what} in {folder}: needs about "
                       f"{(need_bytes + SPACE_MARGIN_BYTES) / 2**20:.0f} MiB, {free / 2**20:.0f} MiB free; "
                       "free some space or choose another output folder")


@dataclass(frozen=True)
class AnimateSize:
    """What an animate run will write: frames, pixels per frame."""

    frames: int
    width: int
    height: int

    def mp4_bytes(self) -> int:
        return int(self.frames * self.width * self.height * MP4_BYTES_PER_PIXEL) + 64 * 1024

    def png_bytes(self) -> int:
        return int(self.frames * self.width * self.height * PNG_BYTES_PER_PIXEL)


def check_animate_space(out: Path | None, frames_dir: Path | None, size: AnimateSize) -> None:
    """Both outputs on one file system need their sum."""
    need: dict[Path, int] = {}
    if out is not None:
        key = _existing_ancestor(out.parent)
        need[key] = need.get(key, 0) + size.mp4_bytes()
    if frames_dir is not None:
        key = _existing_ancestor(frames_dir.parent)
        need[key] = need.get(key, 0) + size.png_bytes()
    for folder, n in need.items():
        check_free_space(folder, n, f"{size.frames} frames of {size.width}x{size.height}")


def check_motion_output(out: Path, frames: int | None) -> None:
    """``--out`` of ``motion``: a .npz name in a writable folder, not a folder, room for it."""
    if out.suffix.lower() != ".npz":
        raise BadRequest(f"--out must end in .npz, got {out}")
    check_output_file(out)
    if frames is not None:
        check_free_space(out.parent, frames * MOTION_BYTES_PER_FRAME, "the motion file")


def estimate_frames(duration_s: float | None, fps: float | None) -> int | None:
    if duration_s is None:
        return None
    return int(math.ceil(duration_s * (fps or 25.0))) + 2


def packages_for(*, audio: bool, generate: bool, mp4: bool, images: bool) -> list[str]:
    """The optional packages one request will import, in the order it would need them."""
    mods = ["numpy", "torch"]
    if images:
        mods.append("cv2")
    if audio:  # librosa only for formats libsndfile cannot read: imported (and reported) on demand
        mods += ["soundfile", "soxr"]
    if generate:  # transformers only for HuBERT layouts engine/models/hubert_native.py does not cover
        mods += ["yaml"]
    if mp4:
        mods.append("av")
    return mods


# -- per command ----------------------------------------------------------------------------------

def audio_duration_s(path: str | Path) -> float | None:
    """Duration from the file header when soundfile can read it (cheap); None otherwise."""
    try:
        import soundfile as sf

        info = sf.info(str(path))
        return float(info.frames) / float(info.samplerate) if info.samplerate else None
    except Exception:  # noqa: BLE001 - mp3 etc.: the estimate is skipped, decoding checks later
        return None


def check_motion_request(job: MotionJob) -> None:
    """``motion``: packages, inputs and the output; called right after ``hello``."""
    require_packages(packages_for(audio=True, generate=True, mp4=False, images=False))
    audio, out = Path(job.audio), Path(job.out)
    check_run_paths({"--audio": audio, "--controls": job.controls}, {"--out": out})
    duration = audio_duration_s(audio) if audio.is_file() else None
    check_motion_output(out, estimate_frames(duration, job.motion.fps))


def check_animate_request(job: AnimateJob) -> None:
    """``animate``: packages, and inputs vs every output (engine/pathguard.py reads the job's wire form)."""
    generate = job.motion_file is None
    require_packages(packages_for(audio=bool(job.audio), generate=generate, mp4=bool(job.out), images=True))
    if job.save_motion and generate:
        check_motion_output(Path(job.save_motion), None)
    check_animate_paths(SimpleNamespace(**job.to_dict()))
