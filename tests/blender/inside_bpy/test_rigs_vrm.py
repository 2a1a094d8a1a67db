"""VRM avatars through the VRM Add-on for Blender (bpy-vrm-format, installed in the newest bpy
venvs by tools/setup_bpy_envs.sh): a VRM 1.0 and a VRM 0.x avatar built with the add-on, exported
as .vrm and imported again as a user would; a take keys the add-on's expression preview values
(VRM 1.0 presets / VRM 0.x blend-shape groups) and turns the VRM humanoid's head and neck.

Runs in its own process from tests/blender/test_rigs_bpy.py (JOYVASA_VRM_TESTS=1): the add-on is
enabled for the whole session, and bpy versions without it do not collect this file."""
from __future__ import annotations

import sys

import bpy
import numpy as np
import pytest

from conftest import REPO, addon

sys.path.insert(0, str(REPO / "tools"))
import rig_characters_bpy as rc  # noqa: E402

N, FPS = rc.N, rc.FPS


@pytest.fixture(scope="module")
def take(installed, tmp_path_factory):
    path = rc.write_semantic_motion(tmp_path_factory.mktemp("take") / "take.npz", addon("core.contract.semantic"),
                                    addon("core.motion_core"))
    return path, rc.livelink_columns(path, addon("core.motion_core"))


@pytest.fixture(scope="module")
def vrm_files(installed, tmp_path_factory):
    folder = tmp_path_factory.mktemp("vrm")
    out = {}
    for spec in ("1.0", "0.0"):
        bpy.ops.wm.read_factory_settings(use_empty=True)
        out[spec] = rc.vrm_avatar(bpy, folder / f"avatar_{spec}.vrm", spec)
    return out


def _import(path):
    rig, face = rc.import_vrm(bpy, path)
    import addon_utils

    from conftest import MODULE
    addon_utils.enable(MODULE, default_set=True)
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = FPS, 1.0
    st = scene.joyvasa
    st.rig, st.mesh, st.channels_target = rig, face, "NONE"
    return st, rig, face


def _preview(rig, expr):
    path = addon("rig_presets").vrm_expression_paths(rig)[expr]
    return rc.fcurve(addon("compat"), rig.data, path)


@pytest.mark.parametrize("spec, found", [("1.0", "14 of 14"), ("0.0", "13 of 14")])
def test_vrm_addon_avatar_follows_the_take(vrm_files, take, spec, found):
    motion, ll = take
    st, rig, face = _import(vrm_files[spec])
    assert addon("rig_presets").describe(st)[0] == f"Auto: VRM add-on expressions: {found} controls found"
    summary = addon("apply_motion").apply_motion(bpy.context, motion, start_frame=1)
    assert summary["head_bone"] == "Head" and summary["neck"] == "Neck"          # the VRM humanoid's bones
    aa = _preview(rig, "aa")
    assert np.corrcoef(aa, ll["JawOpen"])[0, 1] >= 0.95 and aa[rc.JAW_MAX] > 0.6  # aa follows the jaw
    closed = rc.TRUTH["jawOpen"] == 0
    for expr in ("aa", "ih", "ou", "ee", "oh"):                                   # a closed mouth rests
        assert _preview(rig, expr)[closed].max() < 0.05, expr
    blink, left = _preview(rig, "blink"), _preview(rig, "blinkLeft")
    both = np.minimum(ll["EyeBlinkLeft"], ll["EyeBlinkRight"])
    assert np.corrcoef(blink, both)[0, 1] >= 0.8 and blink[rc.BOTH_BLINK] > 0.8
    assert np.corrcoef(blink + left, ll["EyeBlinkLeft"])[0, 1] >= 0.8 and left[rc.WINK] > 0.8
    assert _preview(rig, "happy")[rc.SMILE] > 0.6
    if spec == "1.0":
        assert _preview(rig, "surprised")[rc.BROW] > 0.3
    # the add-on's expression drives the shape key it binds
    bpy.context.scene.frame_set(1 + rc.JAW_MAX)
    bpy.context.view_layer.update()
    assert face.data.shape_keys.key_blocks["A"].value == pytest.approx(aa[rc.JAW_MAX], abs=0.02)
    # the eyes: the VRM humanoid's eye bones (look-at type bone, the add-on's default), not the look expressions
    paths = {fc.data_path for fc in addon("compat").iter_fcurves(rig)}
    assert paths == {f'pose.bones["{b}"].rotation_quaternion' for b in ("Head", "Neck", "Eye_L", "Eye_R")}
    assert not any(p.endswith(("look_up.preview", "look_left.preview")) or "groups[" in p and "look" in p
                   for p in {fc.data_path for fc in addon("compat").iter_fcurves(rig.data)})
    eyes = rc.eye_angles(bpy, rig, eye="Eye_L", head="Head")
    eyes = eyes - eyes[2]                                                        # frame 2: no gaze
    assert np.abs(eyes).max() <= 39.5                                            # never past the clamp, never flipped
    assert 20 < eyes[rc.GAZE_X, 0] <= 35.5 and eyes[rc.GAZE_UP, 1] > 10          # to image right; up
    assert np.corrcoef(eyes[:, 0], ll["EyeLookOutLeft"] - ll["EyeLookInLeft"])[0, 1] >= 0.8
    if spec == "1.0":   # an avatar that looks with expressions: the look expressions, no eye bones
        rig.data.vrm_addon_extension.vrm1.look_at.type = "expression"
        assert addon("rig_presets").describe(st)[0] == "Auto: VRM add-on expressions: 16 of 16 expressions found"
        assert bpy.ops.joyvasa.apply_motion(filepath=motion, start_frame=1) == {"FINISHED"}
        assert _preview(rig, "lookLeft")[rc.GAZE_X] > 0.3 and _preview(rig, "lookUp")[rc.GAZE_UP] > 0.2
        assert {fc.data_path for fc in addon("compat").iter_fcurves(rig)} == {
            'pose.bones["Head"].rotation_quaternion', 'pose.bones["Neck"].rotation_quaternion'}


