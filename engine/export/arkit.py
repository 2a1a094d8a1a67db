"""Expression ``exp`` (N, 21, 3) -> ARKit shape-key weights: the engine's copy of the add-on's readout.

DELIBERATE COPY of the projection in ``joyvasa_blender/core/contract/semantic.py``. Why a copy and not
an import: the engine must never import the add-on (it runs in its own venv, ships as its own package, and the add-on must be free to
change its UI code). Why not only a shared data file: the readout is data (the tuned
directions, full scales and ARKit targets, in ``semantic_basis.json``) *plus* an algorithm
(reference choice, NNLS, clipping, the channel -> key max rule). So:

* the data is shared byte for byte: ``engine/contract/semantic_basis.json`` (loaded by
  engine/motion/basis.py, which the motion edits use too) is a copy of the
  add-on's ``data/semantic_basis.json`` (tests/contract/test_arkit_readout_copy.py compares
  the bytes), so re-tuning the basis cannot silently diverge;
* the algorithm is re-implemented here in ~80 lines, and the same test runs both
  implementations on random and generated motion and requires equal weights (1e-9).

Readout (semantic_basis.md §7): ``d_t = exp_t - exp_ref``; ``c_t = argmin_{c>=0} ||Bn c - d_t||``
with unit columns ``Bn``; slider units ``w = c / ||B_k||``; weight ``clip(w / full_scale, 0, 1)``;
a key fed by several channels takes the largest value. With gaze selected, the mouth, lid and
brow channels come from the projection without the gaze columns and the gaze channels from the
one with every column (gaze never changes a blink). Defaults are the add-on's defaults:
reference ``auto``, groups mouth/eyes/brows, the channels keyed by default.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np

from engine.contract.semantic import (DATA_FILE, REFERENCE_MODES, Basis, Channel,  # noqa: F401
                                      load_basis)

DEFAULT_GROUPS = ("mouth", "eyes", "brows")
#: what the ARKit exports read: the default groups and gaze (eyeLookIn/Out/Up/Down), projected
#: apart from the lids (channel_weights), so the blinks equal the add-on's keys without gaze
ARKIT_GROUPS = DEFAULT_GROUPS + ("gaze",)


def nnls(A: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Lawson-Hanson active-set NNLS, argmin ||A x - b|| with x >= 0 (Blender has no scipy,
    so the add-on wrote its own; this is the same algorithm so results agree to rounding)."""
    m, n = A.shape
    x = np.zeros(n)
    passive = np.zeros(n, dtype=bool)
    tol = 10 * np.finfo(float).eps * np.abs(A).sum(axis=0).max() * max(m, n)
    limit = 30 * n
    w = A.T @ (b - A @ x)
    it = 0
    while (~passive).any() and np.max(np.where(passive, -np.inf, w)) > tol:
        passive[int(np.argmax(np.where(passive, -np.inf, w)))] = True
        while True:
            it += 1
            if it > limit:
                return x
            z = np.zeros(n)
            z[passive] = np.linalg.lstsq(A[:, passive], b, rcond=None)[0]
            if np.all(z[passive] > tol):
                x = z
                break
            neg = passive & (z <= tol)
            x = x + np.min(x[neg] / (x[neg] - z[neg])) * (z - x)
            passive &= x > tol
            x[~passive] = 0.0
        w = A.T @ (b - A @ x)
    return x


def reference(exp: np.ndarray, mode: str, basis: Basis) -> np.ndarray:
    """The clip's neutral expression (21, 3)."""
    if mode == "median":
        return np.median(exp, axis=0)
    if mode == "first":
        return exp[0].copy()
    if mode == "lip_array":
        return basis.lip_array.copy()
    if mode == "auto":
        ref = np.median(exp, axis=0)
        ref[list(basis.lip_rows)] = basis.lip_array[list(basis.lip_rows)]
        return ref
    raise ValueError(f"unknown reference mode {mode!r}; expected one of {REFERENCE_MODES}")


def channel_weights(exp: np.ndarray, *, reference_mode: str = "auto",
                    groups: Iterable[str] = DEFAULT_GROUPS) -> dict[str, np.ndarray]:
    """Channel name -> (N,) weight in [0, 1] for every channel of the selected groups."""
    basis = load_basis()
    wanted = set(groups)
    chans = [c for c in basis.channels if c.group in wanted]
    exp = np.asarray(exp, np.float64).reshape(-1, 21, 3)
    d = (exp - reference(exp, reference_mode, basis)[None]).reshape(len(exp), 63)
    units = _slider_units(chans, d)
    face = [c for c in chans if c.group != "gaze"]
    if face and len(face) < len(chans):          # gaze too: the lids come from the projection without it
        units.update(_slider_units(face, d))
    return {c.name: np.clip(units[c.name] / c.full_scale, 0.0, 1.0) for c in chans}


def _slider_units(chans: list[Channel], d: np.ndarray) -> dict[str, np.ndarray]:
    """NNLS of each offset row (N, 63) on the channels' unit columns, in slider units."""
    B = np.stack([c.vector for c in chans], axis=1)                   # (63, K)
    norms = np.linalg.norm(B, axis=0)
    coef = np.stack([nnls(B / norms, row) for row in d]) if len(d) else np.zeros((0, len(chans)))
    return {c.name: coef[:, i] / norms[i] for i, c in enumerate(chans)}


def arkit_weights(exp: np.ndarray, *, reference_mode: str = "auto",
                  groups: Iterable[str] = ARKIT_GROUPS, include_optional: bool = False) -> dict[str, np.ndarray]:
    """ARKit shape-key name -> (N,) weight: the add-on's ARKit preset with Gaze on applied to the
    readout (channels keyed by default and the gaze channels' eyeLook* keys; ``include_optional``
    adds the others that have targets)."""
    basis = load_basis()
    values = channel_weights(exp, reference_mode=reference_mode, groups=groups)
    out: dict[str, np.ndarray] = {}
    for c in basis.channels:
        if c.name not in values or not c.targets or c.name.startswith("_") or \
                not (c.keyed or c.group == "gaze" or include_optional):
            continue
        for key in c.targets:
            out[key] = np.maximum(out[key], values[c.name]) if key in out else values[c.name]
    return out
