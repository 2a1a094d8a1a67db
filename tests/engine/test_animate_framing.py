"""``engine animate`` frames exactly as ``engine crop``: same options, same ``framing`` object (M_c2o
in the file's pixels even when the picture is larger than the 1280 px paste-back canvas), and the
animal fallback warns instead of failing."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
PORTRAIT = REPO / "examples" / "portrait.jpg"


def _engine(command: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    env.pop("JOYVASA_WEIGHTS", None)
    return subprocess.run([sys.executable, "-m", "engine", command, *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=REPO, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def big_portrait(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """examples/portrait.jpg enlarged to 2000x2000: bigger than the 1280 px paste-back canvas."""
    img = cv2.imread(str(PORTRAIT))
    path = tmp_path_factory.mktemp("big") / "big.png"
    cv2.imwrite(str(path), cv2.resize(img, (2000, 2000), interpolation=cv2.INTER_CUBIC))
    return path


@pytest.mark.slow
def test_animate_frames_like_crop_with_points_and_scale(tiny_weights: Path, big_portrait: Path,
                                                         tmp_path: Path) -> None:
    # eyes and mouth of the enlarged portrait, in its own pixels (x 6.25 of the 320 px original)
    pts = "points:879,597,1151,613,1003,845"
    framing = ["--crop", pts, "--scale", "2.6", "--vy", "-0.1"]
    crop = _engine("crop", "--image", str(big_portrait), "--json", *framing)
    assert crop.returncode == 0, crop.stderr
    want = json.loads(crop.stdout)
    frames = tmp_path / "frames"
    motion = REPO / "tests" / "contract" / "motion_v1.npz"
    r = _engine("animate", "--image", str(big_portrait), "--motion", str(motion), "--frames-dir", str(frames),
                "--weights", str(tiny_weights), "--max-frames", "2", "--progress", "json", *framing)
    assert r.returncode == 0, r.stderr[-3000:]
    events = [json.loads(line) for line in r.stdout.splitlines()]
    got = [e for e in events if e["type"] == "framing"]
    assert len(got) == 1
    g = got[0]
    assert g["method"] == "points" and g["image_size"] == [2000, 2000]
    np.testing.assert_allclose(g["M_c2o"], want["M_c2o"], rtol=1e-6)
    assert g["points"] == want["points"] and g["angle_deg"] == want["angle_deg"]
    # paste-back into the 1280 px canvas: the frames have the canvas size
    first = cv2.imread(str(sorted(frames.glob("frame_*.png"))[0]))
    assert first.shape[:2] == (1280, 1280)


@pytest.mark.slow
def test_animate_animal_without_a_face_warns_and_renders(tiny_weights: Path, tmp_path: Path) -> None:
    noise = (np.random.default_rng(0).random((300, 300, 3)) * 40 + 100).astype(np.uint8)
    pic = tmp_path / "noise.png"
    cv2.imwrite(str(pic), noise)
    motion = REPO / "tests" / "contract" / "motion_v1.npz"
    r = _engine("animate", "--image", str(pic), "--motion", str(motion), "--frames-dir", str(tmp_path / "f"),
                "--weights", str(tiny_weights), "--max-frames", "1", "--animal", "--progress", "json")
    assert r.returncode == 0, r.stderr[-3000:]
    events = [json.loads(line) for line in r.stdout.splitlines()]
    assert [e["method"] for e in events if e["type"] == "framing"] == ["fallback"]
    codes = {e["code"] for e in events if e["type"] == "warning"}
    assert "animal_face_not_found" in codes
    # and a human portrait without a face is a clear no_face error naming the fix
    r = _engine("animate", "--image", str(pic), "--motion", str(motion), "--frames-dir", str(tmp_path / "g"),
                "--weights", str(tiny_weights), "--max-frames", "1", "--progress", "json")
    err = [json.loads(line) for line in r.stdout.splitlines() if '"error"' in line][-1]
    assert r.returncode == 1 and err["code"] == "no_face" and "--crop points:" in err["message"]
