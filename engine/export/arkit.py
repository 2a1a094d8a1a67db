"""Expression ``exp`` (N, 21, 3) -> ARKit shape-key weights: the add-on's readout, for the exports.

The readout is the contract's (engine/contract/semantic.py, the same file the add-on keys its
shape keys with: data *and* algorithm, copied whole by tools/sync_contract.py), so the Live Link
Face CSV carries exactly the values the add-on keys (tests/contract/test_arkit_export_keys.py).
Readout (semantic_basis.md §7): ``d_t = exp_t - exp_ref``; ``c_t = argmin_{c>=0} ||Bn c - d_t||``
with unit columns ``Bn``; weight ``clip(c / ||B_k|| / full_scale, 0, 1)``; a key fed by several
channels takes the largest value; with gaze selected the lids are projected without the gaze
columns (gaze never changes a blink). Defaults are the add-on's: reference ``auto``, groups
mouth/eyes/brows, the channels keyed by default; the ARKit exports add gaze (eyeLook*).
"""
from __future__ import annotations

from typing import Iterable

import numpy as np

from engine.contract.semantic import (DATA_FILE, REFERENCE_MODES, Basis, Channel,  # noqa: F401
                                      load_basis, project, reference)

DEFAULT_GROUPS = ("mouth", "eyes", "brows")
#: what the ARKit exports read: the default groups and gaze (eyeLookIn/Out/Up/Down), projected
#: apart from the lids (semantic.project), so the blinks equal the add-on's keys without gaze
ARKIT_GROUPS = DEFAULT_GROUPS + ("gaze",)


def channel_weights(exp: np.ndarray, *, reference_mode: str = "auto",
                    groups: Iterable[str] = DEFAULT_GROUPS) -> dict[str, np.ndarray]:
    """Channel name -> (N,) weight in [0, 1] for every channel of the selected groups."""
    return project(exp, reference_mode=reference_mode, groups=groups).as_dict()


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
