"""Numerical parity with upstream: compare engine outputs with a reference folder.

A reference folder (layout of ``shared/fixtures/upstream_tiny_seed0``) holds official-format
checkpoints plus ``reference.npz``, arrays the upstream code computed. Each *group* module
below recomputes the arrays it knows from the checkpoints and the recorded inputs; this
module decides tolerances and prints one line per reference array:

    NAME max_abs_err=... tol=... ok|FAIL      compared
    NAME input                                a recorded input (random data fed to a network)
    NAME skipped (reason)                     the engine cannot compute it (yet): never "ok"

Group modules expose ``PREFIXES`` (name prefixes they own) and
``compute(ctx: ParityContext, wanted: set[str]) -> dict[str, np.ndarray]``; they may skip
names they cannot produce and may compute extra intermediate arrays in ``ctx.cache`` for
later groups (e.g. the animation group reuses the stage-one networks). :mod:`engine.parity.run`
runs them all (``python -m engine parity``); this package holds what the groups share.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

#: recorded inputs: random data that the reference fed to a network; nothing to recompute
INPUT_NAMES = {
    "WG_kp_source", "WG_kp_driving", "S_stitching_in", "S_lip_in", "S_eye_in",
    "DN_motion_feat", "DN_audio_feat", "DN_prev_motion_feat", "DN_prev_audio_feat", "DN_step",
}


@dataclass(frozen=True)
class Tolerance:
    rtol: float = 1e-4
    atol: float = 1e-5
    frame_fraction: float | None = None  # uint8 frames: share of pixels that must be within 1
    exact: bool = False

    def describe(self) -> str:
        if self.exact:
            return "exact"
        if self.frame_fraction is not None:
            return f"|d|<=1 on >={self.frame_fraction:.1%}"
        return f"rtol={self.rtol:g},atol={self.atol:g}"


def tolerance_for(name: str, ref: np.ndarray) -> Tolerance:
    """Tolerances of shared/fixtures/README.md ("Suggested tolerances for engine tests")."""
    if ref.dtype == np.uint8 and ref.ndim >= 3:
        return Tolerance(frame_fraction=0.999)
    if np.issubdtype(ref.dtype, np.integer) or ref.dtype == np.bool_:
        return Tolerance(exact=True)
    if name.startswith(("MG_window_motion", "MG_motion_coef")):
        return Tolerance(rtol=0.0, atol=1e-3)
    if name.startswith(("MG_unsmoothed", "MG_final")):
        return Tolerance(rtol=1e-4, atol=1e-3)
    if name.endswith("_kp_driving"):
        return Tolerance(rtol=0.0, atol=1e-4)
    if name.endswith("_frame_mean"):
        # mean RGB of uint8 frames: +-1 flips on <0.1% of pixels move the mean by <0.01
        return Tolerance(rtol=0.0, atol=0.05)
    return Tolerance()


@dataclass
class ParityContext:
    ref_dir: Path
    ref: np.lib.npyio.NpzFile
    cache: dict[str, Any] = field(default_factory=dict)

    def array(self, name: str) -> np.ndarray:
        return np.asarray(self.ref[name])


@dataclass
class ParityLine:
    name: str
    status: str  # ok | FAIL | input | skipped
    max_abs_err: float | None = None
    tol: str = ""
    note: str = ""

    def render(self) -> str:
        if self.status in ("ok", "FAIL"):
            extra = f" ({self.note})" if self.note else ""
            return f"{self.name} max_abs_err={self.max_abs_err:.3e} tol={self.tol} {self.status}{extra}"
        if self.status == "skipped":
            return f"{self.name} skipped ({self.note})" if self.note else f"{self.name} skipped"
        return f"{self.name} {self.status}"


def compare(name: str, ours: np.ndarray, ref: np.ndarray, tol: Tolerance | None = None) -> ParityLine:
    """One line for one array (``tol``: a group's own tolerance; default :func:`tolerance_for`)."""
    tol = tol or tolerance_for(name, ref)
    ours = np.asarray(ours)
    if ours.shape != ref.shape:
        if ours.size == ref.size:
            ours = ours.reshape(ref.shape)
        else:
            return ParityLine(name, "FAIL", float("inf"), tol.describe(),
                              f"shape {ours.shape} != reference {ref.shape}")
    if tol.frame_fraction is not None:
        diff = np.abs(ours.astype(np.int16) - ref.astype(np.int16))
        share = float(np.mean(diff <= 1))
        ok = share >= tol.frame_fraction
        return ParityLine(name, "ok" if ok else "FAIL", float(diff.max()), tol.describe(),
                          f"{share:.4%} within 1")
    a = ours.astype(np.float64)
    b = ref.astype(np.float64)
    if not np.all(np.isfinite(a)):
        return ParityLine(name, "FAIL", float("inf"), tol.describe(), "non-finite values")
    err = float(np.max(np.abs(a - b))) if a.size else 0.0
    if tol.exact:
        ok = bool(np.array_equal(a, b))
    else:
        ok = bool(np.all(np.abs(a - b) <= tol.atol + tol.rtol * np.abs(b)))
    return ParityLine(name, "ok" if ok else "FAIL", err, tol.describe())
