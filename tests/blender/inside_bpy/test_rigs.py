"""Rig presets on real rigs inside bpy: a Rigify rig generated here from Blender's bundled human
metarig, a VRoid-named mesh, a VRM-1.0-named mesh, and a user preset file with eye bones; each
keyed from a synthetic motion made of known semantic directions (jaw opening, blink, wink,
smile, gaze, brows) and a turning head. Checks the keys against the preset's rule AND against the
motion's construction, and evaluates the rig (depsgraph) for what the artist sees."""
from __future__ import annotations

import json
import sys

import addon_utils
import bpy
import numpy as np
import pytest

from conftest import MODULE, REPO, addon, build_scene

N, FPS = 48, 24.0
K = np.arange(N)
TRUTH = {   # full-scale amounts per frame of each semantic direction
    "jawOpen": np.where((K >= 8) & (K < 40), 0.75 * np.sin(np.pi * (K - 8) / 32) ** 2, 0.0),
    "eyeBlinkLeft": np.where(((K >= 20) & (K < 24)) | ((K >= 30) & (K < 33)), 0.9, 0.0),   # 30-32: a wink
    "eyeBlinkRight": np.where((K >= 20) & (K < 24), 0.9, 0.0),
    "mouthSmile": np.where((K >= 36) & (K < 45), 0.8, 0.0),
    "lookImageRight": np.where((K >= 10) & (K < 16), 0.5, 0.0),
    "lookUp": np.where((K >= 25) & (K < 29), 0.4, 0.0),
    "browUp": np.where((K >= 2) & (K < 7), 0.7, 0.0),
}
BOTH_BLINK, WINK, SMILE, GAZE_X, JAW_MAX = 21, 31, 40, 12, 24


def write_motion(path) -> str:
    """A motion file (the engine's own writer) whose exp is the lip neutral plus TRUTH's directions."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from engine.motion.npz import MotionData, save_motion

    sem = addon("core.contract.semantic")
    basis = sem.load_basis()
    exp = np.repeat(basis.lip_array[None], N, 0).copy()
    for name, amount in TRUTH.items():
        c = next(c for c in basis.channels if c.name == name)
        exp += amount[:, None, None] * (c.vector * c.full_scale).reshape(21, 3)
    pitch, yaw, roll = 8 * np.sin(2 * np.pi * K / 48), 20 * np.sin(2 * np.pi * K / 40 + 0.5), 6 * np.cos(2 * np.pi * K / 30)
    mc = addon("core.motion_core")
    R = np.transpose(mc.rotation_from_pyr(pitch, yaw, roll), (0, 2, 1))
    m = MotionData(fps=FPS, exp=exp, scale=np.full(N, 1.5), t=np.zeros((N, 3)), pitch=pitch, yaw=yaw, roll=roll, R=R,
                   coef=np.zeros((N, 70)), meta={"seed": np.int64(3), "sampler": "ddim", "steps": np.int32(5),
                                                   "audio_duration_s": np.float32(N / FPS)})
    return str(save_motion(path, m))


@pytest.fixture(scope="module")
def motion(tmp_path_factory) -> str:
    return write_motion(tmp_path_factory.mktemp("rigs") / "semantic.npz")


def fcurve_values(id_data, path, index=0) -> np.ndarray:
    fc = addon("compat").find_fcurve(id_data, path, index)
    assert fc is not None, f"no F-curve {path}[{index}] on {id_data.name}"
    co = np.zeros(2 * len(fc.keyframe_points), dtype=np.float32)
    fc.keyframe_points.foreach_get("co", co)
    return co.reshape(-1, 2)[:, 1].astype(np.float64)


def readout(motion_path: str, gaze: bool) -> dict[str, np.ndarray]:
    """What the add-on reads from the motion (same resampling and projection as apply_motion)."""
    mc, sem = addon("core.motion_core"), addon("core.contract.semantic")
    s = mc.resample(mc.load_motion(motion_path), FPS)
    groups = ["mouth", "eyes", "brows"] + (["gaze"] if gaze else [])
    return sem.readout(sem.project(s.exp, reference_mode="auto", groups=groups))


def world_head_rotation(motion_path: str) -> np.ndarray:
    """The motion's head rotation relative to frame 0, in Blender world axes (N, 3, 3)."""
    mc = addon("core.motion_core")
    s = mc.resample(mc.load_motion(motion_path), FPS)
    return mc.CAM_TO_BLENDER @ mc.relative_rotation(s.quat, "FIRST") @ mc.CAM_TO_BLENDER.T


