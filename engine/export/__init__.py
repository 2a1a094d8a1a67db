"""``engine export``: a motion file -> formats other tools read (Unreal, LivePortrait, any DCC).

One timeline for every format (:func:`export_frames`): the engine's own frame plan
(:func:`engine.render.timeline.plan_frames`, the one ``animate`` renders), so row/frame k is at
audio time k/fps and the export is as long as the audio, exactly like the keys the add-on sets
and the video ``animate`` writes. ``upstream_timing=True`` keeps every generated frame (upstream
JoyVASA's timing, frame 0 at -0.08 s). Edited motion needs nothing special: edits live in the
motion file's own arrays, which is all an export reads.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from engine.jobs import EXPORT_SUFFIXES
from engine.motion.npz import MotionData


@dataclass(frozen=True)
class ExportFormat:
    name: str
    suffix: str
    description: str
    writer: str          # "module:function" under engine.export, imported on use


FORMATS: dict[str, ExportFormat] = {f.name: f for f in (
    ExportFormat("livelinkface-csv", EXPORT_SUFFIXES["livelinkface-csv"], "Live Link Face take CSV (Unreal): 52 ARKit blendshapes + head rotation",
                 "livelink:write_csv"),
    ExportFormat("lp-pkl", EXPORT_SUFFIXES["lp-pkl"], "LivePortrait motion template (driving template for LivePortrait & co.)",
                 "lp_template:write_pkl"),
    ExportFormat("bvh", EXPORT_SUFFIXES["bvh"], "BVH head joint + root (Blender, Maya, MotionBuilder, ...)", "bvh:write_bvh"),
)}


def export_frames(m: MotionData, fps: float | None = None, *, upstream_timing: bool = False) -> MotionData:
    """The motion on the export timeline (see module doc)."""
    from engine.render.timeline import plan_frames

    duration = float(m.meta.get("audio_duration_s", 0.0) or 0.0)
    return plan_frames(m, audio_duration_s=duration or None, fps=fps, upstream_timing=upstream_timing).frames


def writer(fmt: str) -> Callable[..., None]:
    import importlib

    module, func = FORMATS[fmt].writer.split(":")
    return getattr(importlib.import_module(f"engine.export.{module}"), func)


def export_motion(m: MotionData, fmt: str, out: Path, *, fps: float | None = None,
                  upstream_timing: bool = False, **options: object) -> MotionData:
    """Write ``m`` as ``fmt`` to ``out`` atomically; returns the frames written."""
    from engine.fileio import atomic_path

    if fmt == "lp-pkl":  # its output_fps is an integer: resample to a whole rate (engine/export/lp_template.py)
        from engine.export.lp_template import integer_fps

        fps = integer_fps(fps if fps is not None else m.fps)
    frames = export_frames(m, fps, upstream_timing=upstream_timing)
    with atomic_path(Path(out)) as tmp:
        writer(fmt)(tmp, frames, **options)
    return frames
