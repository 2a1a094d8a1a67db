"""The installed extension inside bpy: registration, applying motion, engine operators
against the fake engine (success, error, crash, hang/cancel), Sequencer strips."""
from __future__ import annotations

import threading
from pathlib import Path

import addon_utils
import bpy
import numpy as np
import pytest

from conftest import HAS_SOUND, MODULE, TESTS, addon, engine_processes, logged_commands, scene_fingerprint

GOLDEN = TESTS / "contract" / "motion_v1.npz"


def run_op(op, **kw):
    """Call an operator; in background mode an ERROR report raises RuntimeError (its text is the report)."""
    try:
        return op(**kw), ""
    except RuntimeError as exc:
        return {"CANCELLED"}, str(exc)


def fcurves(id_data):
    return list(addon("compat").iter_fcurves(id_data))


def curve(id_data, path, index=0):
    fc = addon("compat").find_fcurve(id_data, path, index)
    assert fc is not None, f"no F-curve {path}[{index}] on {id_data.name}"
    co = np.zeros(2 * len(fc.keyframe_points), dtype=np.float32)
    fc.keyframe_points.foreach_get("co", co)
    return co.reshape(-1, 2)


def test_register_unregister_twice(installed):
    for _ in range(2):
        addon_utils.disable(MODULE)
        assert not hasattr(bpy.types.Scene, "joyvasa")
        assert not hasattr(bpy.types, "JOYVASA_PT_view3d")
        addon_utils.enable(MODULE, default_set=True)
        assert hasattr(bpy.types.Scene, "joyvasa")
        assert bpy.types.JOYVASA_PT_view3d.bl_category == "JoyVASA"
        assert bpy.types.JOYVASA_PT_sequencer.bl_space_type == 'SEQUENCE_EDITOR'
        assert hasattr(bpy.ops.joyvasa, "generate_motion") and hasattr(bpy.ops.joyvasa, "render_portrait")
    prefs = bpy.context.preferences.addons[MODULE].preferences
    assert prefs.device == "auto"


def test_installed_zip_contains_engine_sources(installed):
    root = Path(installed.__file__).parent
    assert (root / "blender_manifest.toml").exists()
    assert (root / "engine_src" / "engine" / "__main__.py").exists()
    assert "torch" in (root / "engine_src" / "requirements.txt").read_text()
    assert addon("core.engine_client").find_engine_src() == root / "engine_src"


def test_apply_golden_motion(scene):
    st = scene.joyvasa
    st.start_frame = 5
    res = bpy.ops.joyvasa.apply_motion(filepath=str(GOLDEN))
    assert res == {"FINISHED"}
    mc = addon("core.motion_core")
    s = mc.resample(mc.load_motion(GOLDEN), 24.0)
    n = s.n_frames
    assert n == 48
    rig = bpy.data.objects["Rig"]
    act = rig.animation_data.action
    assert act.use_fake_user and act["joyvasa_seed"] == 7 and act["joyvasa_take"]
    assert act.name.startswith("JV_seed7_ddim10")
    # head bone: 4 quaternion curves, n keys from frame 5
    rot = [curve(rig, 'pose.bones["head"].rotation_quaternion', i) for i in range(4)]
    assert all(len(c) == n for c in rot)
    assert rot[0][0, 0] == 5 and rot[0][-1, 0] == 5 + n - 1
    q = np.stack([c[:, 1] for c in rot], 1)
    assert np.allclose(q[0], [1, 0, 0, 0], atol=1e-6)            # relative to the first frame
    # the keyed rotation equals the maths: bone rest = head pointing up
    bone_world = np.array(rig.matrix_world.to_3x3() @ rig.data.bones["head"].matrix_local.to_3x3())
    expect = mc.bone_local_rotation(mc.relative_rotation(s.quat, "FIRST"), bone_world)
    got = mc.matrix_from_quat(q)
    assert np.allclose(got, expect, atol=1e-5)
    # evaluating the scene at a frame gives the same pose
    scene.frame_set(5 + 20)
    pb = rig.pose.bones["head"]
    assert np.allclose(np.array(pb.rotation_quaternion.to_matrix()), expect[20], atol=1e-5)
    # channels on the "JoyVASA Motion" empty
    ctrl = bpy.data.objects["JoyVASA Motion"]
    assert ctrl.animation_data.action is not act
    pitch = curve(ctrl, '["pitch"]')
    assert len(pitch) == n and np.allclose(pitch[:, 1], s.pitch, atol=1e-4)
    exp19 = curve(ctrl, '["exp_58"]')            # kp19.y
    assert np.allclose(exp19[:, 1], s.exp.reshape(n, 63)[:, 58], atol=1e-6)
    assert len(fcurves(ctrl)) >= 70
    # shape keys on the mesh's Key: jaw follows the synthetic 10..70 aaa units
    key = bpy.data.objects["Face"].data.shape_keys
    jaw = curve(key, 'key_blocks["jawOpen"].value')
    assert len(jaw) == n and jaw[:, 1].min() >= 0 and jaw[:, 1].max() <= 1
    k = np.arange(n) / 24 * 25
    truth = np.clip((40 + 30 * np.sin(2 * np.pi * k / 25)) / 100, 0, 1)
    assert np.corrcoef(jaw[:, 1], truth)[0, 1] > 0.99
    blinkL = curve(key, 'key_blocks["eyeBlinkLeft"].value')[:, 1]
    assert blinkL[20] > 0.5 and blinkL[5] < 0.1      # blink on source frames 20-23 = scene frames ~19-22
    smileL, smileR = (curve(key, f'key_blocks["mouthSmile{s}"].value')[:, 1] for s in ("Left", "Right"))
    assert np.allclose(smileL, smileR) and smileL[-1] > 0.5
    assert scene.frame_end == 5 + n - 1