def posed(rig, bone: str, frame: int) -> np.ndarray:
    bpy.context.scene.frame_set(frame)
    return np.array(rig.matrix_world @ rig.pose.bones[bone].matrix)


def _fresh(installed):
    bpy.ops.wm.read_factory_settings(use_empty=True)
    addon_utils.enable(MODULE, default_set=True)
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = int(FPS), 1.0
    return scene


# -- Rigify -------------------------------------------------------------------------------------------
@pytest.fixture()
def rigify(rigify_blend):
    bpy.ops.wm.open_mainfile(filepath=str(rigify_blend))
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = int(FPS), 1.0
    st = scene.joyvasa
    st.rig, st.mesh, st.channels_target = bpy.data.objects["RIG-legacy"], None, "NONE"
    return scene, st.rig


def test_auto_detects_rigify_and_shows_coverage(rigify):
    scene, rig = rigify
    text, missing, err = addon("rig_presets").describe(scene.joyvasa)
    assert text == "Auto: Rigify face: 16 of 16 controls found" and missing == [] and err == ""


def test_rigify_face_follows_the_semantic_motion(rigify, motion):
    scene, rig = rigify
    assert bpy.ops.joyvasa.apply_motion(filepath=motion, start_frame=1) == {"FINISHED"}
    act = rig.animation_data.action
    assert act["joyvasa_preset"] == "Rigify face"
    r = readout(motion, gaze=True)
    # jaw: jaw_master turns about its local X by 0.35 rad x jawOpen, frame by frame, and opens the mouth
    q = np.stack([fcurve_values(rig, 'pose.bones["jaw_master"].rotation_quaternion', i) for i in range(4)], 1)
    angle = 2 * np.arctan2(np.linalg.norm(q[:, 1:], axis=1), q[:, 0])   # precise near 0 in float32
    np.testing.assert_allclose(angle, 0.35 * r["jawOpen"], atol=1e-5)
    assert np.all(q[r["jawOpen"] > 1e-3, 1] > 0) and np.allclose(q[:, 2:], 0, atol=1e-7)
    assert np.corrcoef(r["jawOpen"], TRUTH["jawOpen"])[0, 1] > 0.99 and angle.max() > 0.2
    def chin(f):          # the jaw's tip in the head bone's frame (the head turns too); Y = up
        head = posed(rig, "head", f)
        return (np.linalg.inv(head) @ np.append(np.array(rig.matrix_world @ rig.pose.bones["jaw_master"].tail), 1))[:3]
    assert chin(1 + JAW_MAX)[1] < chin(1)[1] - 0.005                   # the chin drops
    # blink: both upper lids down on the blink, only the left one on the wink
    lidL = fcurve_values(rig, 'pose.bones["lid.T.L.002"].location', 1)
    lidR = fcurve_values(rig, 'pose.bones["lid.T.R.002"].location', 1)
    np.testing.assert_allclose(lidL, -0.014 * r["eyeBlinkLeft"] + 0.003 * r["eyeWideLeft"], atol=1e-6)
    assert lidL[BOTH_BLINK] < -0.01 and lidR[BOTH_BLINK] < -0.01 and lidL[WINK] < -0.01 and lidR[WINK] > -0.002
    lower = fcurve_values(rig, 'pose.bones["lid.B.L.002"].location', 1)
    assert lower[BOTH_BLINK] > 0.003
    # ... and Rigify's deform bones follow it (in the head's frame: the head turns too): the eyelid closes
    def in_head(bone, f):
        return (np.linalg.inv(posed(rig, "head", f)) @ posed(rig, bone, f))[:3, 3]
    assert in_head("DEF-lid.T.L.002", 1 + BOTH_BLINK)[1] < in_head("DEF-lid.T.L.002", 1)[1] - 0.008   # head's Y = up
    assert in_head("DEF-brow.T.L.002", 1 + 4)[1] > in_head("DEF-brow.T.L.002", 1 + SMILE)[1] + 0.003
    # smile: the lip corners go up and out
    up = fcurve_values(rig, 'pose.bones["lips.L"].location', 1)
    out_l, out_r = (fcurve_values(rig, f'pose.bones["lips.{s}"].location', 0) for s in "LR")
    assert up[SMILE] > 0.004 and out_l[SMILE] > 0 > out_r[SMILE]
    np.testing.assert_allclose(up, 0.006 * r["mouthSmile"] - 0.005 * r["mouthFrown"], atol=1e-6)
    # brows up early
    brow = fcurve_values(rig, 'pose.bones["brow.T.L.002"].location', 1)
    assert brow[4] > 0.004 and abs(brow[SMILE]) < 0.002
    # gaze: the eyes target goes to image right (+X), and the eye bones turn after it
    ex = fcurve_values(rig, 'pose.bones["eyes"].location', 0)
    bones = rig.data.bones            # the target's distance from the eyes, measured on the rig (~0.31)
    D = np.linalg.norm(np.array(bones["eyes"].head_local) - (np.array(bones["ORG-eye.L"].head_local)
                                                             + np.array(bones["ORG-eye.R"].head_local)) / 2)
    aim = addon("core.retarget").AIM_MAX_ANGLE
    np.testing.assert_allclose(ex, D * np.tan(np.clip(r["gazeX"], -aim, aim)), atol=1e-5)
    assert 0.3 < D < 0.32 and ex[GAZE_X] > 0.1 and abs(ex[2]) < 0.02
    def eye_dir(f):       # where the eye (Rigify's ORG-eye.L, aimed at the target) looks, in the head's frame
        rel = np.linalg.inv(posed(rig, "head", f)) @ posed(rig, "ORG-eye.L", f)
        return rel[:3, 1] / np.linalg.norm(rel[:3, 1])
    rest, look = eye_dir(1), eye_dir(1 + GAZE_X)
    assert np.degrees(np.arccos(np.clip(rest @ look, -1, 1))) > 5
    assert look[0] > rest[0] + 0.05                                    # towards image right (+X)


