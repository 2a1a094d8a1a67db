"""Live in Blender (ops_live.py) with the fake engine's live mode: the test drives the timer
function itself (timers do not run in background mode). A paced stream moves shape keys, the
head bone and a generated Rigify face; Stop restores the detached Actions and the values; Record
keys the streamed frames as a new take with the WAV as a sound strip at the take's start; an
engine error is shown and leaves the scene as it was."""
from __future__ import annotations

import time

import bpy
import numpy as np
import pytest

from conftest import HAS_SOUND, addon, scene_fingerprint


@pytest.fixture(autouse=True)
def no_live_session_left():
    """A failing test must not leave a session that blocks the next tests' engine runs."""
    yield
    addon("ops_live").cancel_live()


def drive(until, timeout: float = 20.0, every=None) -> None:
    """Call the timer function like Blender would (every ~25 ms) until ``until()``."""
    ops_live = addon("ops_live")
    end = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < end, f"live session did not get there in {timeout} s: {addon('runtime').LIVE_LAST}"
        ops_live.tick()
        if every is not None:
            every()
        time.sleep(ops_live.TICK_S)


def live_settings(scene, audio, record: bool, source: str = "AUDIO") -> None:
    st, lv = scene.joyvasa, scene.joyvasa_live
    st.audio_source, st.audio_path = "FILE", str(audio)
    lv.source, lv.record, lv.monitor = source, record, False


def artist_action(rig, face) -> tuple[str, str]:
    """The artist's own animation on the rig's head and a shape key (what live must not destroy)."""
    pb = rig.pose.bones["head"]
    pb.rotation_quaternion = (0.9, 0.3, 0.0, 0.0)
    pb.keyframe_insert(data_path="rotation_quaternion", frame=1)
    kb = face.data.shape_keys.key_blocks["jawOpen"]
    kb.value = 0.25
    kb.keyframe_insert(data_path="value", frame=1)
    bpy.context.scene.frame_set(1)
    return rig.animation_data.action.name, face.data.shape_keys.animation_data.action.name


def stopped() -> bool:
    return addon("runtime").LIVE is None


def test_stream_moves_shape_keys_and_head_and_stop_restores_the_actions(scene, speech_wav):
    rig, face = bpy.data.objects["Rig"], bpy.data.objects["Face"]
    rig_action, key_action = artist_action(rig, face)
    actions_before = sorted(a.name for a in bpy.data.actions)
    live_settings(scene, speech_wav, record=False)
    assert bpy.ops.joyvasa.live_start() == {"FINISHED"}
    runtime = addon("runtime")
    sess = runtime.LIVE
    assert sess is not None and rig.animation_data.action is None
    assert face.data.shape_keys.animation_data.action is None      # detached while live
    jaw, head = [], []
    blocks = face.data.shape_keys.key_blocks

    def sample():
        jaw.append(blocks["jawOpen"].value)
        head.append(tuple(rig.pose.bones["head"].rotation_quaternion))

    drive(lambda: len(jaw) >= 10 and sess.player.shown >= 10 and len(set(head[-10:])) > 3
          and "Delay" in runtime.LIVE_LAST["message"], every=sample)
    assert len({round(v, 4) for v in jaw[-10:]}) > 1, jaw          # the mouth moves with the stream
    assert sorted(a.name for a in bpy.data.actions) == actions_before   # values, not keys
    assert bpy.ops.joyvasa.live_stop() == {"FINISHED"}
    drive(stopped)
    assert runtime.LIVE_LAST["state"] == "cancelled"
    assert rig.animation_data.action.name == rig_action
    assert face.data.shape_keys.animation_data.action.name == key_action
    scene.frame_set(1)
    assert tuple(rig.pose.bones["head"].rotation_quaternion) == pytest.approx((0.9, 0.3, 0.0, 0.0), abs=1e-4) or \
        np.allclose(np.array(rig.pose.bones["head"].rotation_quaternion), np.array([0.9, 0.3, 0, 0]) /
                    np.linalg.norm([0.9, 0.3]), atol=1e-4)
    assert blocks["jawOpen"].value == pytest.approx(0.25, abs=1e-6)
    assert sorted(a.name for a in bpy.data.actions) == actions_before   # nothing recorded