def test_apply_motion_is_one_undo_step(scene):
    """Apply Motion File (bl_options UNDO) is undone in one step: no take, no keys, no new
    objects, the old frame range (undo works in the bpy module although ``ed.undo.poll()`` is False)."""
    before = scene_fingerprint()
    takes_before = sorted(a.name for a in bpy.data.actions if a.get("joyvasa_take"))
    bpy.ops.ed.undo_push(message="before apply")
    assert bpy.ops.joyvasa.apply_motion('EXEC_DEFAULT', True, filepath=str(GOLDEN)) == {"FINISHED"}
    assert scene_fingerprint() != before
    assert bpy.data.objects["Rig"].animation_data.action.get("joyvasa_take")
    assert bpy.ops.ed.undo() == {"FINISHED"}
    assert scene_fingerprint() == before
    assert sorted(a.name for a in bpy.data.actions if a.get("joyvasa_take")) == takes_before == []
    ad = bpy.data.objects["Rig"].animation_data
    assert ad is None or ad.action is None


def test_second_take_is_a_new_action_and_keeps_the_first(scene):
    assert bpy.ops.joyvasa.apply_motion(filepath=str(GOLDEN)) == {"FINISHED"}
    first = bpy.data.objects["Rig"].animation_data.action
    assert bpy.ops.joyvasa.apply_motion(filepath=str(GOLDEN)) == {"FINISHED"}
    second = bpy.data.objects["Rig"].animation_data.action
    assert first.name != second.name and first.name in bpy.data.actions and first.use_fake_user


def test_euler_bone_and_manual_axes(scene):
    rig = bpy.data.objects["Rig"]
    rig.pose.bones["head"].rotation_mode = 'ZXY'
    st = scene.joyvasa
    st.axis_mode, st.pitch_axis, st.yaw_axis, st.roll_axis = "MANUAL", "X", "-Z", "Y"
    st.pose_reference = "ABSOLUTE"
    st.channels_target = "RIG"
    assert bpy.ops.joyvasa.apply_motion(filepath=str(GOLDEN)) == {"FINISHED"}
    e = [curve(rig, 'pose.bones["head"].rotation_euler', i)[:, 1] for i in range(3)]
    mc = addon("core.motion_core")
    s = mc.resample(mc.load_motion(GOLDEN), 24.0)
    expect = mc.manual_axis_rotation(s.pitch, s.yaw, s.roll, "X", "-Z", "Y")
    got = mc.matrix_from_euler(np.stack(e, 1), "ZXY")
    assert np.allclose(got, expect, atol=1e-5)
    assert "pitch" in rig.keys() and len(curve(rig, '["yaw"]')) == s.n_frames