def test_rigify_neck_and_head_compose_to_the_motion(rigify, motion):
    scene, rig = rigify
    assert bpy.ops.joyvasa.apply_motion(filepath=motion, start_frame=1) == {"FINISHED"}
    W = world_head_rotation(motion)
    head0, neck0 = posed(rig, "head", 1)[:3, :3], posed(rig, "neck", 1)[:3, :3]
    worst, neck_ratio = 0.0, []
    for f in range(0, N, 5):
        head, neck = posed(rig, "head", 1 + f)[:3, :3], posed(rig, "neck", 1 + f)[:3, :3]
        worst = max(worst, float(np.abs(head @ head0.T - W[f]).max()))
        ang = lambda R: np.arccos(np.clip((np.trace(R) - 1) / 2, -1, 1))   # noqa: E731
        if ang(W[f]) > 0.05:
            neck_ratio.append(ang(neck @ neck0.T) / ang(W[f]))
    assert worst <= 1e-4, worst                                   # the head turns exactly as the motion
    np.testing.assert_allclose(neck_ratio, 0.4, atol=0.02)         # the neck takes its share


# -- VRoid / VRM meshes --------------------------------------------------------------------------------
def face_mesh(names):
    me = bpy.data.meshes.new("AvatarFace")
    me.from_pydata([(0, 0, 0), (1, 0, 0), (0, 1, 0)], [], [(0, 1, 2)])
    face = bpy.data.objects.new("Face", me)
    bpy.context.scene.collection.objects.link(face)
    face.shape_key_add(name="Basis")
    for n in names:
        face.shape_key_add(name=n)
    st = bpy.context.scene.joyvasa
    st.rig, st.mesh, st.channels_target = None, face, "NONE"
    return face


VROID = ["Fcl_ALL_Neutral", "Fcl_ALL_Joy", "Fcl_BRW_Angry", "Fcl_BRW_Surprised", "Fcl_EYE_Close", "Fcl_EYE_Close_L",
         "Fcl_EYE_Close_R", "Fcl_EYE_Surprised", "Fcl_MTH_A", "Fcl_MTH_I", "Fcl_MTH_U", "Fcl_MTH_E", "Fcl_MTH_O",
         "Fcl_MTH_Sorrow"]
VRM1 = ["aa", "ih", "ou", "ee", "oh", "blink", "blinkLeft", "blinkRight", "happy", "angry", "sad", "relaxed",
        "surprised", "lookUp", "lookDown", "lookLeft", "lookRight", "neutral"]


