"""Exports in Blender: the Export Motion operator (File › Export, panel) runs the shipped engine's
``export``; its BVH, imported with Blender's own BVH importer, turns the head exactly as the
add-on keyed it (within 0.1 degree)."""
from __future__ import annotations

import math

import addon_utils
import bpy
import numpy as np

from conftest import ENGINE_PY, TESTS

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


def test_bvh_import_matches_keyed_head(scene, tmp_path, monkeypatch):
    use_real_engine(monkeypatch)
    st = scene.joyvasa
    st.pose_reference = "ABSOLUTE"
    st.axis_mode = "AUTO"
    assert bpy.ops.joyvasa.apply_motion(filepath=str(GOLDEN), start_frame=1) == {"FINISHED"}
    rig = bpy.data.objects["Rig"]
    n = scene.frame_end

    out = tmp_path / "take.bvh"
    bpy.context.view_layer.objects.active = rig
    assert bpy.ops.joyvasa.export_motion(filepath=str(out), format="bvh") == {"FINISHED"}
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


def use_real_engine(monkeypatch):
    """The add-on runs the engine it ships (engine_src in the installed zip) with the main venv."""
    monkeypatch.setenv("JOYVASA_ENGINE_PYTHON", ENGINE_PY)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def test_export_operator_writes_each_format(scene, tmp_path, monkeypatch):
    import csv
    import io
    import pickle

    use_real_engine(monkeypatch)
    st = scene.joyvasa
    st.pose_reference = "ABSOLUTE"
    assert bpy.ops.joyvasa.apply_motion(filepath=str(GOLDEN), start_frame=1) == {"FINISHED"}
    rig = bpy.data.objects["Rig"]
    bpy.context.view_layer.objects.active = rig                  # the take on the active object
    n = scene.frame_end
    for fmt, name in (("bvh", "take.bvh"), ("livelinkface-csv", "take.csv"), ("lp-pkl", "take.pkl")):
        out = tmp_path / name
        assert bpy.ops.joyvasa.export_motion(filepath=str(out), format=fmt) == {"FINISHED"}, fmt
        assert out.is_file()
        if fmt == "livelinkface-csv":
            rows = list(csv.reader(io.StringIO(out.read_text())))
            assert rows[0][:3] == ["Timecode", "BlendShapeCount", "EyeBlinkLeft"] and len(rows) - 1 == n
        elif fmt == "lp-pkl":
            d = pickle.loads(out.read_bytes())      # written by our own engine in this test
            assert d["n_frames"] == n and d["output_fps"] == scene.render.fps
        else:
            assert f"Frames: {n}" in out.read_text()
    # the wrong suffix is corrected to the format's
    assert bpy.ops.joyvasa.export_motion(filepath=str(tmp_path / "other.txt"), format="bvh") == {"FINISHED"}
    assert (tmp_path / "other.bvh").is_file()


def test_export_menu_entry_and_no_take(scene, tmp_path):
    import sys

    from conftest import MODULE

    ops_export = sys.modules[MODULE + ".ops_export"]
    assert ops_export.menu_export in bpy.types.TOPBAR_MT_file_export._dyn_ui_initialize()
    try:
        bpy.ops.joyvasa.export_motion(filepath=str(tmp_path / "x.bvh"), format="bvh")
        raise AssertionError("exporting without a take must fail")
    except RuntimeError as exc:                     # background mode: the ERROR report raises
        assert "no JoyVASA take" in str(exc)
    assert not (tmp_path / "x.bvh").exists()