def _key_split(scene, prop, first, second, frame):
    """Key ``prop`` to ``first`` up to frame-1 and ``second`` from ``frame`` (constant steps)."""
    st = scene.joyvasa
    setattr(st, prop, first)
    scene.keyframe_insert(data_path=f"joyvasa.{prop}", frame=1)
    setattr(st, prop, second)
    scene.keyframe_insert(data_path=f"joyvasa.{prop}", frame=frame)
    for kp in addon("compat").find_fcurve(scene, f"joyvasa.{prop}").keyframe_points:
        kp.interpolation = 'CONSTANT'


def _head_quats(rig):
    return np.stack([curve(rig, 'pose.bones["head"].rotation_quaternion', i)[:, 1] for i in range(4)], 1)


def test_keyed_head_strength_reaches_the_keys_through_engine_edit(scene, tmp_path):
    """The add-on samples the keyed control, the engine edits the motion (engine edit), the rig
    keys it: head still while the strength is 0, the unedited motion once it is 1."""
    st = scene.joyvasa
    st.output_dir = str(tmp_path / "out")
    st.channels_target = "EMPTY"
    assert bpy.ops.joyvasa.apply_motion(filepath=str(GOLDEN), start_frame=1) == {"FINISHED"}
    rig = bpy.data.objects["Rig"]
    q_plain = _head_quats(rig)
    assert not list((tmp_path / "out").glob("*.npz"))          # neutral controls: no edit, no file
    _key_split(scene, "head_strength", 0.0, 1.0, 25)
    assert bpy.ops.joyvasa.apply_motion(filepath=str(GOLDEN), start_frame=1) == {"FINISHED"}
    q = _head_quats(rig)
    assert len(q) == len(q_plain) == 48
    assert np.abs(np.abs(q[:22, 0]) - 1).max() < 1e-6          # frames 1-22: identity, a still head
    assert np.abs(np.abs(q_plain[:22, 0]) - 1).max() > 1e-4    # (the motion itself does turn there)
    np.testing.assert_allclose(q[25:], q_plain[25:], atol=1e-5)
    edited = sorted((tmp_path / "out").glob("*_edit*.npz"))
    assert len(edited) == 1 and edited[0].with_suffix(".controls.json").exists()
    assert rig.animation_data.action["joyvasa_motion"] == str(edited[0])
    assert '"head_gain"' in rig.animation_data.action["joyvasa_controls"]


def test_reapply_controls_makes_a_new_take_without_sampling(scene, tmp_path, monkeypatch):
    log = tmp_path / "argv.jsonl"
    monkeypatch.setenv("JOYVASA_FAKE_ARGV_LOG", str(log))
    st = scene.joyvasa
    st.output_dir = str(tmp_path / "out")
    assert bpy.ops.joyvasa.apply_motion(filepath=str(GOLDEN), start_frame=1) == {"FINISHED"}
    rig = bpy.data.objects["Rig"]
    first = rig.animation_data.action
    q_plain = _head_quats(rig)
    st.head_strength = 0.0
    st.blink, st.blink_rate = True, 30.0
    assert bpy.ops.joyvasa.reapply_controls() == {"FINISHED"}, addon("runtime").LAST.report_text()
    last = addon("runtime").LAST
    assert last.kind == "edit" and last.state == "done"
    commands = [argv[0] for argv in logged_commands(log)]
    assert commands == ["edit"]                                  # the engine ran edit only: no sampling
    take = rig.animation_data.action
    assert take != first and take.get("joyvasa_take") and first.name in bpy.data.actions
    assert np.abs(np.abs(_head_quats(rig)[:, 0]) - 1).max() < 1e-6 and np.abs(np.abs(q_plain[:, 0]) - 1).max() > 1e-4
    controls = __import__("json").loads(take["joyvasa_controls"])
    assert controls["blink"]["rate_per_min"] == 30.0 and controls["head_gain"]["yaw"] == 0.0
    # again from the edited take: edits never stack (the engine starts from the raw motion)
    st.head_strength = 1.0
    st.blink = False
    assert bpy.ops.joyvasa.reapply_controls() == {"FINISHED"}
    np.testing.assert_allclose(_head_quats(rig), q_plain, atol=1e-5)


def test_controls_file_of_the_scene(scene):
    st = scene.joyvasa
    _key_split(scene, "gaze_x", 0.0, 0.5, 10)
    st.smile, st.silence_relax = 0.3, True
    d = addon("controls_scene").scene_controls(scene, 1, 20)
    assert d["gaze"]["x"] == [0.0] * 9 + [0.5] * 11 and d["expression_offset"]["smile"] == pytest.approx(0.3)
    assert d["silence"]["relax"] is True and d["blink"] is None and d["fps"] == 24.0
    assert not addon("core.controls").is_neutral(d)