def test_vroid_mesh(installed, motion):
    scene = _fresh(installed)
    face = face_mesh(VROID)
    text, missing, _err = addon("rig_presets").describe(scene.joyvasa)
    assert text == "Auto: VRoid (VRM 0.x): 12 of 12 shape keys found"
    assert bpy.ops.joyvasa.apply_motion(filepath=motion, start_frame=1) == {"FINISHED"}
    key = face.data.shape_keys
    r = readout(motion, gaze=False)
    a = fcurve_values(key, 'key_blocks["Fcl_MTH_A"].value')
    np.testing.assert_allclose(a, r["viseme_aa"], atol=1e-6)
    assert np.corrcoef(a, TRUTH["jawOpen"])[0, 1] > 0.98 and a[JAW_MAX] > 0.6      # jaw opening reads as "A"
    assert fcurve_values(key, 'key_blocks["Fcl_MTH_U"].value').max() < 0.05
    cl, cr = (fcurve_values(key, f'key_blocks["Fcl_EYE_Close_{s}"].value') for s in "LR")
    assert cl[BOTH_BLINK] > 0.8 and cr[BOTH_BLINK] > 0.8 and cl[WINK] > 0.8 and cr[WINK] < 0.1 and cl[5] < 0.05
    joy = fcurve_values(key, 'key_blocks["Fcl_ALL_Joy"].value')
    np.testing.assert_allclose(joy, np.clip(0.8 * r["mouthSmile"], 0, 1), atol=1e-6)
    assert joy[SMILE] > 0.5 and joy[5] < 0.05
    assert addon("compat").find_fcurve(key, 'key_blocks["Fcl_EYE_Close"].value') is None     # not mapped


def test_vrm1_mesh(installed, motion):
    scene = _fresh(installed)
    face = face_mesh(VRM1)
    text, missing, _err = addon("rig_presets").describe(scene.joyvasa)
    assert text == "Auto: VRM 1.0 expressions: 17 of 17 shape keys found"
    assert bpy.ops.joyvasa.apply_motion(filepath=motion, start_frame=1) == {"FINISHED"}
    key = face.data.shape_keys
    v = {n: fcurve_values(key, f'key_blocks["{n}"].value') for n in ("aa", "blink", "blinkLeft", "blinkRight",
                                                                     "happy", "lookLeft", "lookRight", "lookUp")}
    assert v["aa"][JAW_MAX] > 0.6 and np.corrcoef(v["aa"], TRUTH["jawOpen"])[0, 1] > 0.98
    # both eyes: "blink"; the wink: "blinkLeft" only; never both at once on one eye
    assert v["blink"][BOTH_BLINK] > 0.8 and v["blinkLeft"][BOTH_BLINK] < 0.05 and v["blinkRight"][BOTH_BLINK] < 0.05
    assert v["blinkLeft"][WINK] > 0.8 and v["blink"][WINK] < 0.05
    assert v["happy"][SMILE] > 0.7 and v["happy"][5] < 0.05
    # gaze to image right = the avatar's left for an unmirrored portrait
    assert v["lookLeft"][GAZE_X] > 0.4 and v["lookRight"][GAZE_X] < 0.05 and v["lookUp"][26] > 0.3
    assert addon("compat").find_fcurve(key, 'key_blocks["relaxed"].value') is None


# -- a user preset file: eye bones, neck split on a plain bone chain, a custom property -----------------
USER_PRESET = {
    "schema": "joyvasa.retarget", "version": 1, "name": "Studio Rig",
    "head": {"bone": "head", "neck": "neck", "neck_share": 0.3},
    "channels": {
        "gazeX": [{"bone": f"eye.{s}", "rotation": "Z", "full": 1.0, "clamp": [-1, 1]} for s in "LR"],
        "gazeY": [{"bone": f"eye.{s}", "rotation": "X", "full": 0.9, "clamp": [-1, 1]} for s in "LR"],
        "jawOpen": [{"property": "jaw", "full": 2.0}, {"shape_key": "jawOpen"}],
        "viseme_ou": [{"shape_key": "mouthPucker", "gain": 1.5}],
        "headYaw": [{"property": "head_yaw", "bone": "root", "full": 57.29577951308232}],   # degrees
    }}


