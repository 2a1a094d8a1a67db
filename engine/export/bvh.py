"""BVH: the head pose as a two-joint skeleton that any DCC reads (Blender's BVH importer included).

Skeleton: ``Root`` (static; 6 channels so every importer accepts it) and its child ``Head``
(3 rotation channels), with an End Site above the head. Units are arbitrary "head units"
(joint offsets of 10); only rotation carries motion.

Axis convention (BVH's usual one, which Blender's importer maps with its defaults, forward -Z,
up Y): Y up, +Z towards the viewer, X = image right; the character faces +Z (the camera). From
LivePortrait's camera frame (x image right, y image down, z into the image) that is
``bvh = diag(1, -1, -1) @ cam``, so LivePortrait's ``Rz(roll) Ry(yaw) Rx(pitch)`` becomes
``Rz(-roll) Ry(-yaw) Rx(pitch)``: the channel order ``Zrotation Yrotation Xrotation`` (applied
X first) with values ``-roll, -yaw, pitch`` in degrees. Imported into Blender, the head bone's
world rotation equals the add-on's keyed head rotation (character facing -Y in front view).
Rows are frames at ``Frame Time`` = 1/fps, absolute pose (LivePortrait's angles, not relative).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from engine.motion.npz import MotionData

JOINT_LENGTH = 10.0


def channels(frames: MotionData) -> np.ndarray:
    """(N, 9) motion rows: root X/Y/Z position + Z/Y/X rotation (zeros), head Z/Y/X rotation."""
    n = frames.n_frames
    rows = np.zeros((n, 9))
    rows[:, 6] = -np.asarray(frames.roll, np.float64).reshape(n)
    rows[:, 7] = -np.asarray(frames.yaw, np.float64).reshape(n)
    rows[:, 8] = np.asarray(frames.pitch, np.float64).reshape(n)
    return rows


def write_bvh(path: Path, frames: MotionData) -> None:
    L = JOINT_LENGTH
    head = "\n".join([
        "HIERARCHY",
        "ROOT Root",
        "{",
        "\tOFFSET 0.000000 0.000000 0.000000",
        "\tCHANNELS 6 Xposition Yposition Zposition Zrotation Yrotation Xrotation",
        "\tJOINT Head",
        "\t{",
        f"\t\tOFFSET 0.000000 {L:.6f} 0.000000",
        "\t\tCHANNELS 3 Zrotation Yrotation Xrotation",
        "\t\tEnd Site",
        "\t\t{",
        f"\t\t\tOFFSET 0.000000 {L:.6f} 0.000000",
        "\t\t}",
        "\t}",
        "}",
        "MOTION",
        f"Frames: {frames.n_frames}",
        f"Frame Time: {1.0 / frames.fps:.8f}",
    ])
    body = "\n".join(" ".join(f"{v:.6f}" for v in row) for row in channels(frames))
    Path(path).write_text(head + "\n" + body + "\n", encoding="ascii")
