"""How good a live take is: seam continuity and distance from the offline take (numpy only).

Used by ``python -m engine bench live`` and tools/live_sweep.py. Both work on the normalised model
output (``coef``, the first 70 numbers per frame: expression z-scores, pose min-max), before the
pose EMA and the controls - the strictest view, since the EMA (α = 0.01) would hide any pose step.

* **Seam continuity.** A hop's first frame continues the previous hop's last frame, which another
  window computed; if clamping left a step there, the frame-to-frame change at the seams would be
  larger than inside hops. :func:`seam_continuity` compares the 99th percentiles.
* **Distance from offline.** The live take against ``engine motion`` on the same audio and seed:
  RMS of the per-frame difference, in coef units, next to the same distance between two offline
  takes with different seeds (what "a different but equally valid take" costs).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

#: coef columns the de-normalisation reads (exp 63, scale, t 3, pitch, yaw, roll)
USED = 70


def frame_changes(coef: np.ndarray) -> np.ndarray:
    """(n, C) -> (n-1,) Euclidean norm of frame k+1 minus frame k over the used columns;
    entry k-1 is the change *into* frame k."""
    x = np.asarray(coef, np.float64)[:, :USED]
    return np.linalg.norm(np.diff(x, axis=0), axis=1)


@dataclass(frozen=True)
class SeamStats:
    p99_seam: float        # 99th percentile of the change into a hop's first frame
    p99_inside: float      # ... into every other frame (inside hops)
    n_seams: int
    n_inside: int

    @property
    def ratio(self) -> float:
        """p99 at seams / p99 inside hops (target <= 1.5)."""
        return self.p99_seam / self.p99_inside if self.p99_inside > 0 else float("inf")


def seam_continuity(coef: np.ndarray, seams: Iterable[int]) -> SeamStats:
    """``seams``: the first frame of every hop after the first (frames whose previous frame came
    from another window), e.g. ``[w.commit[0] for w in stream.windows if w.commit[0] > 0]``."""
    d = frame_changes(coef)
    at = np.zeros(len(d), bool)
    for k in seams:
        if 1 <= k <= len(d):
            at[k - 1] = True
    seam, inside = d[at], d[~at]
    p = lambda v: float(np.percentile(v, 99)) if v.size else float("nan")  # noqa: E731
    return SeamStats(p(seam), p(inside), int(seam.size), int(inside.size))


@dataclass(frozen=True)
class Distance:
    rms: float             # RMS over frames of the per-frame difference norm (coef units)
    rms_exp: float         # the same over the 63 expression numbers
    rms_pose: float        # the same over scale, t, pitch, yaw, roll (min-max units)
    n_frames: int


def distance(a: np.ndarray, b: np.ndarray) -> Distance:
    """Distance between two takes of the same audio (frames aligned from 0; the shorter length)."""
    n = min(len(a), len(b))
    d = np.asarray(a, np.float64)[:n, :USED] - np.asarray(b, np.float64)[:n, :USED]
    rms = lambda x: float(np.sqrt(np.mean(np.sum(x * x, axis=1)))) if n else float("nan")  # noqa: E731
    return Distance(rms(d), rms(d[:, :63]), rms(d[:, 63:USED]), n)