def test_keypoint_empties(scene):
    scene.joyvasa.make_empties = True
    assert bpy.ops.joyvasa.apply_motion(filepath=str(GOLDEN)) == {"FINISHED"}
    kp = bpy.data.objects["JoyVASA kp19"]
    assert len(curve(kp, "location", 2)) == 48


def test_bad_motion_file_changes_nothing(scene, tmp_path):
    before = scene_fingerprint()
    bad = tmp_path / "bad.npz"
    np.savez(bad, schema=np.array("nope"))
    res, msg = run_op(bpy.ops.joyvasa.apply_motion, filepath=str(bad))
    assert res == {"CANCELLED"} and "not a JoyVASA motion file" in msg
    assert scene_fingerprint() == before


@pytest.mark.parametrize("warm", [True, False])
def test_generate_motion_with_fake_engine(scene, speech_wav, tmp_path, monkeypatch, warm):
    log = tmp_path / "argv.jsonl"
    monkeypatch.setenv("JOYVASA_FAKE_ARGV_LOG", str(log))
    bpy.context.preferences.addons[MODULE].preferences.keep_warm = warm
    st = scene.joyvasa
    st.audio_path, st.start_frame, st.seed, st.sampler, st.steps = str(speech_wav), 3, 11, "dpmpp_2m", 12
    st.output_dir = str(tmp_path / "out")
    assert bpy.ops.joyvasa.generate_motion() == {"FINISHED"}
    runtime = addon("runtime")
    assert runtime.LAST.state == "done" and runtime.CURRENT is None
    argv = logged_commands(log)[0]
    assert argv[0] == "motion" and argv[argv.index("--seed") + 1] == "11"
    assert argv[argv.index("--sampler") + 1] == "dpmpp_2m"
    if not warm:   # one-shot: `engine run --job - --progress json`, the job on stdin (the warm request's JSON)
        import json
        assert json.loads(log.read_text().splitlines()[0]) == ["run", "--job", "-", "--progress", "json"]
    else:  # a second take is a request to the same warm engine process
        st.seed = 12
        assert bpy.ops.joyvasa.generate_motion() == {"FINISHED"}
        assert engine_processes(log) == 1 and len(logged_commands(log)) == 2
        assert runtime.WORKER is not None and runtime.WORKER.alive()
        assert bpy.ops.joyvasa.engine_release() == {"FINISHED"}
        assert bpy.ops.joyvasa.engine_stop() == {"FINISHED"} and not runtime.WORKER.alive()
    bpy.context.preferences.addons[MODULE].preferences.keep_warm = True
    assert Path(st.motion_path).exists() and st.motion_path.startswith(str(tmp_path / "out"))
    rig = bpy.data.objects["Rig"]
    assert len(curve(rig, 'pose.bones["head"].rotation_quaternion')) == 48
    assert curve(rig, 'pose.bones["head"].rotation_quaternion')[0, 0] == 3


@pytest.mark.parametrize("transcript,needle", [("error_weights", "weights not found"),
                                               ("crash", "simulated segfault")])
def test_failed_run_changes_nothing_and_shows_stderr(scene, speech_wav, tmp_path, monkeypatch, transcript, needle):
    monkeypatch.setenv("JOYVASA_FAKE_TRANSCRIPT", transcript)
    st = scene.joyvasa
    st.audio_path, st.output_dir = str(speech_wav), str(tmp_path)
    before = scene_fingerprint()
    res, msg = run_op(bpy.ops.joyvasa.generate_motion)
    assert res == {"CANCELLED"}
    last = addon("runtime").LAST
    assert last.state == "failed" and needle in last.message and needle in msg
    tail = "Traceback" if transcript == "crash" else "looking for weights"
    assert tail in last.report_text() and tail in msg          # the stderr tail is in the report
    assert scene_fingerprint() == before


