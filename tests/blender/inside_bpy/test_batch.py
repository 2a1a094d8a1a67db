"""tools/batch.py under the bpy module (background mode): jobs, logs, saved .blend, exit codes,
skipping finished jobs on a re-run."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import bpy

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