@pytest.fixture()
def studio(scene):
    rig = bpy.data.objects["Rig"]
    bpy.context.view_layer.objects.active = rig
    bpy.ops.object.mode_set(mode='EDIT')
    for s, x in (("L", 0.03), ("R", -0.03)):
        b = rig.data.edit_bones.new(f"eye.{s}")
        b.head, b.tail, b.parent = (x, -0.08, 1.65), (x, -0.1, 1.65), rig.data.edit_bones["head"]
    bpy.ops.object.mode_set(mode='OBJECT')
    folder = addon("rig_presets").user_dir(create=True)
    path = folder / "studio_rig.json"
    path.write_text(json.dumps(USER_PRESET))
    yield scene, rig, path
    path.unlink(missing_ok=True)


def test_user_preset_file_eye_bones_and_neck(studio, motion):
    scene, rig, path = studio
    st = scene.joyvasa
    assert "Studio Rig" in [i[0] for i in addon("rig_presets").enum_items()]
    st.rig_preset, st.include_gaze = "studio rig", False       # by name, case-insensitive; gaze projected anyway
    assert bpy.ops.joyvasa.apply_motion(filepath=motion, start_frame=1) == {"FINISHED"}
    r = readout(motion, gaze=True)
    q = np.stack([fcurve_values(rig, 'pose.bones["eye.L"].rotation_quaternion', i) for i in range(4)], 1)
    mc = addon("core.motion_core")
    expect = mc.matrix_from_euler(np.stack([0.9 * r["gazeY"], np.zeros(N), np.clip(r["gazeX"], -1, 1)], 1), "XYZ")
    np.testing.assert_allclose(mc.matrix_from_quat(q), expect, atol=1e-5)
    assert abs(mc.euler_from_matrix(mc.matrix_from_quat(q[GAZE_X:GAZE_X + 1]))[0, 2]) > 0.3   # the eye turns
    yaw_deg = fcurve_values(rig, 'pose.bones["root"]["head_yaw"]')
    s = mc.resample(mc.load_motion(motion), FPS)
    np.testing.assert_allclose(yaw_deg, mc.pyr_from_rotation(mc.relative_rotation(s.quat, "FIRST"))[1], atol=1e-3)
    assert np.abs(yaw_deg).max() > 10
    jaw = fcurve_values(rig, '["jaw"]')
    np.testing.assert_allclose(jaw, 2.0 * r["jawOpen"], atol=1e-5)
    # a plain chain: the head inherits the neck, still the head turns exactly as the motion
    W = world_head_rotation(motion)
    head0 = posed(rig, "head", 1)[:3, :3]
    worst = max(float(np.abs(posed(rig, "head", 1 + f)[:3, :3] @ head0.T - W[f]).max()) for f in range(0, N, 6))
    assert worst <= 1e-4
    # the ARKit mesh of the scene gets the preset's shape keys only (no ARKit name map here)
    key = bpy.data.objects["Face"].data.shape_keys
    np.testing.assert_allclose(fcurve_values(key, 'key_blocks["jawOpen"].value'), r["jawOpen"], atol=1e-6)
    assert addon("compat").find_fcurve(key, 'key_blocks["eyeBlinkLeft"].value') is None


def test_property_targets_go_on_the_face_mesh_without_a_rig(installed, motion):
    scene = _fresh(installed)
    face = face_mesh(["Basis2"])
    path = addon("rig_presets").user_dir(create=True) / "props_only.json"
    path.write_text(json.dumps({"schema": "joyvasa.retarget", "version": 1, "name": "Props Only",
                                "channels": {"viseme_aa": [{"property": "mouth_aa", "full": 10.0, "rest": 1.0}]}}))
    try:
        scene.joyvasa.rig_preset = str(path)
        assert bpy.ops.joyvasa.apply_motion(filepath=motion, start_frame=1) == {"FINISHED"}
        r = readout(motion, gaze=False)
        np.testing.assert_allclose(fcurve_values(face, '["mouth_aa"]'), 1.0 + 10.0 * r["viseme_aa"], atol=1e-5)
        assert face.animation_data.action["joyvasa_preset"] == "Props Only"
    finally:
        path.unlink(missing_ok=True)


def test_bad_user_preset_stops_before_anything_is_keyed(studio, motion):
    from conftest import scene_fingerprint

    scene, rig, path = studio
    bad = dict(USER_PRESET, channels={"jawOpen": [{"bone": "jaw", "rotation": "X"}]})
    path.write_text(json.dumps(bad))
    scene.joyvasa.rig_preset = str(path)
    before = scene_fingerprint()
    with pytest.raises(RuntimeError, match=r"studio_rig.json: channels.jawOpen\[0\].full: a bone target needs"):
        bpy.ops.joyvasa.apply_motion(filepath=motion, start_frame=1)
    assert scene_fingerprint() == before
    scene.joyvasa.rig_preset = "No Such Rig"
    with pytest.raises(RuntimeError, match="rig preset 'No Such Rig' not found"):
        bpy.ops.joyvasa.apply_motion(filepath=motion, start_frame=1)
    assert scene_fingerprint() == before