def test_presets_replace_each_other_on_a_vrm_avatar(vrm_files, take):
    """The VRM add-on's expressions, then the ARKit preset picked by hand (nothing on this face):
    the expression take leaves the armature data and every preview is back at 0; then back."""
    motion, _ll = take
    st, rig, face = _import(vrm_files["1.0"])
    assert bpy.ops.joyvasa.apply_motion(filepath=motion, start_frame=1) == {"FINISHED"}
    assert rig.data.animation_data.action["joyvasa_preset"] == "VRM add-on expressions"
    st.rig_preset = "ARKit 52"
    summary = addon("apply_motion").apply_motion(bpy.context, motion, start_frame=1)
    assert rig.data.animation_data.action is None
    assert any(line.startswith(f"{rig.data.name}: removed VRM add-on expressions take") for line in summary["removed"])
    bpy.context.scene.frame_set(1 + rc.JAW_MAX)
    assert rig.data.vrm_addon_extension.vrm1.expressions.preset.aa.preview == 0.0
    st.rig_preset = ""
    assert bpy.ops.joyvasa.apply_motion(filepath=motion, start_frame=1) == {"FINISHED"}
    assert rig.data.animation_data.action["joyvasa_preset"] == "VRM add-on expressions"
    assert rig.animation_data.action["joyvasa_preset"] == "VRM add-on expressions"


def test_live_posing_drives_the_vrm_expressions(vrm_files, take, fake_python, speech_wav, monkeypatch):
    """Live (ops_live.py, the fake engine's live stream) shows the take on the add-on's expression
    previews, with the avatar's expression take detached while live; Stop puts both back."""
    import time

    from conftest import MODULE
    motion, _ll = take
    st, rig, face = _import(vrm_files["1.0"])
    assert bpy.ops.joyvasa.apply_motion(filepath=motion, start_frame=1) == {"FINISHED"}
    action = rig.data.animation_data.action.name
    monkeypatch.setenv("JOYVASA_ENGINE_PYTHON", fake_python)
    runtime = sys.modules[MODULE + ".runtime"]
    runtime.stop_worker()
    runtime.WORKER = runtime.LAST = runtime.CURRENT = None
    scene = bpy.context.scene
    scene.frame_set(1 + rc.JAW_MAX)
    preset = rig.data.vrm_addon_extension.vrm1.expressions.preset
    before = preset.aa.preview
    st.audio_source, st.audio_path = "FILE", str(speech_wav)
    scene.joyvasa_live.source, scene.joyvasa_live.record, scene.joyvasa_live.monitor = "AUDIO", False, False
    ops_live = addon("ops_live")
    try:
        assert bpy.ops.joyvasa.live_start() == {"FINISHED"}
        sess = runtime.LIVE
        assert rig.data.animation_data.action is None                    # the expression take, detached
        seen = []
        end = time.monotonic() + 30
        while not (sess.player.shown >= 10 and len(seen) >= 10 and len({round(v, 4) for v in seen[-10:]}) > 1):
            assert time.monotonic() < end, f"no moving expression while live: {seen[-10:]} {runtime.LIVE_LAST}"
            ops_live.tick()
            seen.append(preset.aa.preview + preset.oh.preview + preset.blink.preview + preset.happy.preview)
            time.sleep(ops_live.TICK_S)
        assert bpy.ops.joyvasa.live_stop() == {"FINISHED"}
        end = time.monotonic() + 20
        while runtime.LIVE is not None:
            assert time.monotonic() < end
            ops_live.tick()
            time.sleep(ops_live.TICK_S)
    finally:
        ops_live.cancel_live()
    assert rig.data.animation_data.action.name == action                 # put back at Stop
    scene.frame_set(1 + rc.JAW_MAX)
    assert preset.aa.preview == pytest.approx(before, abs=1e-6)
