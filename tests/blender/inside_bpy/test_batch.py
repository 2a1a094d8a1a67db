"""tools/batch.py under the bpy module (background mode): jobs, logs, saved .blend, exit codes,
skipping finished jobs on a re-run."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import bpy
import numpy as np
import pytest

from conftest import REPO, TESTS, write_wav

GOLDEN = TESTS / "contract" / "motion_v1.npz"


def run_batch(blend, jobs, env_extra, *extra):
    env = {**os.environ, **env_extra}
    env.pop("JOYVASA_INSIDE_BPY", None)
    return subprocess.run([sys.executable, str(REPO / "tools" / "batch.py"), "--blend", str(blend), "--jobs", str(jobs),
                           *extra], capture_output=True, text=True, timeout=300, env=env, cwd=str(REPO))


def test_batch_runs_saves_skips_and_fails(scene, fake_python, tmp_path):
    blend = tmp_path / "shot.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    write_wav(tmp_path / "line.wav", seconds=1.0)
    jobs = tmp_path / "jobs.json"
    jobs.write_text(json.dumps({"defaults": {"rig": "Rig", "mesh": "Face", "channels": "EMPTY", "output_dir": "out"},
                                "jobs": [{"name": "golden", "motion": str(GOLDEN), "start_frame": 1},
                                         {"name": "generated", "audio": "line.wav", "start_frame": 100, "seed": 5}]}))
    env = {"JOYVASA_ENGINE_PYTHON": fake_python}
    cp = run_batch(blend, jobs, env)
    out = cp.stdout + cp.stderr
    assert cp.returncode == 0, out[-4000:]
    logs = tmp_path / "jobs_logs"
    assert (logs / "golden.log").exists() and (logs / "generated.log").exists()
    assert "ok in" in (logs / "generated.log").read_text()
    # the saved .blend has both takes
    bpy.ops.wm.open_mainfile(filepath=str(blend))
    takes = [a for a in bpy.data.actions if a.get("joyvasa_take")]
    starts = {a.get("joyvasa_start_frame") for a in takes}
    assert starts == {1, 100}          # the golden take and the generated one (the fake replays seed 7's file)
    rig = bpy.data.objects["Rig"]
    assert rig.animation_data.action.get("joyvasa_start_frame") == 100
    # a re-run skips both
    cp = run_batch(blend, jobs, env)
    assert cp.returncode == 0 and cp.stdout.count("already done, skipped") == 2, cp.stdout[-3000:]
    # a failing job -> exit 1, the others are still skipped
    data = json.loads(jobs.read_text())
    data["jobs"].append({"name": "broken", "audio": "missing.wav"})
    jobs.write_text(json.dumps(data))
    cp = run_batch(blend, jobs, env)
    assert cp.returncode == 1, cp.stdout[-3000:]
    assert "1 failed: broken" in cp.stdout and cp.stdout.count("skipped") >= 2
    assert "audio file not found" in (logs / "broken.log").read_text()


def test_batch_bad_arguments_exit_2(scene, tmp_path):
    cp = subprocess.run([sys.executable, str(REPO / "tools" / "batch.py"), "--jobs"], capture_output=True, text=True,
                        timeout=120, env={k: v for k, v in os.environ.items() if k != "JOYVASA_INSIDE_BPY"})
    assert cp.returncode == 2


def test_batch_checks_every_job_before_running_any(scene, fake_python, tmp_path):
    """Job 2's portrait cannot be framed: the batch fails before job 1's work is saved, job 2's log
    has the engine's message; after a fix the batch runs, and a job that fails while running keeps
    nothing in the saved .blend. Jobs without 'channels' get the panel's value."""
    import shutil

    blend = tmp_path / "shot.blend"
    bpy.context.scene.joyvasa.channels_target = "EMPTY"      # the panel's default
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    write_wav(tmp_path / "line.wav", seconds=1.0)
    shutil.copy(REPO / "examples" / "portrait.jpg", tmp_path / "face.jpg")
    shutil.copy(REPO / "examples" / "portrait.jpg", tmp_path / "noface.jpg")
    jobs = tmp_path / "jobs.json"
    first = {"name": "first", "audio": "line.wav", "rig": "Rig", "start_frame": 1}
    second = {"name": "second", "audio": "line.wav", "portrait": "noface.jpg", "render": True, "output_dir": "out"}
    jobs.write_text(json.dumps([first, second]))
    env = {"JOYVASA_ENGINE_PYTHON": fake_python}
    cp = run_batch(blend, jobs, env)
    assert cp.returncode == 1, (cp.stdout + cp.stderr)[-3000:]
    assert "checks failed: no job was run" in cp.stdout
    log2 = (tmp_path / "jobs_logs" / "second.log").read_text()
    assert "cannot be framed" in log2 and "no_face" in log2 and "no face found" in log2
    assert not (tmp_path / "jobs_logs" / "first.log").exists()
    bpy.ops.wm.open_mainfile(filepath=str(blend))
    assert not [a for a in bpy.data.actions if a.get("joyvasa_take")]          # job 1 never ran
    # fixed portrait; job 2 now fails while running (its video is truncated, so the render is refused
    # after its motion was keyed at frame 50): that take must not reach the saved .blend
    second.update(portrait="face.jpg", rig="Rig", start_frame=50)
    jobs.write_text(json.dumps([first, second]))
    cp = run_batch(blend, jobs, {**env, "JOYVASA_FAKE_VIDEO_SECONDS": "0.2"})
    assert cp.returncode == 1 and "1 done, 0 skipped, 1 failed: second" in cp.stdout, (cp.stdout + cp.stderr)[-3000:]
    log2 = (tmp_path / "jobs_logs" / "second.log").read_text()
    assert "render_portrait: {'CANCELLED'}" in log2 and "was not added" in log2 and "reopened" in log2, log2
    bpy.ops.wm.open_mainfile(filepath=str(blend))
    takes = {a.get("joyvasa_start_frame") for a in bpy.data.actions if a.get("joyvasa_take")}
    assert takes == {1}, takes                                     # job 1's take only
    # job 1 gave a rig but no 'channels': the panel's value (EMPTY) applies, as in the panel
    assert bpy.data.objects.get("JoyVASA Motion") is not None