def test_reapply_rig_rekeys_the_take_with_another_preset(scene, motion):
    st = scene.joyvasa
    assert bpy.ops.joyvasa.apply_motion(filepath=motion, start_frame=1) == {"FINISHED"}
    key = bpy.data.objects["Face"].data.shape_keys
    first = key.animation_data.action
    assert first["joyvasa_preset"] == "ARKit 52"
    jaw_first = fcurve_values(key, 'key_blocks["jawOpen"].value')
    st.name_map = "jawOpen=jawOpen*0.5"
    assert bpy.ops.joyvasa.reapply_rig() == {"FINISHED"}
    second = key.animation_data.action
    assert second != first and first.name in bpy.data.actions and second.get("joyvasa_take")
    np.testing.assert_allclose(fcurve_values(key, 'key_blocks["jawOpen"].value'), np.clip(0.5 * jaw_first, 0, 1), atol=1e-6)
    assert addon("compat").find_fcurve(key, 'key_blocks["eyeBlinkLeft"].value') is None


def test_preset_ui_draws_and_the_mapping_table_saves_a_user_preset(scene, motion):
    """Rig Preset menu + coverage in the Targets box; the mapping sub-panel: load, edit a gain,
    key with it, save it as a user preset file that then loads by name."""
    from test_panels_draw import draw

    st = scene.joyvasa
    log = draw(bpy.types.JOYVASA_PT_view3d, bpy.context)
    assert ("operator", "joyvasa.pick_rig_preset") in log and ("operator", "joyvasa.reapply_rig") in log
    assert ("label", "Auto: ARKit 52: 14 of 52 shape keys found") in log
    assert any(x[0] == "label" and x[1].startswith("Missing: eyeLookDownLeft") for x in log)
    for panel in (bpy.types.JOYVASA_PT_rig_mapping, bpy.types.JOYVASA_PT_rig_mapping_sequencer):
        assert ("operator", "joyvasa.rig_mapping_load") in draw(panel, bpy.context)
    assert bpy.ops.joyvasa.rig_mapping_load() == {"FINISHED"}
    assert st.use_rig_mapping and st.rig_mapping_from == "ARKit 52" and len(st.rig_mapping) == 14
    log = draw(bpy.types.JOYVASA_PT_rig_mapping, bpy.context)
    assert ("template_list", "rig_mapping") in log and ("operator", "joyvasa.save_rig_preset") in log
    jaw_row = next(r for r in st.rig_mapping if r.channel == "jawOpen")
    jaw_row.gain = 0.5
    assert bpy.ops.joyvasa.apply_motion(filepath=motion, start_frame=1) == {"FINISHED"}
    key = bpy.data.objects["Face"].data.shape_keys
    assert key.animation_data.action["joyvasa_preset"] == "ARKit 52 (edited)"
    r = readout(motion, gaze=False)
    np.testing.assert_allclose(fcurve_values(key, 'key_blocks["jawOpen"].value'), np.clip(0.5 * r["jawOpen"], 0, 1), atol=1e-6)
    try:
        assert bpy.ops.joyvasa.save_rig_preset('EXEC_DEFAULT', name="Half Jaw") == {"FINISHED"}
        path = addon("rig_presets").user_dir() / "Half_Jaw.json"
        assert path.parent.parts[-5:] == ("extensions", ".user", "user_default", "joyvasa_blender", "rig_presets")
        assert path.is_file() and st.rig_preset == "Half Jaw" and not st.use_rig_mapping
        saved = addon("core.retarget").load_preset_file(path)
        assert saved.channels["jawOpen"][0].gain == 0.5
        assert bpy.ops.joyvasa.pick_rig_preset(preset="VRM 1.0 expressions") == {"FINISHED"}
        assert st.rig_preset == "VRM 1.0 expressions"
        assert bpy.ops.joyvasa.pick_rig_preset(preset="__AUTO__") == {"FINISHED"} and st.rig_preset == ""
    finally:
        (addon("rig_presets").user_dir() / "Half_Jaw.json").unlink(missing_ok=True)


