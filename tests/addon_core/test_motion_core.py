"""Motion file reading, rotations and resampling (bpy-free)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from joyvasa_blender.core import motion_core as mc

GOLDEN = Path(__file__).resolve().parents[1] / "contract" / "motion_v1.npz"


def test_golden_file_loads_and_R_matches_angles():
    m = mc.load_motion(GOLDEN)
    assert m.n_frames == 50 and m.fps == 25.0
    assert m.meta["seed"] == 7 and m.meta["sampler"] == "ddim"
    with np.load(GOLDEN, allow_pickle=False) as z:
        R_file = z["R"].astype(np.float64)       # row-vector convention
    M = mc.rotation_from_pyr(m.pitch, m.yaw, m.roll)
    assert np.allclose(np.transpose(M, (0, 2, 1)), R_file, atol=1e-5)


def test_rejects_bad_files(tmp_path):
    with pytest.raises(mc.MotionFileError, match="does not exist"):
        mc.load_motion(tmp_path / "nope.npz")
    bad = tmp_path / "bad.npz"
    np.savez(bad, schema=np.array("something.else"))
    with pytest.raises(mc.MotionFileError, match="not a JoyVASA motion"):
        mc.load_motion(bad)
    with np.load(GOLDEN) as z:
        data = {k: z[k] for k in z.files}
    data["schema_version"] = np.array(2, dtype=np.int32)
    np.savez(bad, **data)
    with pytest.raises(mc.MotionFileError, match="schema v2"):
        mc.load_motion(bad)
    with np.load(GOLDEN) as z:
        data = {k: z[k] for k in z.files}
    data["pitch"] = data["pitch"][:-1]
    np.savez(bad, **data)
    with pytest.raises(mc.MotionFileError, match="pitch'? has shape"):
        mc.load_motion(bad)
    data["pitch"] = np.full(50, np.nan, dtype=np.float32)
    np.savez(bad, **data)
    with pytest.raises(mc.MotionFileError, match="NaN"):
        mc.load_motion(bad)
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(mc.MotionFileError, match="not a readable"):
        mc.load_motion(tmp_path / "text.npz")


@pytest.mark.parametrize("order", ["XYZ", "XZY", "YXZ", "YZX", "ZXY", "ZYX"])
def test_euler_round_trip(order):
    rng = np.random.default_rng(0)
    e = rng.uniform(-1.2, 1.2, (30, 3))
    M = mc.matrix_from_euler(e, order)
    e2 = mc.euler_from_matrix(M, order)
    assert np.allclose(mc.matrix_from_euler(e2, order), M, atol=1e-10)
    assert np.allclose(e, e2, atol=1e-10)


def test_pyr_is_xyz_euler_and_quaternions_round_trip():
    rng = np.random.default_rng(1)
    p, y, r = rng.uniform(-40, 40, (3, 20))
    M = mc.rotation_from_pyr(p, y, r)
    assert np.allclose(M, mc.matrix_from_euler(np.radians(np.stack([p, y, r], 1)), "XYZ"))
    p2, y2, r2 = mc.pyr_from_rotation(M)
    assert np.allclose([p, y, r], [p2, y2, r2], atol=1e-9)
    q = mc.quat_from_matrix(M)
    assert np.allclose(mc.matrix_from_quat(q), M, atol=1e-12)
    assert np.allclose(np.linalg.norm(q, axis=1), 1)


def test_slerp_midpoint_and_power():
    q0 = mc.quat_from_matrix(mc.rotation_from_pyr([0.0], [0.0], [0.0]))
    q1 = mc.quat_from_matrix(mc.rotation_from_pyr([0.0], [40.0], [0.0]))
    mid = mc.slerp(q0, q1, np.array([0.5]))
    _, yaw, _ = mc.pyr_from_rotation(mc.matrix_from_quat(mid))
    assert abs(yaw[0] - 20.0) < 1e-9
    half = mc.quat_power(q1, 0.5)
    assert np.allclose(half, mid)
    assert np.allclose(mc.quat_power(q1, 0.0), [[1, 0, 0, 0]])


def test_resample_identity_at_source_rate():
    m = mc.load_motion(GOLDEN)
    s = mc.resample(m, 25.0)
    assert s.n_frames == 50
    assert np.allclose(s.exp, m.exp) and np.allclose(s.t, m.t)
    assert np.allclose(s.pitch, m.pitch, atol=1e-9) and np.allclose(s.yaw, m.yaw, atol=1e-9)
    assert np.allclose(s.roll, m.roll, atol=1e-9)


def test_resample_to_other_rates():
    m = mc.load_motion(GOLDEN)          # 50 frames = 2 s
    s24 = mc.resample(m, 24.0)
    assert s24.n_frames == 48
    # scene frame 12 = 0.5 s = source frame 12.5: linear exp, slerped pose
    assert np.allclose(s24.exp[12], 0.5 * (m.exp[12] + m.exp[13]))
    q = mc.quat_from_matrix(mc.rotation_from_pyr(m.pitch[12:14], m.yaw[12:14], m.roll[12:14]))
    expect = mc.slerp(q[:1], q[1:], np.array([0.5]))
    assert np.allclose(mc.matrix_from_quat(expect)[0], mc.matrix_from_quat(s24.quat[12:13])[0], atol=1e-12)
    s30 = mc.resample(m, 30000 / 1001)
    assert s30.n_frames == int(np.ceil(2.0 * 30000 / 1001))
    assert np.allclose(s30.exp[0], m.exp[0]) and np.allclose(s30.exp[-1], m.exp[-1], atol=2e-3)
    ch = s30.channels()
    assert set(ch) == set(mc.CHANNEL_NAMES) and all(len(v) == s30.n_frames for v in ch.values())


def test_resample_honours_audio_offset_and_duration():
    m = mc.load_motion(GOLDEN)
    m.meta["audio_offset_s"] = -0.08          # upstream: 2 frames of prepended silence
    m.meta["audio_duration_s"] = 1.8
    s = mc.resample(m, 25.0)
    assert s.n_frames == 45                   # the audio's length, not the motion's
    assert np.allclose(s.exp[0], m.exp[2]) and np.allclose(s.exp[10], m.exp[12])
    s24 = mc.resample(m, 24.0)
    assert s24.n_frames == round(1.8 * 24)
    assert np.allclose(s24.exp[6], 0.75 * m.exp[8] + 0.25 * m.exp[9])   # 6/24 s -> source 6.25 + 2


def test_bone_local_rotation_identity_bone_maps_axes():
    # a head bone pointing up (+Z world): local Y = world Z; bone_world maps local -> world
    bone_world = np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]])
    M_cam = mc.rotation_from_pyr([20.0], [0.0], [0.0])     # nod down: rotation about camera x
    L = mc.bone_local_rotation(M_cam, bone_world)[0]
    # the rotation axis stays world X = bone local X
    axis = np.array([L[2, 1] - L[1, 2], L[0, 2] - L[2, 0], L[1, 0] - L[0, 1]])
    assert np.allclose(axis / np.linalg.norm(axis), [1, 0, 0], atol=1e-12) or \
        np.allclose(axis / np.linalg.norm(axis), [-1, 0, 0], atol=1e-12)
    # nodding down moves a point in front of the face (world -Y) down (-Z)
    W = mc.CAM_TO_BLENDER @ M_cam[0] @ mc.CAM_TO_BLENDER.T
    nose = W @ np.array([0, -1.0, 0])
    assert nose[2] < 0
    # yaw +: nose tip moves to image-left (-X world)
    W = mc.CAM_TO_BLENDER @ mc.rotation_from_pyr([0.0], [20.0], [0.0])[0] @ mc.CAM_TO_BLENDER.T
    assert (W @ np.array([0, -1.0, 0]))[0] < 0


def test_rotation_channels_all_modes_reproduce_rotation():
    rng = np.random.default_rng(2)
    M = mc.rotation_from_pyr(*rng.uniform(-30, 30, (3, 10)))
    q = mc.rotation_channels(M, "QUATERNION")
    assert np.allclose(mc.matrix_from_quat(np.stack(q, 1)), M)
    aa = mc.rotation_channels(M, "AXIS_ANGLE")
    ang, ax = aa[0], np.stack(aa[1:], 1)
    qq = np.concatenate([np.cos(ang / 2)[:, None], np.sin(ang / 2)[:, None] * ax], 1)
    assert np.allclose(mc.matrix_from_quat(qq), M)
    for order in ("XYZ", "ZXY"):
        e = np.stack(mc.rotation_channels(M, order), 1)
        assert np.allclose(mc.matrix_from_euler(e, order), M)
    assert mc.rotation_data_path("QUATERNION") == "rotation_quaternion"
    assert mc.rotation_data_path("YXZ") == "rotation_euler"


def test_relative_and_manual_axis():
    q = mc.quat_from_matrix(mc.rotation_from_pyr([10.0, 20.0], [5.0, 5.0], [0.0, 0.0]))
    rel = mc.relative_rotation(q, "FIRST")
    assert np.allclose(rel[0], np.eye(3))
    R = mc.manual_axis_rotation([10.0], [0.0], [0.0], pitch_axis="-X")
    assert np.allclose(R[0], mc.matrix_from_euler(np.radians([[-10.0, 0, 0]]), "XYZ")[0])


def test_keyframe_co():
    co = mc.keyframe_co(np.array([1.0, 2.0, 3.0]), 10)
    assert co.tolist() == [10, 1, 11, 2, 12, 3]


def test_first_frame_neutral_can_be_the_raw_frame_0():
    q = mc.quat_from_matrix(mc.rotation_from_pyr([5.0, 7.0], [10.0, 12.0], [0.0, 1.0]))
    ref = mc.rotation_from_pyr([5.0], [4.0], [0.0])[0]
    rel = mc.relative_rotation(q, "FIRST", reference=ref)
    assert not np.allclose(rel[0], np.eye(3), atol=1e-3)        # a 6 deg yaw offset stays visible
    assert np.allclose(mc.relative_rotation(q, "FIRST")[0], np.eye(3), atol=1e-9)


def test_driven_keypoints_shape():
    s = mc.resample(mc.load_motion(GOLDEN), 25.0)
    pts = mc.driven_keypoints(s)
    assert pts.shape == (50, 21, 3) and np.all(np.isfinite(pts))
