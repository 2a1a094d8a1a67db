"""``engine batch`` without Ray: job file validation, args -> the command's own options, one warm
worker, results equal to the plain command, skipping finished jobs, a bad job reported while the
others finish, and no ``import ray`` anywhere on this path."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.batch.execute import parse
from engine.errors import BadRequest
from engine_testkit import write_wav

REPO = Path(__file__).resolve().parents[2]
PORTRAIT = REPO / "examples" / "portrait.jpg"


def test_args_become_the_commands_own_options() -> None:
    """Job args are the typed job's wire form (engine/jobs.py), the same as a warm worker's request."""
    job = parse("motion", {"audio": "a.wav", "out": "m.npz", "cfg_scale": 1.5, "smooth": False,
                           "pe": "legacy", "fps": 30})
    m = job.motion
    assert m.cfg_scale == 1.5 and m.smooth is False and m.pe_variant == "legacy" and m.fps == 30
    job = parse("animate", {"image": "p.jpg", "audio": "a.wav", "out": "v.mp4", "frames_dir": "f",
                            "upstream_timing": True, "pose_strength": 0.5, "stitching": False})
    r = job.render
    assert job.frames_dir == "f" and r.upstream_timing is True and r.pose_strength == 0.5 and r.stitching is False
    for command, bad in (("motion", {"audio": "a", "out": "m.npz", "bogus": 1}),
                         ("motion", {"audio": "a", "out": "m.npz", "steps": "many"}),
                         ("motion", {"audio": "a", "out": "m.npz", "smooth": "yes"}),
                         ("doctor", {})):
        with pytest.raises(BadRequest):
            parse(command, bad)


def run_batch(jobs_file: Path, *extra: str) -> tuple[int, list[dict], str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    code = ("import sys; from engine.cli import main; rc = main(sys.argv[1:]); "
            "assert 'ray' not in sys.modules, 'the local batch imported ray'; sys.exit(rc)")
    cp = subprocess.run([sys.executable, "-c", code, "batch", str(jobs_file), "--progress", "json", *extra],
                        capture_output=True, text=True, timeout=600, env=env, cwd=REPO)
    events = [json.loads(line) for line in cp.stdout.splitlines() if line.strip()]
    return cp.returncode, events, cp.stderr


def run_in_process(capsys, jobs_file: Path, *extra: str) -> tuple[int, list[dict]]:
    from engine.cli import main

    capsys.readouterr()
    code = main(["batch", str(jobs_file), "--progress", "json", *extra])
    return code, [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]


def test_local_batch(tmp_path: Path, tiny_weights: Path, capsys) -> None:
    write_wav(tmp_path / "line.wav")
    (tmp_path / "still_head.json").write_text(json.dumps({"version": 1, "head_gain": 0}))
    jobs = tmp_path / "jobs.json"
    jobs.write_text(json.dumps({"defaults": {"command": "motion", "audio": "line.wav"}, "jobs": [
        {"id": "a", "out": "out/a.npz", "seed": 1},
        {"id": "b", "out": "out/b.npz", "seed": 2, "sampler": "ddim", "smooth": False, "dtype": "fp32"},
        {"id": "ctl", "out": "out/ctl.npz", "seed": 1, "controls": "still_head.json"},   # art direction file
        {"id": "bad", "out": "out/bad.npz", "audio": "missing.wav"},
        {"id": "video", "command": "animate", "image": str(PORTRAIT), "motion": "out/a.npz", "out": "out/v.mp4",
         "frames_dir": "out/frames", "crop": "none"},          # uses job a's output: jobs run in file order
    ]}))
    code, events, err = run_batch(jobs, "--weights", str(tiny_weights))
    assert code == 1, err[-3000:]                                  # one job failed
    summary = events[-1]["summary"]
    assert events[0]["type"] == "hello" and events[0]["command"] == "batch"
    assert summary["ok"] == ["a", "b", "ctl", "video"] and [f["id"] for f in summary["failed"]] == ["bad"]
    assert summary["failed"][0]["code"] == "audio_invalid"
    (worker,) = summary["workers"].values()                         # one warm worker ...
    assert worker["jobs"] == 5 and worker["model_loads"]
    assert all(n == 1 for n in worker["model_loads"].values()), worker   # ... loaded each network once
    failed = [e for e in events if e["type"] == "error"]
    assert len(failed) == 1 and failed[0]["job"] == "bad" and failed[0]["fatal"] is False
    assert {e["job"] for e in events if e["type"] == "artifact"} == {"a", "b", "ctl", "video"}
    prog = [e for e in events if e["type"] == "progress" and e["stage"] == "batch"]
    assert prog[-1]["done"] == prog[-1]["total"] == 5 and prog[-1]["eta_s"] == 0
    with np.load(tmp_path / "out" / "ctl.npz") as c, np.load(tmp_path / "out" / "a.npz") as a:
        assert "controls" in c.files                                # same seed as a, head held still
        assert np.ptp(c["yaw"]) < 1e-3 and np.ptp(c["pitch"]) < 1e-3 and np.ptp(a["yaw"]) > 0.1   # no head motion
    assert (tmp_path / "out" / "v.mp4").stat().st_size > 0
    with np.load(tmp_path / "out" / "a.npz") as a:        # the video has the motion's frames (audio timeline)
        assert len(list((tmp_path / "out" / "frames").glob("*.png"))) == round(float(a["audio_duration_s"]) * 25)
    assert any(e["type"] == "progress" and e.get("job") == "a" and e["stage"] == "motion" for e in events)
    assert not (tmp_path / "out" / "bad.npz").exists()

    # same as running the command itself with those options
    from engine.cli import main

    ref = tmp_path / "ref.npz"
    assert main(["motion", "--audio", str(tmp_path / "line.wav"), "--out", str(ref), "--seed", "2", "--sampler",
                 "ddim", "--no-smooth", "--dtype", "fp32", "--weights", str(tiny_weights)]) == 0
    with np.load(ref) as r, np.load(tmp_path / "out" / "b.npz") as b:
        for key in ("exp", "pitch", "yaw", "roll", "t", "scale"):   # other thread count here: rounding only
            np.testing.assert_allclose(r[key], b[key], rtol=1e-5, atol=1e-5)
        assert str(b["sampler"]) == "ddim" and not bool(b["smoothed"]) and str(b["motion_dtype"]) == "float32"

    # re-run: finished jobs are skipped, the bad one is tried again
    mtime = (tmp_path / "out" / "a.npz").stat().st_mtime_ns
    code, events = run_in_process(capsys, jobs, "--weights", str(tiny_weights))
    summary = events[-1]["summary"]
    assert code == 1 and summary["skipped"] == ["a", "b", "ctl", "video"] and summary["ok"] == []
    assert (tmp_path / "out" / "a.npz").stat().st_mtime_ns == mtime
    # a changed job is not "finished"
    data = json.loads(jobs.read_text())
    data["jobs"][0]["seed"] = 5
    del data["jobs"][3]
    jobs.write_text(json.dumps(data))
    code, events = run_in_process(capsys, jobs, "--weights", str(tiny_weights))
    summary = events[-1]["summary"]
    assert code == 0 and summary["ok"] == ["a"] and summary["skipped"] == ["b", "ctl", "video"]


@pytest.mark.parametrize("content, needle", [
    ("{not json", "not readable JSON"),
    (json.dumps([{"command": "render", "out": "x"}]), "\"command\" must be one of"),
    (json.dumps([{"command": "motion"}]), "\"out\""),
    (json.dumps([{"command": "motion", "out": "a.npz", "cfg-scale": 1}]), "long option names"),
    (json.dumps([{"command": "motion", "out": "a.npz", "id": "x"}, {"command": "motion", "out": "b.npz", "id": "x"}]),
     "unique"),
])
def test_bad_job_files(tmp_path: Path, content: str, needle: str, capsys) -> None:
    jobs = tmp_path / "jobs.json"
    jobs.write_text(content)
    code, events = run_in_process(capsys, jobs)
    assert code == 1 and events[-1]["type"] == "error" and events[-1]["code"] == "bad_request"
    assert needle in events[-1]["message"]


def test_ray_missing_is_a_clear_error(tmp_path: Path) -> None:
    """Without the extra, --ray says how to install it (ray made unimportable in the child)."""
    jobs = tmp_path / "jobs.json"
    jobs.write_text(json.dumps([{"command": "motion", "out": "a.npz", "audio": "a.wav"}]))
    code = ("import sys; sys.modules['ray'] = None; from engine.cli import main; "
            "sys.exit(main(sys.argv[1:]))")
    cp = subprocess.run([sys.executable, "-c", code, "batch", str(jobs), "--ray", "auto", "--progress", "json"],
                        capture_output=True, text=True, timeout=120, cwd=REPO,
                        env={**os.environ, "PYTHONPATH": str(REPO)})
    events = [json.loads(line) for line in cp.stdout.splitlines() if line.strip()]
    assert cp.returncode == 1 and events[-1]["type"] == "error" and events[-1]["code"] == "missing_dependency"
    assert "pip install -e '.[ray]'" in events[-1]["message"]
    assert not (tmp_path / "a.npz").exists()
