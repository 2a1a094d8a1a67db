"""The scene's control properties -> a controls file for the engine (bpy shell of core/controls.py).

Why sample here: a control keyed on the timeline must shape the rig keys and the rendered video
alike, so before Generate, Apply, Render and Re-apply the add-on evaluates every control's
F-curve at every frame from the start frame on and hands the engine the result; the engine
edits the motion once and every consumer reads that.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from . import compat
from .core import controls as cc

if TYPE_CHECKING:
    import bpy

MAX_FRAMES = 200_000


def control_frames(scene: bpy.types.Scene, start: int) -> int:
    """How many control frames to sample: from ``start`` to the later of the scene end and the
    last key of any control (values hold after the last frame)."""
    end = int(scene.frame_end)
    for c in cc.CONTROLS:
        fc = compat.find_fcurve(scene, f"joyvasa.{c.prop}")
        if fc is not None and len(fc.keyframe_points):
            end = max(end, int(max(kp.co[0] for kp in fc.keyframe_points)) + 1)
    return max(1, min(end - start + 1, MAX_FRAMES))


def scene_controls(scene: bpy.types.Scene, start: int, n_frames: int | None = None) -> dict:
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


def write_scene_controls(scene: bpy.types.Scene, path: str | Path, start: int,
                         n_frames: int | None = None) -> tuple[Path, dict]:
    d = scene_controls(scene, start, n_frames)
    return cc.write_controls(path, d), d


def show_controls(scene: bpy.types.Scene, recorded: dict, start: int, motion_fps: float) -> list[str]:
    """Set ``scene.joyvasa``'s controls to a motion file's recorded controls (tracks become
    F-curves from ``start``), so the panel shows what an edited take's keys hold and Re-apply
    or Render starts from it. Returns warnings for what the panel cannot show."""
    import numpy as np

    values, hidden = cc.panel_values(recorded)
    st = scene.joyvasa
    scene_fps = scene.render.fps / scene.render.fps_base
    track_fps = float(recorded.get("fps") or motion_fps)
    for prop, value in values.items():
        fc = compat.find_fcurve(scene, f"joyvasa.{prop}")
        if fc is not None:                    # a neutral key (the scene was neutral): replaced
            _remove_fcurve(scene, fc)
        c = cc.BY_PROP[prop]
        if not isinstance(value, list):
            setattr(st, prop, bool(value) if c.kind == "bool" else int(value) if c.kind == "int" else float(value))
            continue
        frames = start + np.arange(len(value)) * scene_fps / track_fps
        for f, v in zip(frames, value):
            setattr(st, prop, float(v))
            scene.keyframe_insert(data_path=f"joyvasa.{prop}", frame=float(f))
    return [f"the motion file's controls include {', '.join(hidden)}, which the panel cannot show: "
            "Re-apply Controls would drop them"] if hidden else []


def _remove_fcurve(scene: bpy.types.Scene, fc: bpy.types.FCurve) -> None:
    """Remove one F-curve from the scene's action (legacy or slotted)."""
    ad = scene.animation_data
    if not compat.SLOTTED:
        ad.action.fcurves.remove(fc)
        return
    for layer in ad.action.layers:
        for strip in layer.strips:
            bag = strip.channelbag(ad.action_slot)
            if bag is not None and fc in list(bag.fcurves):
                bag.fcurves.remove(fc)
                return
