"""Controls end to end on tiny synthetic weights: ``motion --controls`` == ``motion`` + ``edit``, and
a keyed gain track reaches the rendered video's driving keypoints (``animate --save-driving``)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine_testkit import PORTRAIT, engine_env, speech_clip  # tiny_weights: tests/engine/conftest.py

REPO = Path(__file__).resolve().parents[2]


def _engine(*args: str, timeout: float = 300) -> tuple[int, list[dict], str]:
    proc = subprocess.run([sys.executable, "-m", "engine", *args, "--progress", "json"], capture_output=True,
                          text=True, timeout=timeout, env=engine_env(), cwd=REPO, stdin=subprocess.DEVNULL)
    return proc.returncode, [json.loads(x) for x in proc.stdout.splitlines() if x.strip()], proc.stderr


@pytest.mark.slow
def test_motion_with_controls_equals_motion_then_edit(tiny_weights: Path, tmp_path: Path) -> None:
    audio = speech_clip(tmp_path, 1.2)
    controls = tmp_path / "c.json"
    controls.write_text(json.dumps({"version": 1, "head_gain": [0.0] * 15 + [1.0] * 15,
                                    "blink": {"rate_per_min": 30, "seed": 4}, "silence": {"calm_head": True},
                                    "expression_offset": {"smile": 0.3}}))
    common = ["--audio", str(audio), "--weights", str(tiny_weights), "--sampler", "ddim", "--steps", "2"]
    rc, _, err = _engine("motion", *common, "--out", str(tmp_path / "raw.npz"))
    assert rc == 0, err
    rc, _, err = _engine("motion", *common, "--out", str(tmp_path / "directed.npz"), "--controls", str(controls))
    assert rc == 0, err
    rc, _, err = _engine("edit", "--motion", str(tmp_path / "raw.npz"), "--controls", str(controls),
                         "--out", str(tmp_path / "edited.npz"))
    assert rc == 0, err
    with np.load(tmp_path / "raw.npz") as r, np.load(tmp_path / "directed.npz") as d, np.load(tmp_path / "edited.npz") as e:
        assert set(d.files) == set(e.files) and "raw_exp" in d.files and "vad_db" in r.files
        for k in d.files:
            np.testing.assert_array_equal(d[k], e[k], err_msg=k)
        for k in ("exp", "yaw", "R"):
            np.testing.assert_array_equal(d[f"raw_{k}"], r[k])
        assert np.ptp(d["yaw"][2:16]) < 1e-5 and np.ptp(r["yaw"][2:16]) > 0


@pytest.mark.slow
def test_keyed_gain_track_reaches_the_driving_keypoints(tiny_weights: Path, tmp_path: Path) -> None:
    audio = speech_clip(tmp_path, 1.2)                        # 30 rendered frames at 25 fps
    rc, _, err = _engine("motion", "--audio", str(audio), "--weights", str(tiny_weights), "--sampler", "ddim",
                         "--steps", "2", "--out", str(tmp_path / "m.npz"))
    assert rc == 0, err
    controls = tmp_path / "c.json"
    track = [0.0] * 15 + [1.0] * 15
    controls.write_text(json.dumps({"head_gain": track, "expression_gain": track}))
    base = ["--image", str(PORTRAIT), "--audio", str(audio), "--motion", str(tmp_path / "m.npz"),
            "--weights", str(tiny_weights), "--no-pasteback", "--batch", "8"]
    rc, ev, err = _engine("animate", *base, "--frames-dir", str(tmp_path / "f0"), "--save-driving", str(tmp_path / "kp0.npy"))
    assert rc == 0, err
    rc, ev, err = _engine("animate", *base, "--frames-dir", str(tmp_path / "f1"), "--controls", str(controls),
                          "--save-driving", str(tmp_path / "kp1.npy"))
    assert rc == 0, err
    assert any(e["type"] == "artifact" and e["kind"] == "driving_keypoints" for e in ev)
    kp0, kp1 = np.load(tmp_path / "kp0.npy"), np.load(tmp_path / "kp1.npy")
    assert kp0.shape == kp1.shape == (30, 21, 3)
    assert np.abs(kp1[:15] - kp1[0]).max() < 1e-5            # still while the gain is 0
    assert np.abs(kp0[:15] - kp0[0]).max() > 1e-4            # (the raw motion moves there)
    np.testing.assert_allclose(kp1[15:], kp0[15:], atol=1e-4)  # upstream's motion once the gain is 1


def test_bad_controls_fail_before_any_work(tmp_path: Path) -> None:
    (tmp_path / "c.json").write_text('{"head_gain": {"pitch": -1}}')
    rc, ev, _ = _engine("animate", "--image", str(PORTRAIT), "--motion", str(REPO / "tests/contract/motion_v1.npz"),
                        "--frames-dir", str(tmp_path / "f"), "--controls", str(tmp_path / "c.json"),
                        "--weights", str(tmp_path / "no_weights"))
    assert rc == 1 and ev[-1]["type"] == "error" and ev[-1]["code"] == "bad_request"
    assert "head_gain.pitch" in ev[-1]["message"] and not (tmp_path / "f").exists()
    rc, ev, _ = _engine("animate", "--image", str(PORTRAIT), "--motion", str(REPO / "tests/contract/motion_v1.npz"),
                        "--frames-dir", str(tmp_path / "f"), "--save-driving", str(tmp_path / "kp.txt"),
                        "--weights", str(tmp_path / "no_weights"))
    assert rc == 1 and ev[-1]["code"] == "bad_request" and "--save-driving" in ev[-1]["message"]


def test_warm_worker_requests_and_batch_jobs_carry_the_controls() -> None:
    """``serve`` requests and batch jobs are the job's wire form: `controls` and `save_driving`
    reach the job configs the pipelines read."""
    from engine.errors import BadRequest
    from engine.jobs import job_from_dict

    job = job_from_dict({"image": "p.png", "motion": "m.npz", "frames_dir": "f", "controls": "c.json",
                         "save_driving": "kp.npy", "pose_strength": 0.5}, "animate")
    assert (job.controls, job.save_driving, job.render.pose_strength) == ("c.json", "kp.npy", 0.5)
    job = job_from_dict({"audio": "a.wav", "out": "m.npz", "controls": "c.json"}, "motion")
    assert job.controls == "c.json"
    with pytest.raises(BadRequest, match="--save-driving"):
        job_from_dict({"image": "p.png", "motion": "m.npz", "frames_dir": "f", "save_driving": "kp.txt"}, "animate")
