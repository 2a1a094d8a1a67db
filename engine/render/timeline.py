"""Which generated frames end up in the video, and at which fps.

Upstream (spec §3 end) renders every generated frame at 25 fps and muxes the untouched audio:
the generator's input starts with 1280 samples (80 ms = 2 frames) of prepended silence, so
frame k shows the audio at ``k/25 − 0.08 s`` and the video runs ~120 ms longer than the
audio. The motion file records this as ``audio_offset_s`` (−0.08 for upstream motion).

Our default (``sync``): drop the frames that lie before audio time 0 (2 at 25 fps), keep
upstream's *reference* frame (generated frame 0, relative motion is measured against it),
resample to the output fps if asked, and trim to the audio length, so that frame k is at
audio time k/fps and the video is as long as the audio (within one frame).
``upstream_timing=True`` reproduces upstream exactly (no drop, no trim).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from engine.motion.npz import MotionData


@dataclass(frozen=True)
class FramePlan:
    reference: MotionData   # 1 frame: the generated frame 0 of the RAW motion (relative-motion reference)
    frames: MotionData      # the frames to render, frame k at audio time k / fps (sync mode)
    fps: float
    dropped_lead: int       # frames dropped at the start (native fps)
    trimmed_tail: int       # frames dropped at the end (output fps)
    notes: tuple[str, ...] = ()


def slice_motion(m: MotionData, start: int, stop: int | None = None) -> MotionData:
    sl = slice(start, stop)
    return replace(m, exp=m.exp[sl], scale=np.asarray(m.scale).reshape(-1)[sl], t=m.t[sl],
                   pitch=np.asarray(m.pitch).reshape(-1)[sl], yaw=np.asarray(m.yaw).reshape(-1)[sl],
                   roll=np.asarray(m.roll).reshape(-1)[sl], R=m.R[sl], coef=m.coef[sl], meta=dict(m.meta))


def plan_frames(m: MotionData, *, audio_duration_s: float | None, fps: float | None = None,
                upstream_timing: bool = False, max_frames: int | None = None) -> FramePlan:
    """Frames to render for motion ``m`` (see module doc)."""
    notes: list[str] = []
    reference = slice_motion(m.raw_view(), 0, 1)   # raw: constant control offsets must stay visible
    target_fps = float(fps or m.fps)
    offset = float(m.meta.get("audio_offset_s", 0.0) or 0.0)
    lead = 0
    work = m
    if not upstream_timing:
        lead_f = -offset * m.fps
        lead = max(0, int(round(lead_f)))
        if abs(lead_f - round(lead_f)) > 1e-3:
            notes.append(f"audio offset {offset:.4f}s is not a whole frame; rounded to {lead} frames")
        work = slice_motion(m, lead)
        work.meta["audio_offset_s"] = float(offset + lead / m.fps)
    if abs(target_fps - work.fps) > 1e-6:
        from engine.motion.resample import resample_motion

        work = resample_motion(work, target_fps)
    trimmed = 0
    if not upstream_timing and audio_duration_s:
        wanted = max(1, int(math.floor(audio_duration_s * target_fps + 0.5)))
        if work.n_frames > wanted:
            trimmed = work.n_frames - wanted
            work = slice_motion(work, 0, wanted)
        elif work.n_frames < wanted:
            notes.append(f"motion has {work.n_frames} frames, audio needs {wanted}; video is shorter")
    if max_frames is not None and work.n_frames > max_frames:
        work = slice_motion(work, 0, max_frames)
    return FramePlan(reference, work, target_fps, lead, trimmed, tuple(notes))