def test_hang_is_cancelled_and_changes_nothing(scene, speech_wav, tmp_path, monkeypatch):
    monkeypatch.setenv("JOYVASA_FAKE_TRANSCRIPT", "hang")
    st = scene.joyvasa
    st.audio_path, st.output_dir = str(speech_wav), str(tmp_path)
    before = scene_fingerprint()
    runtime = addon("runtime")

    def press_cancel():
        import time
        for _ in range(200):
            if runtime.CURRENT is not None and runtime.CURRENT.job.stage == "motion":
                break
            time.sleep(0.02)
        time.sleep(0.2)
        runtime.CURRENT.cancel = True      # what the Cancel button / Esc does

    th = threading.Thread(target=press_cancel)
    th.start()
    res, _ = run_op(bpy.ops.joyvasa.generate_motion)
    assert res == {"CANCELLED"}
    th.join()
    assert runtime.LAST.state == "cancelled" and runtime.LAST.returncode == 130
    assert scene_fingerprint() == before


def test_missing_interpreter_is_a_clear_error(scene, speech_wav, monkeypatch, tmp_path):
    monkeypatch.setenv("JOYVASA_ENGINE_PYTHON", str(tmp_path / "nope"))
    monkeypatch.setenv("PATH", str(tmp_path))
    prefs = bpy.context.preferences.addons[MODULE].preferences
    prefs.engine_python = str(tmp_path / "also_missing")
    scene.joyvasa.audio_path = str(speech_wav)
    try:
        # a preference that is set but wrong is named (never silently replaced by another Python)
        cfg = addon("engine_setup").engine_config()
        assert cfg.python is None and "Engine Python" in cfg.error and "also_missing" in cfg.error
        res, msg = run_op(bpy.ops.joyvasa.generate_motion)
        assert res == {"CANCELLED"} and "Engine Python is set to" in msg
        prefs.engine_python = ""
        cfg = addon("engine_setup").engine_config()
        assert "JOYVASA_ENGINE_PYTHON" in cfg.error and "nope" in cfg.error
        monkeypatch.delenv("JOYVASA_ENGINE_PYTHON")
        cfg = addon("engine_setup").engine_config()
        assert cfg.python is None and "no engine Python found" in cfg.error
        res, msg = run_op(bpy.ops.joyvasa.generate_motion)
        assert res == {"CANCELLED"} and "no engine Python found" in msg
    finally:
        prefs.engine_python = ""


def test_check_engine_runs_doctor(scene):
    assert bpy.ops.joyvasa.check_engine() == {"FINISHED"}
    doc = addon("runtime").DOCTOR
    assert doc["ok"] and any("Devices: cpu" in line for line in doc["text"]), doc
    assert any("engine fake" in line for line in doc["text"])


def test_check_engine_says_synthetic(scene, monkeypatch):
    monkeypatch.setenv("JOYVASA_FAKE_SYNTHETIC", "1")
    assert bpy.ops.joyvasa.check_engine() == {"FINISHED"}
    doc = addon("runtime").DOCTOR
    assert doc["ok"] and doc["synthetic"]
    assert "synthetic weights: random numbers, not a face" in doc["text"][1]     # after the Python line


def test_render_adds_strips_at_start_frame(scene, speech_wav, tmp_path, monkeypatch):
    st = scene.joyvasa
    st.audio_path, st.start_frame, st.output_dir = str(speech_wav), 10, str(tmp_path)
    st.portrait_source = "IMAGE"
    st.portrait_image = bpy.data.images.new("Portrait", 32, 32)          # generated: saved to a temp PNG
    log = tmp_path / "argv.jsonl"
    monkeypatch.setenv("JOYVASA_FAKE_ARGV_LOG", str(log))
    assert bpy.ops.joyvasa.render_portrait() == {"FINISHED"}, addon("runtime").LAST.report_text()
    argv = logged_commands(log)[0]
    assert argv[0] == "animate" and float(argv[argv.index("--fps") + 1]) == 24.0
    assert Path(argv[argv.index("--image") + 1]).exists()
    assert "--animal" not in argv and "--preview" not in argv
    assert "--no-normalize-lip" not in argv                      # upstream's app default: on
    edit = bpy.data.scenes[scene.name + " JoyVASA Edit"]          # strips go to the sequencer scene
    assert scene.joyvasa.sequencer_scene == edit and not _strips(scene)
    se = edit.sequence_editor
    strips = list(se.strips_all if hasattr(se, "strips_all") else se.sequences_all)
    movie = [s for s in strips if s.type == 'MOVIE']
    assert len(movie) == 1 and addon("compat").strip_content_start(movie[0]) == 10
    assert addon("compat").strip_duration(movie[0]) == 48                # 2 s at 24 fps
    sound = [s for s in strips if s.type == 'SOUND']
    if HAS_SOUND:
        assert len(sound) == 1 and addon("compat").strip_content_start(sound[0]) == 10 and sound[0].channel != movie[0].channel
        assert abs(addon("compat").strip_duration(sound[0]) - 48) <= 1
    else:
        assert not sound
    assert edit.frame_end == 10 + 48 - 1 and edit.render.fps == scene.render.fps
    assert (edit.render.resolution_x, edit.render.resolution_y) == (64, 64)   # the clip's size
    # a second render lands on free channels, frame_end never shrinks
    edit.frame_end = 500
    assert bpy.ops.joyvasa.render_portrait() == {"FINISHED"}
    strips2 = list(se.strips_all if hasattr(se, "strips_all") else se.sequences_all)
    chans = sorted(s.channel for s in strips2)
    assert len(set(chans)) == len(chans) and edit.frame_end == 500