def test_generate_with_a_bad_preset_fails_before_the_engine_runs(scene, speech_wav, tmp_path, monkeypatch):
    log = tmp_path / "argv.jsonl"
    monkeypatch.setenv("JOYVASA_FAKE_ARGV_LOG", str(log))
    st = scene.joyvasa
    st.audio_path, st.output_dir, st.rig_preset = str(speech_wav), str(tmp_path / "out"), "No Such Rig"
    with pytest.raises(RuntimeError, match="rig preset 'No Such Rig' not found"):
        bpy.ops.joyvasa.generate_motion()
    assert not log.exists() or not log.read_text().strip()


def test_batch_jobs_take_a_preset_or_auto(scene, fake_python, motion, tmp_path):
    """tools/batch.py: "preset" by name or path; without it Auto finds the VRoid mesh; a bad
    preset fails the checks before anything runs."""
    from test_batch import run_batch

    avatar = face_mesh(VROID)
    blend = tmp_path / "avatar.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    custom = tmp_path / "mine.json"
    custom.write_text(json.dumps({"schema": "joyvasa.retarget", "version": 1, "name": "Mine",
                                  "channels": {"eyeBlinkLeft": [{"shape_key": "Fcl_EYE_Close", "gain": 0.5}]}}))
    jobs = tmp_path / "jobs.json"
    base = {"motion": motion, "mesh": avatar.name, "channels": "NONE", "start_frame": 1}
    jobs.write_text(json.dumps([dict(base, name="auto"), dict(base, name="file", preset="mine.json", start_frame=100)]))
    cp = run_batch(blend, jobs, {"JOYVASA_ENGINE_PYTHON": fake_python})
    assert cp.returncode == 0, (cp.stdout + cp.stderr)[-4000:]
    bpy.ops.wm.open_mainfile(filepath=str(blend))
    takes = {a["joyvasa_start_frame"]: a for a in bpy.data.actions if a.get("joyvasa_take")}
    assert takes[1]["joyvasa_preset"] == "VRoid (VRM 0.x)" and takes[100]["joyvasa_preset"] == "Mine"
    key = bpy.data.objects[base["mesh"]].data.shape_keys
    close = fcurve_values(key, 'key_blocks["Fcl_EYE_Close"].value')          # the last take: Mine
    assert close[WINK] == pytest.approx(0.5 * readout(motion, False)["eyeBlinkLeft"][WINK], abs=1e-5) and close[WINK] > 0.4
    jobs.write_text(json.dumps([dict(base, name="bad", preset="Nope")]))
    cp = run_batch(blend, jobs, {"JOYVASA_ENGINE_PYTHON": fake_python})
    assert cp.returncode == 1
    assert "rig preset 'Nope' not found" in (tmp_path / "jobs_logs" / "bad.log").read_text()


def _eye_directions(rig, frames) -> np.ndarray:
    out = []
    for f in frames:
        m = posed(rig, "eye.L", 1 + f)
        out.append(m[:3, 1] / np.linalg.norm(m[:3, 1]))          # the bone's Y axis: where it looks
    return np.array(out)


def test_eye_bones_obey_follow_head_like_the_video(studio, motion):
    """Gaze reaches eye bones through the motion the engine edited, so the art-direction control
    Follow Head acts on them as on the video: 1 = the eyes turn with the head, 0 = they
    counter-rotate and keep looking where they looked (here: the camera)."""
    scene, rig, path = studio
    st = scene.joyvasa
    st.rig_preset, st.output_dir = "Studio Rig", str(path.parent / "out")
    calm = [f for f in range(N) if not (TRUTH["lookImageRight"][f] or TRUTH["lookUp"][f])]   # frames without own gaze
    angles = {}
    for follow in (1.0, 0.0):
        st.gaze_follow_head = follow
        assert bpy.ops.joyvasa.apply_motion(filepath=motion, start_frame=1) == {"FINISHED"}
        d = _eye_directions(rig, calm)
        angles[follow] = np.degrees(np.arccos(np.clip(d @ d[0], -1, 1)))
    assert angles[1.0].max() > 12                  # the head turns by up to ~20 degrees, the eyes with it
    assert angles[0.0].max() < 0.25 * angles[1.0].max() and angles[0.0].max() < 4, angles[0.0].max()