def test_batch_log_has_engine_warnings_and_stderr_tail(scene, fake_python, tmp_path):
    blend = tmp_path / "shot.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    write_wav(tmp_path / "line.wav", seconds=1.0)
    jobs = tmp_path / "jobs.json"
    jobs.write_text(json.dumps([{"name": "warned", "audio": "line.wav", "rig": "Rig"}]))
    transcript = tmp_path / "warn_then_crash.jsonl"
    transcript.write_text("\n".join(json.dumps(e) for e in [
        {"type": "hello", "engine_version": "fake", "protocol": [1, 0], "device": "cpu", "dtype": "float32",
         "command": "motion"},
        {"type": "warning", "code": "synthetic_weights", "message": "synthetic weights: random numbers, not a face"},
        {"_fake": "stderr", "text": "Traceback: the engine's own last words"},
        {"_fake": "exit", "code": 1}]) + "\n")
    cp = run_batch(blend, jobs, {"JOYVASA_ENGINE_PYTHON": fake_python, "JOYVASA_FAKE_TRANSCRIPT": str(transcript)})
    assert cp.returncode == 1, (cp.stdout + cp.stderr)[-3000:]
    log = (tmp_path / "jobs_logs" / "warned.log").read_text()
    assert "engine warning" in log and "random numbers, not a face" in log, log
    assert "the engine's own last words" in log, log