def test_record_keys_the_streamed_frames_and_adds_the_wav_at_the_take_start(scene, speech_wav):
    scene.render.fps, scene.render.fps_base = 25, 1.0            # one key per streamed frame
    st = scene.joyvasa
    st.start_frame = 11
    live_settings(scene, speech_wav, record=True)
    assert bpy.ops.joyvasa.live_start() == {"FINISHED"}
    runtime = addon("runtime")
    sess = runtime.LIVE
    drive(lambda: sess.player.received >= 15)
    bpy.ops.joyvasa.live_stop()
    drive(stopped)
    assert runtime.LIVE_LAST["state"] == "done", runtime.LIVE_LAST
    assert "differs" not in runtime.LIVE_LAST["message"]
    summary = sess.events["summary"]
    rec = sess.recorder.arrays()
    assert len(rec["frame"]) >= 15
    ctrl = bpy.data.objects["JoyVASA Motion"]
    fc = addon("compat").find_fcurve(ctrl, '["yaw"]')
    assert fc is not None and ctrl.animation_data.action.get("joyvasa_live")
    # frame k of the stream shows audio time t = offset + k/25: the key at start + 25 t holds it
    shown = [(int(round(11 + t * 25)), y) for t, y in zip(rec["time"], rec["yaw"])
             if 0 <= round(t * 25) < summary["frames"]]          # the take is as long as the audio
    assert len(shown) >= 10
    for frame, yaw in shown:
        assert fc.evaluate(frame) == pytest.approx(yaw, abs=1e-3), frame
    assert rig_take_is_active(summary)
    strips = addon("compat").sound_strips(scene)
    if HAS_SOUND:
        strip = next(s for s in strips if s.name == summary["sound"])
        assert addon("compat").strip_content_start(strip) == 11
        assert bpy.path.abspath(strip.sound.filepath) == summary["wav"]
    else:
        assert "sound strip not added" in runtime.LIVE_LAST["message"]


def rig_take_is_active(summary) -> bool:
    rig = bpy.data.objects["Rig"]
    return rig.animation_data.action.name in summary["actions"]


def test_engine_error_is_shown_and_leaves_the_scene_clean(scene, speech_wav):
    rig, face = bpy.data.objects["Rig"], bpy.data.objects["Face"]
    artist_action(rig, face)
    before = scene_fingerprint()
    live_settings(scene, speech_wav, record=True, source="MIC")
    scene.joyvasa_live.mic_device = "Missing Device"
    assert bpy.ops.joyvasa.live_start() == {"FINISHED"}
    drive(stopped)
    last = addon("runtime").LIVE_LAST
    assert last["state"] == "failed" and "[audio_device]" in last["message"], last
    assert scene_fingerprint() == before
    assert face.data.shape_keys.animation_data.action is not None


#: the rigs of conftest.rigify_blend: one generated Rigify rig, or the legacy and the modular face
RIGIFY_RIGS = ("RIG-human", "RIG-legacy", "RIG-modular")


def test_rigify_face_follows_the_stream_and_stop_restores_the_pose(rigify_blend, installed, fake_python, monkeypatch,
                                                                   speech_wav):
    monkeypatch.setenv("JOYVASA_ENGINE_PYTHON", fake_python)
    runtime = addon("runtime")
    runtime.stop_worker()          # a cold engine, as the scene fixture gives the other tests
    runtime.WORKER = None
    bpy.ops.wm.open_mainfile(filepath=str(rigify_blend))
    rigs = [name for name in RIGIFY_RIGS if name in bpy.data.objects]
    assert rigs, f"no Rigify rig in {rigify_blend}"
    for name in rigs:                      # each generated face (legacy / modular) in turn
        bpy.ops.wm.open_mainfile(filepath=str(rigify_blend))
        live_on_rigify(name, speech_wav)


