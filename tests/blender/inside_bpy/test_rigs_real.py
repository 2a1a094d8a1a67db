"""Rig presets with a real-engine take (tiny synthetic weights): Generate Motion keys a Rigify rig
generated from the bundled human metarig, and the same take is applied to a VRoid-named and a
VRM-1.0-named mesh; each keyed curve equals its preset's rule on the take's readout. Run from
tests/blender/test_rigs_bpy.py (JOYVASA_TEST_WEIGHTS set)."""
from __future__ import annotations

import os
from pathlib import Path

import bpy
import numpy as np
import pytest

from conftest import ENGINE_PY, MODULE, addon, write_wav
from test_rigs import (FPS, VRM1, VROID, _fresh, face_mesh, fcurve_values, posed, readout,  # noqa: F401
                       world_head_rotation)

WEIGHTS = os.environ.get("JOYVASA_TEST_WEIGHTS", "")
pytestmark = pytest.mark.skipif(bool(os.environ.get("JOYVASA_SKIP_REAL_ENGINE")) or not WEIGHTS,
                                reason="real-engine tests need JOYVASA_TEST_WEIGHTS (tiny synthetic weights)")


@pytest.fixture()
def real_env(monkeypatch):
    monkeypatch.setenv("JOYVASA_ENGINE_PYTHON", ENGINE_PY)
    monkeypatch.setenv("JOYVASA_WEIGHTS", WEIGHTS)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def _generate(scene, tmp_path) -> str:
    bpy.context.preferences.addons[MODULE].preferences.device = "cpu"
    st = scene.joyvasa
    st.audio_path = str(write_wav(tmp_path / "speech.wav", seconds=2.0))
    st.output_dir, st.start_frame, st.seed, st.sampler, st.steps = str(tmp_path / "out"), 1, 4, "ddim", 4
    res = bpy.ops.joyvasa.generate_motion()
    last = addon("runtime").LAST
    assert res == {"FINISHED"}, last.report_text() if last else ""
    assert Path(st.motion_path).is_file()
    return st.motion_path


def test_real_take_onto_rigify_vroid_and_vrm(rigify_blend, real_env, tmp_path):
    bpy.ops.wm.open_mainfile(filepath=str(rigify_blend))
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = int(FPS), 1.0
    st = scene.joyvasa
    rig = bpy.data.objects["RIG-legacy"]
    st.rig, st.mesh, st.channels_target = rig, None, "NONE"
    motion = _generate(scene, tmp_path)
    assert rig.animation_data.action["joyvasa_preset"] == "Rigify face"
    r = readout(motion, gaze=True)
    n = len(r["jawOpen"])
    q = np.stack([fcurve_values(rig, 'pose.bones["jaw_master"].rotation_quaternion', i) for i in range(4)], 1)
    assert len(q) == n
    np.testing.assert_allclose(2 * np.arctan2(np.linalg.norm(q[:, 1:], axis=1), q[:, 0]), 0.35 * r["jawOpen"], atol=1e-5)
    np.testing.assert_allclose(fcurve_values(rig, 'pose.bones["lid.T.R.002"].location', 1),
                               -0.014 * r["eyeBlinkRight"] + 0.003 * r["eyeWideRight"], atol=1e-6)
    # the eye target aims (core/retarget.py): D * tan(angle), D measured on the rig, angle within 35 degrees
    geo = addon("rig_presets").rig_geometry(rig, addon("core.retarget").find_preset("Rigify face"), "head")
    D, M, lim = geo.aim_distance["eyes"], np.asarray(geo.to_channels["eyes"]), np.radians(35.0)
    aim = np.stack([D * np.tan(np.clip(1.0 * r["gazeX"], -lim, lim)), D * np.tan(np.clip(0.9 * r["gazeY"], -lim, lim))])
    assert 0.25 < D < 0.4
    np.testing.assert_allclose(fcurve_values(rig, 'pose.bones["eyes"].location', 0), M[0, 0] * aim[0] + M[0, 1] * aim[1],
                               atol=1e-5)
    W = world_head_rotation(motion)
    head0 = posed(rig, "head", 1)[:3, :3]
    worst = max(float(np.abs(posed(rig, "head", 1 + f)[:3, :3] @ head0.T - W[f]).max()) for f in range(0, n, 4))
    assert worst <= 1e-4 and np.abs(W - np.eye(3)).max() > 1e-3     # the take turns the head, the rig follows

    # the same real take on the avatar meshes (Auto finds each preset)
    r = readout(motion, gaze=False)
    for names, rules in ((VROID, {"Fcl_MTH_A": r["viseme_aa"], "Fcl_EYE_Close_L": r["eyeBlinkLeft"],
                                  "Fcl_ALL_Joy": np.clip(0.8 * r["mouthSmile"], 0, 1)}),
                         (VRM1, {"aa": r["viseme_aa"], "blink": r["eyesClosed"], "happy": r["mouthSmile"]})):
        _fresh(None)
        face = face_mesh(names)
        assert bpy.ops.joyvasa.apply_motion(filepath=motion, start_frame=1) == {"FINISHED"}
        key = face.data.shape_keys
        expect_preset = "VRoid (VRM 0.x)" if names is VROID else "VRM 1.0 expressions"
        assert key.animation_data.action["joyvasa_preset"] == expect_preset
        if names is VRM1:   # the gaze group is projected for this preset: its own readout
            rg = readout(motion, gaze=True)
            rules = {"aa": rg["viseme_aa"], "blink": rg["eyesClosed"], "happy": rg["mouthSmile"],
                     "lookLeft": rg["lookImageRight"]}
        for shape, vals in rules.items():
            np.testing.assert_allclose(fcurve_values(key, f'key_blocks["{shape}"].value'), vals, atol=1e-6, err_msg=shape)
