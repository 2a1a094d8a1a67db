"""The semantic basis: named expression directions (smile, aaa, blink, ...) in LivePortrait's 21x3
keypoint offsets, with their full scales and ARKit targets (semantic_basis.json beside this file).

Why in ``engine.motion``: the art-direction edits (engine/motion/edit.py: offsets, blinks, gaze) and
the ARKit readout of ``engine export`` (engine/export/arkit.py) both read it, and motion sits below
export. The JSON is a byte-for-byte copy of the add-on's ``data/semantic_basis.json``
(tests/contract/test_arkit_readout_copy.py).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

DATA_FILE = Path(__file__).resolve().parents[1] / "contract" / "semantic_basis.json"
_AXIS = {"x": 0, "y": 1, "z": 2}


@dataclass(frozen=True)
class Channel:
    name: str
    vector: np.ndarray          # (63,) exp offset per slider unit
    full_scale: float
    group: str
    targets: tuple[str, ...]    # ARKit shape-key names (camelCase)
    keyed: bool


@dataclass(frozen=True)
class Basis:
    channels: tuple[Channel, ...]
    lip_array: np.ndarray       # (21, 3)
    lip_rows: tuple[int, ...]


@lru_cache(maxsize=1)
def load_basis() -> Basis:
    data = json.loads(DATA_FILE.read_text())
    chans = []
    for c in data["channels"]:
        vec = np.zeros(63)
        for kp, axis, coef in c["terms"]:
            vec[int(kp) * 3 + _AXIS[axis]] += float(coef)
        chans.append(Channel(c["name"], vec, float(c["full_scale_slider_units"]), c["group"],
                             tuple(c.get("arkit_targets", [])), bool(c.get("keyed_by_default"))))
    return Basis(tuple(chans), np.asarray(data["lip_array"], np.float64).reshape(21, 3), tuple(data["lip_rows"]))