def live_on_rigify(rig_name: str, speech_wav) -> None:
    runtime = addon("runtime")
    scene = bpy.context.scene
    st = scene.joyvasa
    st.rig, st.mesh, st.channels_target = bpy.data.objects[rig_name], None, "NONE"
    rig = st.rig
    live_settings(scene, speech_wav, record=False)
    n = len(rig.pose.bones)

    def pose() -> np.ndarray:
        q, loc = np.empty(n * 4, np.float32), np.empty(n * 3, np.float32)
        rig.pose.bones.foreach_get("rotation_quaternion", q)
        rig.pose.bones.foreach_get("location", loc)
        return np.concatenate([q.reshape(n, 4), loc.reshape(n, 3)], axis=1)

    rest = pose()
    assert bpy.ops.joyvasa.live_start() == {"FINISHED"}
    sess = runtime.LIVE
    assert sess.mapper.preset.name.lower().startswith("rigify"), (rig_name, sess.mapper.preset.name)
    moved: set[str] = set()
    names = [b.name for b in rig.pose.bones]

    def watch():
        diff = np.abs(pose() - rest).max(axis=1) > 1e-4
        moved.update(names[i] for i in np.flatnonzero(diff))

    drive(lambda: (sess.player.shown >= 3 and len(moved) >= 4) or stopped(), every=watch)
    assert not stopped() and sess.head in moved, (rig_name, sess.head, sorted(moved), sess.player.shown,
                                                  addon("runtime").LIVE_LAST)
    face_bones = {b for (b, _t) in sess.mapper.frame_plan(sess.recorder.frames[-1])[0].bones}
    assert moved & face_bones, (rig_name, sorted(moved), sorted(face_bones))
    bpy.ops.joyvasa.live_stop()
    drive(stopped)
    np.testing.assert_allclose(pose(), rest, atol=1e-6, err_msg=rig_name)


def test_live_panel_draws_and_lists_the_engine_microphones(scene, speech_wav):
    from test_panels_draw import draw

    runtime = addon("runtime")
    assert bpy.ops.joyvasa.check_engine() == {"FINISHED"}            # the fake doctor lists two microphones
    assert runtime.DOCTOR["inputs"] == ["Fake USB Mic", "Fake Headset"]
    assert bpy.ops.joyvasa.live_pick_device(device="Fake Headset") == {"FINISHED"}
    assert scene.joyvasa_live.mic_device == "Fake Headset"
    ctx = bpy.context
    for cls in (bpy.types.JOYVASA_PT_live_view3d, bpy.types.JOYVASA_PT_live_sequencer):
        log = draw(cls, ctx)
        assert ("operator", "joyvasa.live_start") in log and ("operator", "joyvasa.live_pick_device") in log
        assert {("prop", "mic_device"), ("prop", "latency"), ("prop", "record")} <= set(log)
    live_settings(scene, speech_wav, record=False)
    assert bpy.ops.joyvasa.live_start() == {"FINISHED"}
    sess = runtime.LIVE
    drive(lambda: sess.player.received >= 3 and runtime.LIVE_LAST["message"].startswith("Delay"))
    log = draw(bpy.types.JOYVASA_PT_live_view3d, ctx)
    assert ("operator", "joyvasa.live_stop") in log
    assert any(x[0] == "label" and x[1].startswith("Delay ") for x in log)     # the measured delay, live
    bpy.ops.joyvasa.live_stop()
    drive(stopped)
    log = draw(bpy.types.JOYVASA_PT_live_view3d, ctx)
    assert any(x[0] == "label" and x[1].startswith("Live stopped") for x in log)