def test_batch_jobs_share_one_warm_engine(scene, fake_python, tmp_path):
    """Two generated jobs: one engine process (the warm worker), two requests."""
    from conftest import engine_processes, logged_commands

    blend = tmp_path / "shot.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    write_wav(tmp_path / "line.wav", seconds=1.0)
    jobs = tmp_path / "jobs.json"
    jobs.write_text(json.dumps({"defaults": {"rig": "Rig", "output_dir": "out"},
                                "jobs": [{"name": "a", "audio": "line.wav", "start_frame": 1, "seed": 1},
                                         {"name": "b", "audio": "line.wav", "start_frame": 60, "seed": 2}]}))
    log = tmp_path / "argv.jsonl"
    cp = run_batch(blend, jobs, {"JOYVASA_ENGINE_PYTHON": fake_python, "JOYVASA_FAKE_ARGV_LOG": str(log)})
    assert cp.returncode == 0, (cp.stdout + cp.stderr)[-4000:]
    assert engine_processes(log) == 1 and [c[0] for c in logged_commands(log)] == ["motion", "motion"]
    assert "2 request(s), 1 engine start(s)" in cp.stdout


def _engine_edit(engine_python: str, motion, controls: dict, out, tmp_path) -> None:
    """The real ``engine edit`` (torch-free) writes an edited take, as Re-apply Controls would."""
    cfile = tmp_path / (out.stem + ".controls.json")
    cfile.write_text(json.dumps(controls))
    env = {k: v for k, v in os.environ.items() if k != "JOYVASA_INSIDE_BPY"}
    env["PYTHONPATH"] = str(REPO)
    cp = subprocess.run([engine_python, "-m", "engine", "edit", "--motion", str(motion), "--controls", str(cfile),
                         "--out", str(out)], capture_output=True, text=True, timeout=120, env=env, cwd=str(REPO))
    assert cp.returncode == 0, cp.stderr[-3000:]


def test_batch_applies_an_edited_take_as_it_is(scene, fake_python, tmp_path):
    """issue 19: a motion job naming a file that `engine edit` produced, in a scene whose controls are
    neutral, keys the file as it is (its mouth track and blinks), not its raw motion; the panel then
    shows the file's controls, so what the panel shows is what the keys hold."""
    from conftest import ENGINE_PY, addon

    edited, raw = tmp_path / "edited.npz", tmp_path / "raw.npz"
    controls = {"version": 1, "expression_offset": {"mouth_open": 0.8}, "lip_gain": 1.5,
                "blink": {"rate_per_min": 30, "duration_s": 0.2, "seed": 3}}
    _engine_edit(ENGINE_PY, GOLDEN, controls, edited, tmp_path)
    _engine_edit(ENGINE_PY, edited, {"version": 1}, raw, tmp_path)        # neutral controls: the raw motion
    mc = addon("core.motion_core")
    want, base = (mc.resample(mc.load_motion(p), 24.0).exp.reshape(-1, 63) for p in (edited, raw))
    assert np.abs(want - base).max() > 0.05                               # the edit is visible in the arrays

    blend = tmp_path / "shot.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    jobs = tmp_path / "jobs.json"
    jobs.write_text(json.dumps([{"name": "edited", "motion": str(edited), "rig": "Rig", "mesh": "Face",
                                 "channels": "EMPTY", "start_frame": 1}]))
    cp = run_batch(blend, jobs, {"JOYVASA_ENGINE_PYTHON": fake_python})
    assert cp.returncode == 0, (cp.stdout + cp.stderr)[-4000:]
    bpy.ops.wm.open_mainfile(filepath=str(blend))
    ctrl = bpy.data.objects["JoyVASA Motion"]
    fc = addon("compat").find_fcurve(ctrl, '["exp_58"]', 0)
    keyed = np.array([kp.co[1] for kp in fc.keyframe_points])
    assert np.allclose(keyed, want[:, 58], atol=1e-5), float(np.abs(keyed - want[:, 58]).max())
    act = bpy.data.objects["Rig"].animation_data.action
    assert Path(act["joyvasa_motion"]) == edited and json.loads(act["joyvasa_controls"])["lip_gain"] == 1.5
    st = bpy.context.scene.joyvasa                                         # the panel shows the file's controls
    assert st.lip_strength == pytest.approx(1.5) and st.mouth_open == pytest.approx(0.8) and st.blink
    assert st.blink_rate == pytest.approx(30) and st.blink_seed == 3
