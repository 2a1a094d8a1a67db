"""What a take keys, computed before anything is keyed (bpy-free): the motion at the scene's frame
rate, its semantic projection, the head rotation and the preset's plan of every target.

Why apart from apply_motion.py: planning is numbers only (tested without Blender); the shell then
only creates the actions and writes the keys the plan holds.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import motion_core as mc
from . import retarget
from .contract import semantic


@dataclass
class TakePlan:
    sampled: mc.Sampled                  # the motion at the scene's fps, one row per scene frame
    projection: semantic.Projection      # the semantic channels of every frame
    head: np.ndarray                     # (N, 3, 3) camera-frame head rotation relative to the neutral
    plan: retarget.Plan                  # the preset's targets (shape keys, bones, properties, ...)


def plan_take(motion: mc.Motion, fps: float, preset: retarget.Preset, *, reference_mode: str,
              include_gaze: bool, pose_reference: str, mirrored_source: bool,
              geometry: retarget.RigGeometry | None = None) -> TakePlan:
    """The take of ``motion`` for ``preset`` at ``fps``: what apply_motion keys, and nothing else."""
    s = mc.resample(motion, fps)
    groups = ["mouth", "eyes", "brows"] + (["gaze"] if include_gaze or preset.uses_gaze() else [])
    proj = semantic.project(s.exp, reference_mode=reference_mode, groups=groups)
    # the engine already applied the controls; FIRST measures against the raw frame 0 when the
    # file was edited (as the renderer does), so constant head offsets stay visible
    ref = (mc.rotation_from_pyr(*([a] for a in motion.reference_pose()))[0] if motion.raw is not None else None)
    head = mc.relative_rotation(s.quat, pose_reference, reference=ref)   # (n, 3, 3) camera
    channels = semantic.readout(proj, mirrored_source=mirrored_source)
    if preset.uses_head_channels():
        channels.update(retarget.head_channels(head))
    return TakePlan(s, proj, head, retarget.evaluate(preset, channels, geometry))