@pytest.mark.skipif(not HAS_SOUND, reason="the bpy 4.2.23 wheel has no audio support (no sound strips)")
def test_sound_strip_as_audio_source(scene, speech_wav, tmp_path):
    coll = addon("compat").strips_collection(scene)
    strip = coll.new_sound(name="Speech", filepath=str(speech_wav), channel=3, frame_start=30)
    st = scene.joyvasa
    st.audio_source, st.audio_strip, st.output_dir = "STRIP", strip.name, str(tmp_path)
    assert bpy.ops.joyvasa.generate_motion() == {"FINISHED"}
    rig = bpy.data.objects["Rig"]
    assert curve(rig, 'pose.bones["head"].rotation_quaternion')[0, 0] == 30


def _strips(scene) -> list:
    se = scene.sequence_editor
    return [] if se is None else list(se.strips_all if hasattr(se, "strips_all") else se.sequences_all)


def test_render_never_changes_what_f12_renders(scene, speech_wav, tmp_path, portrait_png):
    """The 3D scene's render.use_sequencer result and strip list are untouched; strips land in the
    sequencer scene. The 3D scene here already has a Sequencer (a colour strip, use_sequencer off)."""
    coll = addon("compat").strips_collection(scene)
    own = coll.new_effect(name="Mine", type='COLOR', channel=1, frame_start=1, **(
        {"length": 10} if bpy.app.version >= (5, 0, 0) else {"frame_end": 11}))
    scene.render.use_sequencer = False
    before = (scene.render.use_sequencer, [(s.name, s.type, s.channel, addon("compat").strip_left(s)) for s in _strips(scene)],
              scene.frame_end)
    st = scene.joyvasa
    st.audio_path, st.start_frame, st.output_dir = str(speech_wav), 1, str(tmp_path)
    st.portrait_path = str(portrait_png)
    assert bpy.ops.joyvasa.render_portrait() == {"FINISHED"}, addon("runtime").LAST.report_text()
    after = (scene.render.use_sequencer, [(s.name, s.type, s.channel, addon("compat").strip_left(s)) for s in _strips(scene)],
             scene.frame_end)
    assert after == before and own.name == "Mine"
    edit = st.sequencer_scene
    assert edit is not None and edit != scene
    assert [s.type for s in _strips(edit)].count('MOVIE') == 1
    # a scene the user picks receives the strips instead
    mine = bpy.data.scenes.new("My Edit")
    st.sequencer_scene = mine
    assert bpy.ops.joyvasa.render_portrait() == {"FINISHED"}
    assert [s.type for s in _strips(mine)].count('MOVIE') == 1 and len(_strips(edit)) in (1, 2)
    assert after == (scene.render.use_sequencer, [(s.name, s.type, s.channel, addon("compat").strip_left(s))
                                                  for s in _strips(scene)], scene.frame_end)


