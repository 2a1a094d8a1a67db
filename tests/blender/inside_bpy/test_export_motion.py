"""Exports in Blender: a BVH written by ``engine export`` and imported with Blender's own BVH
importer turns the head exactly as the add-on keys it (within 0.1 degree)."""
from __future__ import annotations

import math
import subprocess
from pathlib import Path

import addon_utils
import bpy
import numpy as np

from conftest import ENGINE_PY, REPO, TESTS

GOLDEN = TESTS / "contract" / "motion_v1.npz"


def world_rotation(obj, bone_name: str) -> np.ndarray:
    """The bone's current world rotation relative to its rest (3x3)."""
    pb = obj.pose.bones[bone_name]
    posed = (obj.matrix_world @ pb.matrix).to_3x3().normalized()
    rest = (obj.matrix_world @ pb.bone.matrix_local).to_3x3().normalized()
    return np.array(posed @ rest.inverted())


def angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    c = (np.trace(a @ b.T) - 1) / 2
    return math.degrees(math.acos(max(-1.0, min(1.0, c))))


def engine_export(motion: Path, fmt: str, out: Path, *extra: str) -> None:
    cp = subprocess.run([ENGINE_PY, "-m", "engine", "export", "--motion", str(motion), "--format", fmt,
                         "--out", str(out), *extra], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert cp.returncode == 0, cp.stderr[-3000:]


def test_bvh_import_matches_keyed_head(scene, tmp_path):
    st = scene.joyvasa
    st.pose_reference = "ABSOLUTE"
    st.axis_mode = "AUTO"
    assert bpy.ops.joyvasa.apply_motion(filepath=str(GOLDEN), start_frame=1) == {"FINISHED"}
    rig = bpy.data.objects["Rig"]
    n = scene.frame_end

    out = tmp_path / "take.bvh"
    engine_export(GOLDEN, "bvh", out, "--fps", str(scene.render.fps))
    addon_utils.enable("io_anim_bvh", default_set=True)
    before = set(bpy.data.objects)
    assert bpy.ops.import_anim.bvh(filepath=str(out), frame_start=1, use_fps_scale=False) == {"FINISHED"}
    (imported,) = [o for o in bpy.data.objects if o not in before and o.type == 'ARMATURE']
    assert set(imported.pose.bones.keys()) == {"Root", "Head"}

    worst = 0.0
    moved = 0.0
    for f in range(1, n + 1):
        scene.frame_set(f)
        keyed = world_rotation(rig, "head")
        got = world_rotation(imported, "Head")
        worst = max(worst, angle_deg(keyed, got))
        moved = max(moved, angle_deg(keyed, np.eye(3)))
    assert moved > 5.0            # the golden take turns the head: the comparison is not vacuous
    assert worst < 0.1, f"BVH head differs from the keyed head by {worst:.4f} deg"
