"""Streaming renderer: driving keypoints → W+G in batches → writers, never all frames at once.

Why: upstream appends every 512² frame (and its paste-back) to a list and writes the video
at the end, so memory grows with clip length (≈0.8 MB per 512² frame, more at full
resolution). Here a batch of ``batch`` frames is rendered, pasted back and handed to the
writers, then dropped: peak memory depends on the batch size, not on the clip length.
Between batches the reporter's progress call is the cancellation checkpoint.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch

from engine.render.writers import FrameWriter


@dataclass
class RenderStats:
    frames: int = 0
    batches: int = 0


def render_frames(stage_one: Any, f_s: torch.Tensor, x_s: torch.Tensor, x_d: torch.Tensor,
                  writers: Sequence[FrameWriter], *, batch: int, device: torch.device,
                  reporter: Any | None = None,
                  post: Callable[[np.ndarray], np.ndarray] | None = None,
                  to_uint8: Callable[[torch.Tensor], np.ndarray] | None = None) -> RenderStats:
    """Render frames ``x_d`` (N,21,3) and stream them to ``writers`` (already entered).

    ``post`` maps each (512,512,3) uint8 frame to the written frame (e.g. paste-back). Precision
    is stage one's own (it was loaded in the job's precision), never re-decided here.
    """
    if to_uint8 is None:
        from engine.models.stage_one import frames_to_uint8 as to_uint8  # type: ignore[no-redef]
    n = int(x_d.shape[0])
    batch = max(1, int(batch))
    stats = RenderStats()
    if reporter is not None:
        reporter.progress("render", 0, n, "frame")
    x_s = x_s.to(device)
    f_s = f_s.to(device)
    for start in range(0, n, batch):
        kp = x_d[start:start + batch].to(device)                      # (b,21,3)
        with torch.inference_mode():
            out = stage_one.warp_decode(f_s, x_s, kp)                  # (b,3,512,512)
        frames = to_uint8(out.float())                                 # (b,512,512,3) uint8
        del out
        for frame in frames:
            if post is not None:
                frame = post(frame)
            for w in writers:
                w.write(frame)
        stats.frames += len(frames)
        stats.batches += 1
        if reporter is not None:
            reporter.progress("render", stats.frames, n, "frame")      # raises Cancelled if asked
    return stats
