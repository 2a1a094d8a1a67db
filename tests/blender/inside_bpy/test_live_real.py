"""Live in Blender with the REAL engine (tiny synthetic weights, main-venv interpreter): the
audio input streamed as fast as the engine goes through the warm worker's live session, shown
on the rig by the timer (driven here), recorded at the end of the file as a take whose keys are
the streamed frames, with its WAV as a sound strip. Run from tests/blender/test_live_bpy.py."""
from __future__ import annotations

import os

import bpy
import pytest

from conftest import ENGINE_PY, HAS_SOUND, MODULE, addon, write_wav
from test_live import drive, live_settings, stopped

WEIGHTS = os.environ.get("JOYVASA_TEST_WEIGHTS", "")
pytestmark = pytest.mark.skipif(bool(os.environ.get("JOYVASA_SKIP_REAL_ENGINE")) or not WEIGHTS,
                                reason="real-engine tests need JOYVASA_TEST_WEIGHTS (tiny synthetic weights)")


def test_live_take_with_the_real_engine(scene, monkeypatch, tmp_path):
    monkeypatch.setenv("JOYVASA_ENGINE_PYTHON", ENGINE_PY)
    monkeypatch.setenv("JOYVASA_WEIGHTS", WEIGHTS)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    bpy.context.preferences.addons[MODULE].preferences.device = "cpu"
    scene.render.fps, scene.render.fps_base = 25, 1.0
    st = scene.joyvasa
    st.output_dir, st.start_frame, st.seed, st.sampler, st.steps = str(tmp_path / "out"), 5, 2, "ddim", 4
    wav = write_wav(tmp_path / "speech.wav", seconds=2.0)
    live_settings(scene, wav, record=True)
    scene.joyvasa_live.pace, scene.joyvasa_live.latency = "FAST", "LOW"
    assert bpy.ops.joyvasa.live_start() == {"FINISHED"}
    runtime = addon("runtime")
    sess = runtime.LIVE
    drive(stopped, timeout=300)                     # the session ends with the file: done, then the take
    assert runtime.LIVE_LAST["state"] == "done", (runtime.LIVE_LAST, sess.job.stderr_tail(20))
    assert "differs" not in runtime.LIVE_LAST["message"], runtime.LIVE_LAST["message"]
    assert sess.player.started.get("hop") == 5 and sess.player.started.get("lookahead") == 2
    rec = sess.recorder.arrays()
    assert len(rec["frame"]) >= 45 and list(rec["frame"]) == list(range(len(rec["frame"])))
    summary = sess.events["summary"]
    ctrl = bpy.data.objects["JoyVASA Motion"]
    fc = addon("compat").find_fcurve(ctrl, '["yaw"]')
    keyed = 0
    for t, yaw in zip(rec["time"], rec["yaw"]):
        if 0 <= round(t * 25) < summary["frames"]:          # the take is as long as the audio
            assert fc.evaluate(int(round(5 + t * 25))) == pytest.approx(yaw, abs=1e-3)
            keyed += 1
    assert keyed == summary["frames"] == 50
    rig = bpy.data.objects["Rig"]
    assert rig.animation_data.action.name in summary["actions"]
    if HAS_SOUND:
        strip = next(s for s in addon("compat").sound_strips(scene) if s.name == summary["sound"])
        assert addon("compat").strip_content_start(strip) == 5