@pytest.mark.skipif(not HAS_SOUND, reason="the bpy 4.2.23 wheel has no audio support (no sound strips)")
def test_sound_strip_source_is_reused_not_duplicated(scene, speech_wav, tmp_path, portrait_png):
    edit = bpy.data.scenes.new("Edit")
    st = scene.joyvasa
    st.sequencer_scene = edit
    strip = addon("compat").strips_collection(edit).new_sound(name="Speech", filepath=str(speech_wav), channel=1,
                                                              frame_start=30)
    st.audio_source, st.audio_strip, st.output_dir = "STRIP", strip.name, str(tmp_path)
    st.portrait_path = str(portrait_png)
    assert bpy.ops.joyvasa.render_portrait() == {"FINISHED"}, addon("runtime").LAST.report_text()
    sounds = [s for s in _strips(edit) if s.type == 'SOUND']
    movies = [s for s in _strips(edit) if s.type == 'MOVIE']
    assert [s.name for s in sounds] == ["Speech"]
    assert len(movies) == 1 and addon("compat").strip_content_start(movies[0]) == 30 and movies[0].channel != 1
    assert "reused its sound strip" in addon("runtime").LAST.message
    assert not addon("runtime").LAST.warnings                     # lengths agree (2 s at 24 fps)


def test_strip_length_is_verified_against_the_audio(scene, speech_wav, tmp_path, portrait_png):
    """Strips whose length disagrees with the audio in the sequencer scene (here: a scene at another
    frame rate) are reported; a truncated file is refused before any strip is added."""
    st = scene.joyvasa
    st.audio_path, st.output_dir, st.portrait_path = str(speech_wav), str(tmp_path), str(portrait_png)
    other = bpy.data.scenes.new("Edit 48")
    other.render.fps, other.render.fps_base = 48, 1
    st.sequencer_scene = other
    assert bpy.ops.joyvasa.render_portrait() == {"FINISHED"}, addon("runtime").LAST.report_text()
    warnings = " ".join(addon("runtime").LAST.warnings)
    assert "video strip is 48 frames but the audio lasts 96 at 48 fps in Edit 48" in warnings, warnings
    import os
    os.environ["JOYVASA_FAKE_VIDEO_SECONDS"] = "1"                 # a 1 s video for 2 s of audio
    try:
        res, msg = run_op(bpy.ops.joyvasa.render_portrait)
    finally:
        del os.environ["JOYVASA_FAKE_VIDEO_SECONDS"]
    assert res == {"CANCELLED"} and "was not added" in msg, msg
    assert len([s for s in _strips(other) if s.type == 'MOVIE']) == 1 and not _strips(scene)


def test_outputs_beside_saved_blend_and_visible_folder_when_unsaved(scene, speech_wav, tmp_path, portrait_png):
    prefs = bpy.context.preferences.addons[MODULE].preferences
    st = scene.joyvasa
    st.audio_path, st.portrait_path, st.output_dir = str(speech_wav), str(portrait_png), ""
    prefs.unsaved_output_dir = str(tmp_path / "unsaved")
    try:
        assert addon("apply_media").output_dir(bpy.context) == tmp_path / "unsaved"   # never saved
        blend = tmp_path / "shot" / "shot.blend"
        blend.parent.mkdir()
        bpy.ops.wm.save_as_mainfile(filepath=str(blend))
        assert bpy.ops.joyvasa.render_portrait() == {"FINISHED"}, addon("runtime").LAST.report_text()
        video = Path(bpy.context.scene.joyvasa.last_video)
        assert video.parent == blend.parent / "joyvasa" and video.is_file()       # //joyvasa/ by default
        assert bpy.ops.joyvasa.open_output_folder() == {"FINISHED"}
    finally:
        prefs.unsaved_output_dir = ""


def test_animal_and_preview_are_passed_to_the_engine(scene, speech_wav, tmp_path, portrait_png, monkeypatch):
    st = scene.joyvasa
    st.audio_path, st.portrait_path, st.output_dir, st.animal = str(speech_wav), str(portrait_png), str(tmp_path), True
    log = tmp_path / "argv.jsonl"
    monkeypatch.setenv("JOYVASA_FAKE_ARGV_LOG", str(log))
    assert bpy.ops.joyvasa.render_preview() == {"FINISHED"}, addon("runtime").LAST.report_text()
    argv = logged_commands(log)[0]
    assert argv[0] == "animate" and "--animal" in argv and "--preview" in argv
    assert Path(argv[argv.index("--out") + 1]).name.startswith("preview_")
    st.animal, st.normalize_lip = False, False                    # Close Open Lips off
    assert bpy.ops.joyvasa.render_preview() == {"FINISHED"}, addon("runtime").LAST.report_text()
    argv = logged_commands(log)[-1]
    assert "--no-normalize-lip" in argv and "--animal" not in argv
    assert st.sequencer_scene is None and not _strips(scene)       # a preview adds no strips
