"""Write the golden motion file tests/contract/motion_v1.npz (deterministic synthetic data).

Why: both halves must accept the same file. The engine writes it with its own
``engine.motion.npz.save_motion``; the add-on reads it with numpy only. The expression is built
from the semantic basis (jaw opening, one blink, a smile) so the add-on's shape-key readout has
known answers. Re-run only when the schema changes:

    .venv/bin/python tests/contract/make_motion_v1.py
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from engine.motion.npz import MotionData, save_motion  # noqa: E402

N, FPS = 50, 25.0


def vec(basis: dict, name: str) -> np.ndarray:
    out = np.zeros((21, 3))
    for kp, axis, coef in next(c for c in basis["channels"] if c["name"] == name)["terms"]:
        out[kp, "xyz".index(axis)] += coef
    return out


def rot(p: np.ndarray, y: np.ndarray, r: np.ndarray) -> np.ndarray:
    p, y, r = np.radians(p), np.radians(y), np.radians(r)
    c, s = np.cos, np.sin
    o, z = np.ones_like(p), np.zeros_like(p)
    rx = np.stack([np.stack([o, z, z], -1), np.stack([z, c(p), -s(p)], -1), np.stack([z, s(p), c(p)], -1)], -2)
    ry = np.stack([np.stack([c(y), z, s(y)], -1), np.stack([z, o, z], -1), np.stack([-s(y), z, c(y)], -1)], -2)
    rz = np.stack([np.stack([c(r), -s(r), z], -1), np.stack([s(r), c(r), z], -1), np.stack([z, z, o], -1)], -2)
    return np.transpose(rz @ ry @ rx, (0, 2, 1))  # row-vector convention, as LivePortrait


def build() -> MotionData:
    basis = json.loads((REPO / "joyvasa_blender" / "data" / "semantic_basis.json").read_text())
    k = np.arange(N)
    jaw = 40 + 30 * np.sin(2 * np.pi * k / 25)               # aaa units, 10..70
    blink = np.where((k >= 20) & (k < 24), 18.0, 0.0)        # both eyes closed on frames 20-23
    smile = np.clip(np.linspace(-0.2, 0.8, N), 0, None)      # smile units
    neutral = np.asarray(basis["lip_array"]).reshape(21, 3)
    exp = (neutral[None] + jaw[:, None, None] * vec(basis, "jawOpen")
           + blink[:, None, None] * (vec(basis, "eyeBlinkRight") + vec(basis, "eyeBlinkLeft"))
           + smile[:, None, None] * vec(basis, "mouthSmile"))
    pitch = 5 * np.sin(2 * np.pi * k / 50)
    yaw = 10 * np.sin(2 * np.pi * k / 40 + 0.5)
    roll = 3 * np.cos(2 * np.pi * k / 30)
    t = np.stack([0.01 * np.sin(k / 7), 0.005 * np.cos(k / 5), np.zeros(N)], axis=1)
    scale = 1.5 + 0.01 * np.sin(k / 9)
    coef = np.zeros((N, 70))
    return MotionData(fps=FPS, exp=exp, scale=scale, t=t, pitch=pitch, yaw=yaw, roll=roll,
                      R=rot(pitch, yaw, roll), coef=coef, smoothed=True,
                      meta={"sampler": "ddim", "steps": np.int32(10), "cfg_scale": np.float32(2.0),
                            "seed": np.int64(7), "engine_version": "golden", "audio_duration_s": np.float32(N / FPS)})


if __name__ == "__main__":
    out = save_motion(Path(__file__).resolve().parent / "motion_v1.npz", build())
    print(f"wrote {out}")
