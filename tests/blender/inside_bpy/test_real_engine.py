"""End to end through the real engine (tiny synthetic weights, main-venv interpreter): a
speech wav becomes keyed head rotation, channels and shape keys, then a movie + sound strip
pair. Run from tests/blender/test_bpy_versions.py::test_real_engine_in_bpy."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import bpy
import numpy as np
import pytest

from conftest import ENGINE_PY, HAS_SOUND, addon, scene_fingerprint, write_wav

WEIGHTS = os.environ.get("JOYVASA_TEST_WEIGHTS", "")
pytestmark = pytest.mark.skipif(bool(os.environ.get("JOYVASA_SKIP_REAL_ENGINE")) or not WEIGHTS,
                                reason="real-engine tests need JOYVASA_TEST_WEIGHTS (tiny synthetic weights)")


@pytest.fixture()
def real(scene, monkeypatch, tmp_path):
    monkeypatch.setenv("JOYVASA_ENGINE_PYTHON", ENGINE_PY)
    monkeypatch.setenv("JOYVASA_WEIGHTS", WEIGHTS)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    prefs = bpy.context.preferences.addons[scene_module()].preferences
    prefs.device = "cpu"
    scene.joyvasa.output_dir = str(tmp_path / "out")
    return scene


def scene_module():
    from conftest import MODULE
    return MODULE


def keys(id_data, path, index=0):
    fc = addon("compat").find_fcurve(id_data, path, index)
    assert fc is not None, f"no F-curve {path}[{index}] on {id_data.name}"
    co = np.zeros(2 * len(fc.keyframe_points), dtype=np.float32)
    fc.keyframe_points.foreach_get("co", co)
    return co.reshape(-1, 2)


def test_speech_to_keys_with_real_engine(real, tmp_path):
    wav = write_wav(tmp_path / "speech.wav", seconds=2.0)
    st = real.joyvasa
    st.audio_path, st.start_frame, st.seed, st.sampler, st.steps = str(wav), 7, 3, "ddim", 4
    res = bpy.ops.joyvasa.generate_motion()
    last = addon("runtime").LAST
    assert res == {"FINISHED"}, last.report_text() if last else ""
    motion = Path(st.motion_path)
    assert motion.exists()
    mc = addon("core.motion_core")
    m = mc.load_motion(motion)
    assert m.meta["seed"] == 3 and m.meta["sampler"] == "ddim"
    s = mc.resample(m, 24.0)
    n = s.n_frames
    assert n == 48                                     # 2 s of audio at 24 fps
    rig = bpy.data.objects["Rig"]
    act = rig.animation_data.action
    assert act["joyvasa_seed"] == 3 and act.use_fake_user
    q = np.stack([keys(rig, 'pose.bones["head"].rotation_quaternion', i)[:, 1] for i in range(4)], 1)
    frames = keys(rig, 'pose.bones["head"].rotation_quaternion')[:, 0]
    assert len(q) == n and frames[0] == 7 and frames[-1] == 7 + n - 1
    bone_world = np.array(rig.matrix_world.to_3x3() @ rig.data.bones["head"].matrix_local.to_3x3())
    expect = mc.bone_local_rotation(mc.relative_rotation(s.quat, "FIRST"), bone_world)
    assert np.allclose(mc.matrix_from_quat(q), expect, atol=1e-5)
    ctrl = bpy.data.objects["JoyVASA Motion"]
    for name, vals in (("yaw", s.yaw), ("tx", s.t[:, 0]), ("exp_58", s.exp.reshape(n, 63)[:, 58])):
        k = keys(ctrl, f'["{name}"]')
        assert len(k) == n and np.allclose(k[:, 1], vals, atol=1e-4), name
    key = bpy.data.objects["Face"].data.shape_keys
    semantic = addon("core.contract.semantic")
    proj = semantic.project(s.exp)
    for sk, chan in (("jawOpen", "jawOpen"), ("eyeBlinkLeft", "eyeBlinkLeft"), ("mouthSmileRight", "mouthSmile")):
        k = keys(key, f'key_blocks["{sk}"].value')
        assert len(k) == n and k[:, 1].min() >= 0 and k[:, 1].max() <= 1
        assert np.allclose(k[:, 1], proj.channel(chan), atol=1e-5), sk
    assert real.frame_end >= 7 + n - 1


def test_render_to_strips_with_real_engine(real, tmp_path):
    wav = write_wav(tmp_path / "short.wav", seconds=0.5)
    st = real.joyvasa
    st.audio_path, st.start_frame, st.crop_mode = str(wav), 20, "NONE"   # random weights: no face detector
    img = tmp_path / "face.png"
    pix = bpy.data.images.new("face", 64, 64)
    pix.pixels.foreach_set(np.random.default_rng(0).random(64 * 64 * 4).astype(np.float32))
    pix.filepath_raw, pix.file_format = str(img), 'PNG'
    pix.save()
    st.portrait_source, st.portrait_path = "FILE", str(img)
    st.render_use_motion = False
    res = bpy.ops.joyvasa.render_portrait()
    last = addon("runtime").LAST
    assert res == {"FINISHED"}, last.report_text() if last else ""
    edit = real.joyvasa.sequencer_scene                 # the strips' own scene, not the 3D scene
    assert edit is not None and edit != real
    own = real.sequence_editor
    assert own is None or not list(own.strips_all if hasattr(own, "strips_all") else own.sequences_all)
    se = edit.sequence_editor
    strips = list(se.strips_all if hasattr(se, "strips_all") else se.sequences_all)
    movie = [s for s in strips if s.type == 'MOVIE']
    assert len(movie) == 1 and addon("compat").strip_content_start(movie[0]) == 20
    assert addon("compat").strip_duration(movie[0]) == 12        # 0.5 s at 24 fps
    sound = [s for s in strips if s.type == 'SOUND']
    if HAS_SOUND:
        assert len(sound) == 1 and addon("compat").strip_content_start(sound[0]) == 20
        assert abs(addon("compat").strip_duration(sound[0]) - 12) <= 1
    assert edit.frame_end >= 20 + 12 - 1


def test_failed_real_run_leaves_scene_unchanged(real, tmp_path, monkeypatch):
    monkeypatch.setenv("JOYVASA_WEIGHTS", str(tmp_path / "no_weights"))
    wav = write_wav(tmp_path / "speech.wav", seconds=0.5)
    real.joyvasa.audio_path = str(wav)
    before = scene_fingerprint()
    try:
        res, msg = bpy.ops.joyvasa.generate_motion(), ""
    except RuntimeError as exc:
        res, msg = {"CANCELLED"}, str(exc)
    assert res == {"CANCELLED"} and "weights" in msg
    last = addon("runtime").LAST
    assert last.state == "failed" and last.error_code == "weights_missing", last.report_text()
    assert scene_fingerprint() == before


def test_check_engine_with_real_engine(real):
    assert bpy.ops.joyvasa.check_engine() == {"FINISHED"}
    doc = addon("runtime").DOCTOR
    assert doc["ok"], doc
    assert any(line.startswith("Versions: engine") for line in doc["text"])
    assert any("joyvasa: loads" in line for line in doc["text"]), doc
    # the device line, from one op on the device auto picks (no nvidia-smi on a GPU-less machine)
    expected = ("CPU only: no GPU found",) if shutil.which("nvidia-smi") is None else ("GPU in use: ", "CPU only: ")
    assert doc["device"].startswith(expected) and doc["device"] in doc["text"], doc
    assert doc["gpu_warning"] is (not doc["device"].startswith(("GPU in use", "CPU only: no GPU"))), doc


def test_cancel_real_engine_changes_nothing(real, tmp_path):
    """Esc while the real engine loads its models: it stops (exit 130), nothing is keyed."""
    import time
    import types

    from test_modal import probe

    wav = write_wav(tmp_path / "speech.wav", seconds=2.0)
    real.joyvasa.audio_path = str(wav)
    before = scene_fingerprint()
    p, _ = probe()
    assert p._start(bpy.context) is not None
    t0 = time.monotonic()
    res = None
    while time.monotonic() - t0 < 120:
        run = addon("runtime").CURRENT
        seen_progress = run is not None and run.job.stage != ""
        res = p.modal(bpy.context, types.SimpleNamespace(type='ESC' if seen_progress else 'TIMER'))
        if res not in ({'PASS_THROUGH'}, {'RUNNING_MODAL'}):
            break
        time.sleep(0.05)
    assert res == {'CANCELLED'}
    last = addon("runtime").LAST
    assert last.state == "cancelled", last.report_text()
    assert last.returncode == 130, last.returncode      # honoured by the engine, not killed
    assert scene_fingerprint() == before
    assert not any(tmp_path.joinpath("out").glob("*.npz")) if tmp_path.joinpath("out").exists() else True


def test_second_take_reuses_the_warm_real_engine(real, tmp_path):
    """Keep Engine Warm (default): the second Generate Motion is a request to the same worker and
    loads no network (its timings have no 'load' stage)."""
    wav = write_wav(tmp_path / "speech.wav", seconds=1.0)
    st = real.joyvasa
    st.audio_path, st.sampler, st.steps = str(wav), "ddim", 2
    runtime = addon("runtime")
    timings = []
    for seed in (1, 2):
        st.seed = seed
        assert bpy.ops.joyvasa.generate_motion() == {"FINISHED"}, runtime.LAST.report_text()
        timings.append(dict(runtime.LAST.timings))
    assert "load" in timings[0] and "load" not in timings[1], timings
    assert runtime.WORKER.starts == 1 and runtime.WORKER.requests == 2


def test_killed_real_worker_is_reported_and_replaced(real, tmp_path):
    import signal
    import threading
    import time

    wav = write_wav(tmp_path / "speech.wav", seconds=6.0)
    st = real.joyvasa
    st.audio_path, st.sampler, st.steps = str(wav), "ancestral", 0
    runtime = addon("runtime")
    before = scene_fingerprint()

    def kill_when_sampling():
        for _ in range(3000):
            run = runtime.CURRENT
            if run is not None and run.job.stage == "motion":
                os.kill(runtime.WORKER.proc.pid, signal.SIGKILL)
                return
            time.sleep(0.02)

    th = threading.Thread(target=kill_when_sampling)
    th.start()
    try:
        res = bpy.ops.joyvasa.generate_motion()
    except RuntimeError as exc:   # background mode turns the ERROR report into an exception
        res, msg = {"CANCELLED"}, str(exc)
    th.join()
    last = runtime.LAST
    assert res == {"CANCELLED"} and last.state == "failed" and last.error_code == "crash", last.report_text()
    assert "code -9" in msg and "Engine log" in msg          # reported with the worker's stderr tail
    assert scene_fingerprint() == before
    st.audio_path, st.sampler, st.steps = str(write_wav(tmp_path / "short.wav", seconds=1.0)), "ddim", 2
    assert bpy.ops.joyvasa.generate_motion() == {"FINISHED"}, runtime.LAST.report_text()
    assert runtime.WORKER.starts == 2
