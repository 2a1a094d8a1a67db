"""Art direction end to end in bpy with the real engine (tiny synthetic weights): a keyed
head-strength curve (0 for the first half, 1 for the second) gives a still head bone in the
first half of the keys AND a still head (rigid part) in the driving keypoints of the rendered
video (measured with tiny weights, 5.0: the first half turns at most 0.07-0.25 deg and shifts at
most 1.4e-4-4e-4 (the expression still moves, so the rigid fit is not exactly 0); the second half
reaches 2.2-5.0 deg and 0.08 shift). Run from
tests/blender/test_bpy_versions.py::test_controls_real_engine_in_bpy (Blender 4.5 and 5.0)."""
from __future__ import annotations

from pathlib import Path

import bpy
import numpy as np

from conftest import addon, write_wav
from test_real_engine import keys, pytestmark, real  # noqa: F401  (fixture; skipped without tiny weights)


def test_keyed_head_strength_reaches_rig_and_video(real, tmp_path):  # noqa: F811
    st = real.joyvasa
    wav = write_wav(tmp_path / "speech.wav", seconds=2.0)
    st.audio_path, st.start_frame, st.seed, st.sampler, st.steps, st.crop_mode = str(wav), 1, 3, "ddim", 2, "NONE"
    st.head_strength = 0.0
    real.keyframe_insert(data_path="joyvasa.head_strength", frame=1)
    st.head_strength = 1.0
    real.keyframe_insert(data_path="joyvasa.head_strength", frame=25)          # 2 s at 24 fps = 48 frames
    for kp in addon("compat").find_fcurve(real, "joyvasa.head_strength").keyframe_points:
        kp.interpolation = 'CONSTANT'
    assert bpy.ops.joyvasa.generate_motion() == {"FINISHED"}, addon("runtime").LAST.report_text()
    rig = bpy.data.objects["Rig"]
    q = np.stack([keys(rig, 'pose.bones["head"].rotation_quaternion', i)[:, 1] for i in range(4)], 1)
    assert len(q) == 48
    still = np.abs(np.abs(q[:, 0]) - 1)
    assert still[:22].max() < 1e-6 and still[26:].max() > 1e-5       # still head, then it moves
    # the video: render the generated (edited) take with the same controls
    img = tmp_path / "face.png"
    pix = bpy.data.images.new("face", 64, 64)
    pix.pixels.foreach_set(np.random.default_rng(0).random(64 * 64 * 4).astype(np.float32))
    pix.filepath_raw, pix.file_format = str(img), 'PNG'
    pix.save()
    st.portrait_source, st.portrait_path, st.render_use_motion = "FILE", str(img), True
    assert bpy.ops.joyvasa.render_portrait() == {"FINISHED"}, addon("runtime").LAST.report_text()
    driving = Path(st.last_video).with_suffix(".driving.npy")
    kp = np.load(driving).astype(np.float64)
    assert kp.shape == (48, 21, 3)
    # the head part of the driving keypoints: the best rigid fit (Kabsch) of each frame to frame 0;
    # the expression still moves (only the head strength is keyed)
    turn = np.array([_rigid_angle_deg(kp[0], k) for k in kp])
    shift = np.linalg.norm(kp.mean(axis=1) - kp[0].mean(axis=0), axis=1)
    info = (turn.round(3), shift.round(5))
    assert turn[:22].max() < 0.5 and shift[:22].max() < 1e-3, info
    assert turn[26:].max() > 1.0 and shift[26:].max() > 1e-2, info
    assert turn[:22].max() < 0.15 * turn[26:].max() and shift[:22].max() < 0.05 * shift[26:].max(), info


def _rigid_angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(0), b - b.mean(0)
    u, _, vt = np.linalg.svd(a.T @ b)
    R = u @ np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))]) @ vt
    return float(np.degrees(np.arccos(np.clip((np.trace(R) - 1) / 2, -1.0, 1.0))))
