"""Retarget presets (core/retarget.py) and the readout they map (semantic.readout, visemes):
format validation with one error naming the key, shipped presets, detection, evaluation rules,
the neck/head split, user preset files."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from joyvasa_blender.core import motion_core as mc
from joyvasa_blender.core import retarget
from joyvasa_blender.core.contract import semantic

ALL = ("mouth", "eyes", "brows", "gaze")


def _basis_dir(name: str) -> np.ndarray:
    """The basis direction of channel ``name`` per full-scale unit, as (21, 3)."""
    c = next(c for c in semantic.load_basis().channels if c.name == name)
    return (c.vector * c.full_scale).reshape(21, 3)


def _readout(amounts: dict[str, float], groups=("mouth", "eyes", "brows")) -> dict[str, float]:
    """Readout of one synthetic frame made of basis directions at ``amounts`` (full-scale units)."""
    neutral = np.random.default_rng(3).normal(0, 0.01, (21, 3))
    exp = neutral + sum(a * _basis_dir(n) for n, a in amounts.items())
    p = semantic.project(exp[None], groups=groups, ref=neutral)
    return {k: float(v[0]) for k, v in semantic.readout(p).items()}


# -- visemes ---------------------------------------------------------------------------------
@pytest.mark.parametrize("amounts, viseme", [
    ({"jawOpen": 0.7}, "viseme_aa"), ({"mouthStretch": 1.0, "jawOpen": 0.2}, "viseme_ee"),
    ({"mouthPucker": 1.0, "jawOpen": 0.2}, "viseme_ou"),
    ({"mouthPucker": 1.0, "jawOpen": 1.0}, "viseme_oh"), ({"mouthStretch": 1.0, "jawOpen": 1.0}, "viseme_ih"),
    ({"mouthPucker": 0.6, "jawOpen": 0.6}, "viseme_oh"), ({"jawOpen": 0.9, "mouthPucker": 0.1}, "viseme_aa"),
    ({}, "viseme_sil")])
def test_each_viseme_along_its_semantic_direction(amounts, viseme):
    r = _readout(amounts)
    vis = {v: r[v] for v in semantic.VISEMES}
    assert max(vis, key=vis.get) == viseme, vis
    assert sum(vis.values()) == pytest.approx(1.0, abs=1e-9)
    if viseme == "viseme_aa" and len(amounts) == 1:     # a pure opening: aa equals it, the rest is sil
        assert vis["viseme_aa"] == pytest.approx(0.7, abs=1e-6) and vis["viseme_sil"] == pytest.approx(0.3, abs=1e-6)
    if viseme == "viseme_sil":
        assert vis[viseme] == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("amounts", [{}, {"mouthPucker": 1.0}, {"mouthStretch": 1.0}, {"mouthSmile": 0.8},
                                     {"mouthPucker": 0.4, "mouthStretch": 0.3}, {"_jawPress": 0.5}])
def test_a_closed_mouth_reads_as_rest(amounts):
    """A closed mouth - even with rounded or wide lips, a smile, pressed lips - keys no viseme:
    the share left over goes to ``sil`` (which VRM/VRoid presets do not key)."""
    r = _readout(amounts)
    assert all(r[v] < 0.02 for v in semantic.VISEMES if v != "viseme_sil"), {v: r[v] for v in semantic.VISEMES}


def test_pure_opening_reads_aa_following_the_jaw():
    """A take of pure opening from neutral (expression gain 0 + a mouth-open track): aa follows the
    jaw exactly, every other viseme stays at 0."""
    for o in np.linspace(0, 1, 11):
        r = _readout({"jawOpen": float(o)})
        assert r["viseme_aa"] == pytest.approx(r["jawOpen"], abs=1e-9) and r["jawOpen"] == pytest.approx(o, abs=1e-6)
        assert all(r[v] < 1e-9 for v in ("viseme_ih", "viseme_ou", "viseme_ee", "viseme_oh"))


def test_viseme_formulas_partition_the_mouth_state():
    rng = np.random.default_rng(1)
    o, w, r = rng.uniform(0, 1, (3, 200))
    v = semantic.visemes(o, w, r)
    np.testing.assert_allclose(sum(v.values()), 1.0, atol=1e-12)
    np.testing.assert_allclose(v["viseme_ih"], o * (1 - r) * w)
    np.testing.assert_allclose(v["viseme_oh"], o * r)
    c = np.minimum(1, o / semantic.VISEME_GATE) * (1 - o)
    np.testing.assert_allclose(v["viseme_ou"], c * r)
    assert all(((a >= 0) & (a <= 1)).all() for a in v.values())
    closed = semantic.visemes(np.zeros(200), w, r)            # jaw closed: rest, whatever the lips do
    assert all(np.all(closed[k] == 0) for k in semantic.VISEMES if k != "viseme_sil")


def test_derived_blink_and_gaze_channels():
    r = _readout({"eyeBlinkLeft": 1.0, "eyeBlinkRight": 0.4}, groups=ALL)
    assert r["eyesClosed"] == pytest.approx(0.4, abs=1e-6)
    assert r["eyeBlinkLeftOnly"] == pytest.approx(0.6, abs=1e-6) and r["eyeBlinkRightOnly"] == pytest.approx(0, abs=1e-6)
    g = _readout({"lookImageRight": 0.5, "lookDown": 0.3}, groups=ALL)
    assert g["gazeX"] == pytest.approx(0.5, abs=1e-6) and g["gazeY"] == pytest.approx(-0.3, abs=1e-6)
    assert "gazeX" not in _readout({"jawOpen": 0.2})            # gaze not projected: no gaze channels


def test_mirrored_readout_swaps_sides_like_the_name_map():
    neutral = np.zeros((21, 3))
    exp = neutral + 0.8 * _basis_dir("eyeBlinkLeft")
    p = semantic.project(exp[None], groups=("eyes",), ref=neutral)
    r = semantic.readout(p, mirrored_source=True)
    assert r["eyeBlinkRight"][0] == pytest.approx(0.8, abs=1e-6) and r["eyeBlinkLeft"][0] == pytest.approx(0, abs=1e-6)
    m = semantic.parse_name_map("eyeBlinkLeft=L; eyeBlinkRight=R")
    assert semantic.shape_key_curves(p, m, mirrored_source=True)["R"][0] == r["eyeBlinkRight"][0]


# -- the ARKit preset is today's mapping ------------------------------------------------------
def _shipped(name: str) -> retarget.Preset:
    return retarget.find_preset(name)


def test_arkit_preset_file_is_the_default_name_map():
    p = _shipped("ARKit 52")
    table = {ch: [(t.name, t.gain) for t in ts] for ch, ts in p.channels.items()}
    assert table == semantic.parse_name_map(semantic.default_name_map())
    assert len(p.detect_shape_keys) == 52 and p.head == retarget.Head() and not p.uses_gaze()


def test_arkit_preset_evaluates_exactly_like_shape_key_curves():
    rng = np.random.default_rng(5)
    B = semantic.load_basis().matrix()
    exp = (rng.normal(0, 3, (60, B.shape[1])) @ B.T).reshape(60, 21, 3)
    text = semantic.default_name_map() + "; lookUp=eyeLookUpLeft*0.5; _smileNeg=mouthFrownLeft*1.7"
    for mirrored in (False, True):
        proj = semantic.project(exp, groups=ALL)
        old = semantic.shape_key_curves(proj, semantic.parse_name_map(text), mirrored_source=mirrored)
        preset = retarget.with_name_map(_shipped("ARKit 52"), text)
        new = retarget.evaluate(preset, semantic.readout(proj, mirrored_source=mirrored)).shape_keys
        assert sorted(new) == sorted(old)
        for k in old:
            assert np.array_equal(new[k], old[k]), k                 # bit for bit


def test_bad_name_map_is_a_preset_error():
    with pytest.raises(retarget.PresetError, match="ARKit 52: name map: .*'jawOpen' has no '='"):
        retarget.with_name_map(_shipped("ARKit 52"), "jawOpen")


# -- validation: one clear error naming the key ------------------------------------------------
GOOD = {"schema": "joyvasa.retarget", "version": 1, "name": "Test rig",
        "head": {"bone": "head", "neck": "neck", "neck_share": 0.3},
        "channels": {"jawOpen": [{"bone": "jaw", "rotation": "X", "full": 0.4},
                                 {"shape_key": "JawOpen", "gain": 2, "offset": -0.1, "clamp": [0, 0.9]}],
                     "browUp": [{"property": "brow", "bone": "face", "full": 2.0, "rest": 0.5}],
                     "browDown": [{"property": "brow", "bone": "face", "full": -1.0, "rest": 0.5}],
                     "gazeX": {"bone": "eye.L", "rotation": "Z", "full": 1.0, "clamp": [-1, 1]}}}


def _bad(path: str, value, delete: bool = False) -> dict:
    d = copy.deepcopy(GOOD)
    keys = path.split("/")
    obj = d
    for k in keys[:-1]:
        obj = obj[int(k)] if isinstance(obj, list) else obj[k]
    last = int(keys[-1]) if isinstance(obj, list) else keys[-1]
    if delete:
        del obj[last]
    else:
        obj[last] = value
    return d


def test_good_preset_parses_and_round_trips():
    p = retarget.parse_preset(GOOD, "test.json")
    assert p.head == retarget.Head("head", "neck", 0.3) and p.uses_gaze()
    t = p.channels["jawOpen"][1]
    assert (t.kind, t.name, t.gain, t.offset, t.lo, t.hi) == ("shape_key", "JawOpen", 2.0, -0.1, 0.0, 0.9)
    assert retarget.parse_preset(p.to_dict()) == p


@pytest.mark.parametrize("path, value, delete, needle", [
    ("schema", "joyvasa.rig", False, "schema: must be 'joyvasa.retarget'"),
    ("version", 2, False, "version: this add-on reads version 1, got 2"),
    ("colour", 1, False, "colour: unknown key"),
    ("name", "", False, "name: must be a non-empty name"),
    ("channels", [], False, "channels: must map at least one"),
    ("channels/jawOpne", [{"shape_key": "x"}], False, "channels.jawOpne: unknown readout channel"),
    ("channels/jawOpen/1/gain", "2", False, "channels.jawOpen[1].gain: must be a finite number"),
    ("channels/jawOpen/1/clamp", [1, 0], False, "channels.jawOpen[1].clamp: low must be below high"),
    ("channels/jawOpen/1/full", 1, False, "channels.jawOpen[1].full: a shape-key target takes only"),
    ("channels/jawOpen/1/colour", 1, False, "channels.jawOpen[1].colour: unknown key"),
    ("channels/jawOpen/0/rotation", "W", False, "channels.jawOpen[0].rotation: must be the local axis X, Y or Z"),
    ("channels/jawOpen/0/location", "X", False, "channels.jawOpen[0]: a bone target needs exactly one of rotation or location"),
    ("channels/jawOpen/0/full", None, True, "channels.jawOpen[0].full: a bone target needs its value at full scale"),
    ("channels/jawOpen/0/shape_key", "x", False, "channels.jawOpen[0]: needs exactly one of"),
    ("channels/browDown/0/rest", 0.0, False, "channels.browDown: property brow of bone face has rest 0.0, but channels.browUp"),
    ("head/neck_share", 1.5, False, "head.neck_share: must be in [0, 1]"),
    ("head/spine", "x", False, "head.spine: expected"),
    ("channels/gazeX/bone", "neck", False, "channels.gazeX: bone neck is keyed from the head rotation"),
])
def test_bad_preset_names_the_key(path, value, delete, needle):
    with pytest.raises(retarget.PresetError) as err:
        retarget.parse_preset(_bad(path, value, delete), "studio.json")
    assert str(err.value).startswith("rig preset studio.json: ") and needle in str(err.value), str(err.value)


def test_bad_file_errors(tmp_path):
    (tmp_path / "a.json").write_text("{not json")
    with pytest.raises(retarget.PresetError, match="a.json: not valid JSON"):
        retarget.load_preset_file(tmp_path / "a.json")
    with pytest.raises(retarget.PresetError, match="cannot be read"):
        retarget.load_preset_file(tmp_path / "missing.json")
    with pytest.raises(retarget.PresetError, match="'Nope' not found .*ARKit 52"):
        retarget.find_preset("Nope", tmp_path)


# -- evaluation rules ------------------------------------------------------------------------------
def test_evaluate_rules():
    p = retarget.parse_preset(GOOD)
    jaw = np.array([0.0, 0.5, 1.0])
    plan = retarget.evaluate(p, {"jawOpen": jaw, "browUp": np.array([0, 1, 0.5]), "browDown": np.array([1, 0, 0.5]),
                                 "gazeX": np.array([-2.0, 0.3, 0.0])})
    np.testing.assert_allclose(plan.shape_keys["JawOpen"], np.clip(2 * jaw - 0.1, 0, 0.9))
    np.testing.assert_allclose(plan.bones[("jaw", "rotation")][:, 0], 0.4 * jaw)
    assert plan.bone_axes[("jaw", "rotation")] == {0}
    # two channels onto one property: rest once, contributions summed
    np.testing.assert_allclose(plan.properties[("face", "brow")], 0.5 + 2 * np.array([0, 1, 0.5]) - np.array([1, 0, 0.5]))
    np.testing.assert_allclose(plan.bones[("eye.L", "rotation")][:, 2], [-1.0, 0.3, 0.0])   # clamp [-1, 1]
    assert ("eye.L", "rotation") in retarget.evaluate(p, {"gazeX": np.zeros(2)}).bones
    assert not retarget.evaluate(p, {}).bones                  # channels the readout lacks drive nothing


def test_shape_key_fed_by_two_channels_takes_the_largest():
    p = retarget.parse_preset({"schema": "joyvasa.retarget", "version": 1, "name": "x", "channels": {
        "eyeWideLeft": [{"shape_key": "Wide"}], "eyeWideRight": [{"shape_key": "Wide"}]}})
    plan = retarget.evaluate(p, {"eyeWideLeft": np.array([0.2, 0.9]), "eyeWideRight": np.array([0.5, 0.1])})
    np.testing.assert_array_equal(plan.shape_keys["Wide"], [0.5, 0.9])


# -- neck / head split ------------------------------------------------------------------------------
@pytest.mark.parametrize("share, inherit", [(0.4, 1.0), (0.4, 0.0), (0.25, 0.5), (0.0, 1.0)])
def test_neck_head_split_composes_to_the_motion(share, inherit):
    rng = np.random.default_rng(2)
    M = mc.rotation_from_pyr(rng.uniform(-30, 30, 50), rng.uniform(-40, 40, 50), rng.uniform(-20, 20, 50))
    neck, head = retarget.split_head_rotation(M, share, inherit)
    through_neck = retarget.split_head_rotation(M, share * inherit, 1.0)[0]   # what the head inherits
    np.testing.assert_allclose(through_neck @ head, M, atol=1e-9)
    ang = lambda R: np.degrees(np.arccos(np.clip((np.trace(R, axis1=1, axis2=2) - 1) / 2, -1, 1)))  # noqa: E731
    np.testing.assert_allclose(ang(neck), share * ang(M), atol=1e-6)


# -- detection and coverage -------------------------------------------------------------------------
RIGIFY_FACE = ["jaw_master", "lips.L", "lips.R", "lip.T", "lip.B", "lid.T.L.002", "lid.B.L.002", "lid.T.R.002",
               "lid.B.R.002", "brow.T.L.001", "brow.T.L.002", "brow.T.L.003", "brow.T.R.001", "brow.T.R.002",
               "brow.T.R.003", "eyes", "neck", "head", "ORG-face"]


@pytest.mark.parametrize("bones, keys, expect", [
    (RIGIFY_FACE, [], "Rigify face"),
    (["root", "neck", "head"], ["Basis", "jawOpen", "eyeBlinkLeft"], "ARKit 52"),
    (["root", "neck", "head"], [], "ARKit 52"),                      # nothing matches: today's behaviour
    ([], ["Basis", "Fcl_MTH_A", "Fcl_MTH_I", "Fcl_EYE_Close_L", "Fcl_ALL_Joy"], "VRoid (VRM 0.x)"),
    ([], ["Basis", "aa", "ih", "ou", "ee", "oh", "blink", "happy"], "VRM 1.0 expressions"),
])
def test_detection_proposes_the_matching_preset(bones, keys, expect):
    presets, errors = retarget.list_presets()
    best, ranked = retarget.detect(presets, bones, keys)
    assert best.name == expect and not errors
    assert len(ranked) == len(presets)


def test_coverage_text_and_missing_list():
    rig = _shipped("Rigify face")
    cov = retarget.coverage(rig, RIGIFY_FACE, [])
    assert cov.summary() == "Rigify face: 16 of 16 controls found" and not cov.missing
    arkit = retarget.coverage(_shipped("ARKit 52"), [], ["jawOpen", "eyeBlinkLeft", "Basis"])
    assert arkit.summary() == "ARKit 52: 2 of 52 shape keys found" and "tongueOut" in arkit.missing


def test_every_shipped_preset_is_valid_and_maps_known_channels():
    presets, errors = retarget.list_presets()
    assert {p.name for p in presets} == {"ARKit 52", "Rigify face", "Rigify face (modular)", "VRoid (VRM 0.x)",
                                         "VRM 1.0 expressions", "Mixamo (head only)", "MakeHuman default skeleton",
                                         "VRM add-on expressions"}
    assert not errors
    for p in presets:
        assert p.source and Path(p.source).parent == retarget.SHIPPED_DIR
        assert retarget.parse_preset(json.loads(Path(p.source).read_text()), p.source) is not None


# -- user presets ------------------------------------------------------------------------------------
def test_user_preset_folder_save_list_find(tmp_path):
    p = retarget.parse_preset(GOOD)
    path = retarget.save_user_preset(p, tmp_path)
    assert path == tmp_path / "Test_rig.json" and not list(tmp_path.glob("*.tmp"))
    (tmp_path / "broken.json").write_text(json.dumps({"schema": "joyvasa.retarget", "version": 1, "name": "B",
                                                      "channels": {"nope": []}}))
    presets, errors = retarget.list_presets(tmp_path)
    assert [x.name for x in presets][-1] == "Test rig"
    assert len(errors) == 1 and "broken.json: channels.nope: unknown readout channel" in errors[0]
    found = retarget.find_preset("test RIG", tmp_path)
    assert found.channels == p.channels and found.source == str(path)
    assert retarget.find_preset(str(path)).name == "Test rig"                    # by path


# -- the mapping table ------------------------------------------------------------------------------
def test_mapping_rows_round_trip_every_shipped_preset():
    presets, _ = retarget.list_presets()
    for p in presets:
        back = retarget.preset_from_rows(p.name, retarget.rows_from_preset(p), p.head, p.description)
        assert back.channels == p.channels and back.head == p.head, p.name


def test_mapping_row_error_names_the_row():
    rows = retarget.rows_from_preset(retarget.find_preset("Rigify face"))
    rows[2]["gain"] = float("nan")
    with pytest.raises(retarget.PresetError, match=r"row 3 \(mouthSmile\): channels.mouthSmile\[1\].gain: must be a finite"):
        retarget.preset_from_rows("Mine", rows)
    rows[2]["gain"], rows[0]["kind"] = 1.0, "bone_scale"
    with pytest.raises(retarget.PresetError, match="row 1: kind must be one of"):
        retarget.preset_from_rows("Mine", rows)


def test_head_rotation_channels_signed_by_default():
    p = retarget.parse_preset({"schema": "joyvasa.retarget", "version": 1, "name": "h", "channels": {
        "headYaw": [{"property": "yaw"}], "gazeX": [{"shape_key": "g"}], "jawOpen": [{"shape_key": "j"}]}})
    assert (p.channels["headYaw"][0].lo, p.channels["headYaw"][0].hi) == (-np.pi, np.pi)
    assert (p.channels["gazeX"][0].lo, p.channels["jawOpen"][0].lo) == (-1.0, 0.0)
    assert "clamp" not in p.to_dict()["channels"]["headYaw"][0] and p.uses_head_channels()
    M = mc.rotation_from_pyr([0.0, 5.0], [0.0, -12.0], [0.0, 3.0])
    h = retarget.head_channels(M)
    np.testing.assert_allclose(np.degrees([h["headPitch"][1], h["headYaw"][1], h["headRoll"][1]]), [5, -12, 3], atol=1e-9)
    plan = retarget.evaluate(p, h)
    np.testing.assert_allclose(plan.properties[("", "yaw")], np.radians([0, -12]), atol=1e-12)


# -- head-space location targets, aim targets, Rigify's two faces ------------------------------------
def _rz(deg: float) -> np.ndarray:
    a = np.radians(deg)
    return np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])


def test_head_space_targets_go_through_the_measured_rig_geometry():
    p = retarget.parse_preset({"schema": "joyvasa.retarget", "version": 1, "name": "H", "channels": {
        "browUp": [{"bone": "brow", "location": "Y", "space": "head", "full": 0.01}],
        "gazeX": [{"bone": "tgt", "location": "X", "space": "head", "aim": ["eye.L", "eye.R"], "full": 1.0}],
        "gazeY": [{"bone": "tgt", "location": "Y", "space": "head", "aim": ["eye.L", "eye.R"], "full": 0.9}]}})
    assert retarget.head_space_bones(p) == {"brow": (), "tgt": ("eye.L", "eye.R")}
    # the brow's location channels are turned 90 degrees from the head's frame; the target's are in depth order
    M_brow = np.linalg.inv(_rz(90))
    M_tgt = np.array([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]])          # head Y (up) is the channel Z
    geo = retarget.RigGeometry({"brow": M_brow, "tgt": M_tgt}, {"tgt": 0.12})
    gx = np.array([0.0, 0.3, -0.5, 1.0])
    plan = retarget.evaluate(p, {"browUp": np.array([0, 1.0, 0.5, 0]), "gazeX": gx, "gazeY": np.array([0, 0, 0.4, -1.0])},
                             geo)
    brow = plan.bones[("brow", "location")]
    np.testing.assert_allclose(_rz(90) @ brow[1], [0, 0.01, 0], atol=1e-12)      # back in head axes: up 1 cm
    tgt = plan.bones[("tgt", "location")]
    head_frame = tgt @ np.linalg.inv(M_tgt).T                                     # channel -> head axes
    angle_x = np.arctan2(head_frame[:, 0], 0.12)
    np.testing.assert_allclose(angle_x[:3], gx[:3], atol=1e-12)                   # the eyes turn by full x gaze
    assert abs(angle_x[3]) == pytest.approx(retarget.AIM_MAX_ANGLE)              # clamped: never past 35 degrees
    assert np.degrees(np.abs(np.arctan2(head_frame[:, 1], 0.12))).max() <= 35 + 1e-9
    assert plan.bone_axes[("tgt", "location")] == {0, 2}
    # without the rig's geometry, head-space targets key nothing (they cannot be placed)
    assert ("tgt", "location") not in retarget.evaluate(p, {"gazeX": gx}).bones


@pytest.mark.parametrize("target, message", [
    ({"shape_key": "a", "space": "head"}, "only a bone target has a space"),
    ({"property": "p", "aim": ["e"]}, "only a bone target has a aim"),
    ({"bone": "b", "rotation": "X", "full": 1, "space": "head", "aim": ["e"]}, "aim target moves in head space"),
    ({"bone": "b", "location": "X", "full": 1, "space": "world"}, "space: must be one of local, head"),
    ({"bone": "b", "location": "X", "full": 1, "aim": ["e"]}, "aim target moves in head space"),
    ({"bone": "b", "location": "Z", "full": 1, "space": "head", "aim": ["e"]}, "aim target moves in head space"),
    ({"bone": "b", "location": "X", "full": 1, "space": "head", "rest": 0.1}, "a head-space target has no rest")])
def test_bad_space_and_aim_are_named(target, message):
    with pytest.raises(retarget.PresetError, match=message):
        retarget.parse_preset({"schema": "joyvasa.retarget", "version": 1, "name": "B", "channels": {"gazeX": [target]}})


def test_one_space_per_bone():
    with pytest.raises(retarget.PresetError, match="one space per bone"):
        retarget.parse_preset({"schema": "joyvasa.retarget", "version": 1, "name": "B", "channels": {
            "browUp": [{"bone": "b", "location": "Y", "full": 1}],
            "browDown": [{"bone": "b", "location": "X", "full": 1, "space": "head"}]}})


LEGACY_FACE = ["jaw_master", "lips.L", "lips.R", "lip.T", "lip.B", "eyes", "head", "neck"] + \
    [f"lid.{tb}.{s}.002" for tb in "TB" for s in "LR"] + [f"brow.T.{s}.00{i}" for s in "LR" for i in (1, 2, 3)]
MODULAR_FACE = [n for n in LEGACY_FACE if n not in ("lips.L", "lips.R", "eyes")] + \
    ["lip_end.L.001", "lip_end.R.001", "eye_common", "ORG-eye.L", "ORG-eye.R"]


@pytest.mark.parametrize("bones, name", [(LEGACY_FACE, "Rigify face"), (MODULAR_FACE, "Rigify face (modular)")])
def test_auto_tells_rigifys_two_faces_apart(bones, name):
    presets, _ = retarget.list_presets()
    best, ranked = retarget.detect(presets, bones, [])
    assert best.name == name and ranked[0].fraction == 1.0
    other = next(c for c in ranked if c.preset.name.startswith("Rigify") and c.preset.name != name)
    assert other.summary().endswith("13 of 16 controls found")


def test_mapping_rows_keep_space_and_aim():
    modular = retarget.find_preset("Rigify face (modular)")
    rows = retarget.rows_from_preset(modular)
    gaze = next(r for r in rows if r["channel"] == "gazeX")
    assert gaze["space"] == "HEAD" and gaze["aim"] == "ORG-eye.L, ORG-eye.R"
    back = retarget.preset_from_rows(modular.name, rows, modular.head)
    assert back.channels == modular.channels


def test_a_head_only_rig_is_told_so():
    presets, _ = retarget.list_presets()
    best, ranked = retarget.detect(presets, ["mixamorig:Hips", "mixamorig:Spine", "mixamorig:Neck", "mixamorig:Head",
                                             "mixamorig:HeadTop_End"], [])
    assert best.name == "Mixamo (head only)" and not best.channels
    assert ranked[0].summary() == "Mixamo (head only): head only: this rig has no face controls"
    assert best.head == retarget.Head("mixamorig:Head", "mixamorig:Neck", 0.4)
    with pytest.raises(retarget.PresetError, match="head-only rig"):
        retarget.parse_preset({"schema": "joyvasa.retarget", "version": 1, "name": "E", "channels": {}})


def test_head_space_rotations_turn_about_the_heads_axes():
    """MakeHuman-style bones with arbitrary rolls: a turn about the head's X is converted to the
    bone's own axes with its rest orientation."""
    p = retarget.parse_preset({"schema": "joyvasa.retarget", "version": 1, "name": "R", "channels": {
        "jawOpen": [{"bone": "jaw", "rotation": "X", "space": "head", "full": 0.3}],
        "gazeX": [{"bone": "eye", "rotation": "Y", "space": "head", "full": 1.0}],
        "gazeY": [{"bone": "eye", "rotation": "X", "space": "head", "full": -0.9}]}})
    roll = _rz(70)                                   # the jaw's rest axes in the head frame: rolled 70 degrees
    geo = retarget.RigGeometry(rest_in_head={"jaw": roll, "eye": np.eye(3)})
    plan = retarget.evaluate(p, {"jawOpen": np.array([0.0, 1.0]), "gazeX": np.array([0.2, 0.0]),
                                 "gazeY": np.array([0.0, 0.5])}, geo)
    v = plan.bones[("jaw", "rotvec")][1]             # local rotation vector
    np.testing.assert_allclose(roll @ v, [0.3, 0, 0], atol=1e-12)      # = 0.3 rad about the head's X
    np.testing.assert_allclose(plan.bones[("eye", "rotvec")], [[0, 0.2, 0], [-0.45, 0, 0]], atol=1e-12)
    assert ("jaw", "rotvec") not in retarget.evaluate(p, {"jawOpen": np.ones(2)}).bones   # no geometry: skipped


def test_plan_take_is_what_the_keys_are_made_of() -> None:
    """core/take_plan.plan_take: resample -> projection -> readout -> the preset's plan, without bpy
    (apply_motion only keys what it returns)."""
    from joyvasa_blender.core.take_plan import plan_take

    motion = mc.load_motion(Path(__file__).resolve().parents[1] / "contract" / "motion_v1.npz")
    preset = retarget.find_preset(retarget.ARKIT)
    take = plan_take(motion, 24.0, preset, reference_mode="auto", include_gaze=False, pose_reference="FIRST",
                     mirrored_source=False)
    s = mc.resample(motion, 24.0)
    assert take.sampled.n_frames == s.n_frames and take.head.shape == (s.n_frames, 3, 3)
    proj = semantic.project(s.exp, reference_mode="auto", groups=["mouth", "eyes", "brows"])
    np.testing.assert_array_equal(take.projection.values, proj.values)
    assert "jawOpen" in take.plan.shape_keys and len(take.plan.shape_keys["jawOpen"]) == s.n_frames
