"""The scene's control properties -> a controls file for the engine (bpy shell of core/controls.py).

Why sample here: a control keyed on the timeline must shape the rig keys and the rendered video
alike, so before Generate, Apply, Render and Re-apply the add-on evaluates every control's
F-curve at every frame from the start frame on and hands the engine the result; the engine
edits the motion once and every consumer reads that.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from . import compat
from .core import controls as cc

MAX_FRAMES = 200_000


def control_frames(scene: Any, start: int) -> int:
    """How many control frames to sample: from ``start`` to the later of the scene end and the
    last key of any control (values hold after the last frame)."""
    end = int(scene.frame_end)
    for c in cc.CONTROLS:
        fc = compat.find_fcurve(scene, f"joyvasa.{c.prop}")
        if fc is not None and len(fc.keyframe_points):
            end = max(end, int(max(kp.co[0] for kp in fc.keyframe_points)) + 1)
    return max(1, min(end - start + 1, MAX_FRAMES))


def scene_controls(scene: Any, start: int, n_frames: int | None = None) -> dict:
    """The controls dict of ``scene.joyvasa`` with every animated control sampled per frame."""
    st = scene.joyvasa
    n = control_frames(scene, start) if n_frames is None else int(n_frames)
    fps = scene.render.fps / scene.render.fps_base

    def samples(prop: str):  # type: ignore[no-untyped-def]
        fc = compat.find_fcurve(scene, f"joyvasa.{prop}")
        if fc is None:
            return None
        return [fc.evaluate(float(start + k)) for k in range(n)]

    return cc.controls_dict(lambda prop: getattr(st, prop), samples, fps)


def write_scene_controls(scene: Any, path: str | Path, start: int, n_frames: int | None = None) -> tuple[Path, dict]:
    d = scene_controls(scene, start, n_frames)
    return cc.write_controls(path, d), d
