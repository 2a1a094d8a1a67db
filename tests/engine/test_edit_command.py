"""``python -m engine edit``: controls re-applied to a motion file's raw arrays, no sampling."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
GOLDEN = REPO / "tests" / "contract" / "motion_v1.npz"
MAIN = ["yaw", "pitch", "roll", "exp", "t", "scale", "R"]


def _edit(motion: Path, controls: dict | Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    if isinstance(controls, dict):
        cpath = out.with_suffix(".json")
        cpath.write_text(json.dumps(controls))
    else:
        cpath = controls
    return subprocess.run([sys.executable, "-m", "engine", "edit", "--motion", str(motion), "--controls", str(cpath),
                           "--out", str(out), "--progress", "json", *extra], cwd=REPO, capture_output=True, text=True,
                          timeout=120)


def _events(cp: subprocess.CompletedProcess) -> list[dict]:
    return [json.loads(line) for line in cp.stdout.splitlines() if line.strip()]


def test_edit_head_gain_zero_keeps_raw_and_controls(tmp_path):
    out = tmp_path / "e.npz"
    cp = _edit(GOLDEN, {"version": 1, "head_gain": 0, "expression_offset": {"smile": 0.3}}, out)
    assert cp.returncode == 0, cp.stderr
    ev = _events(cp)
    assert ev[0]["type"] == "hello" and ev[0]["command"] == "edit" and ev[-1]["type"] == "done"
    assert any(e["type"] == "artifact" and e["path"] == str(out) for e in ev)
    with np.load(GOLDEN) as g, np.load(out) as e:
        assert np.ptp(e["yaw"]) < 1e-5 and np.ptp(g["yaw"]) > 0.1
        for k in MAIN:
            np.testing.assert_array_equal(e[f"raw_{k}"], g[k])
        assert json.loads(str(e["controls"]))["head_gain"] == {"pitch": 0.0, "yaw": 0.0, "roll": 0.0}
        assert int(e["schema_minor"]) == 1 and int(e["schema_version"]) == 1


def test_neutral_controls_give_the_raw_motion_back_and_edits_never_stack(tmp_path):
    first, second, neutral, direct = (tmp_path / f"{n}.npz" for n in ("a", "b", "n", "d"))
    assert _edit(GOLDEN, {"head_gain": 0.5, "blink": {"rate_per_min": 20}}, first).returncode == 0
    assert _edit(first, {"lip_gain": 0.2}, second).returncode == 0          # re-edit the edited file
    assert _edit(GOLDEN, {"lip_gain": 0.2}, direct).returncode == 0
    assert _edit(first, {}, neutral).returncode == 0
    with np.load(GOLDEN) as g, np.load(second) as b, np.load(direct) as d, np.load(neutral) as n:
        for k in MAIN:
            np.testing.assert_array_equal(b[k], d[k])                       # the raw motion + new controls only
            np.testing.assert_array_equal(n[k], g[k])                       # neutral: the raw motion itself
        assert not any(k.startswith("raw_") or k == "controls" for k in n.files)
        assert set(g.files) - set(n.files) == set()


def test_bad_controls_and_missing_voice_track_are_one_error_and_write_nothing(tmp_path):
    out = tmp_path / "x.npz"
    cp = _edit(GOLDEN, {"head_gain": -2}, out)
    ev = _events(cp)
    assert cp.returncode == 1 and ev[-1]["type"] == "error" and ev[-1]["code"] == "bad_request"
    assert "head_gain" in ev[-1]["message"] and not out.exists()
    cp = _edit(GOLDEN, {"silence": {"relax": True}}, out)                   # golden is a 1.0 file: no vad_db
    ev = _events(cp)
    assert cp.returncode == 1 and ev[-1]["code"] == "bad_request" and "--audio" in ev[-1]["message"]
    assert not out.exists()
    cp = _edit(tmp_path / "missing.npz", {}, out)
    assert cp.returncode == 1 and _events(cp)[-1]["code"] == "bad_request"


def test_edit_never_imports_torch(tmp_path):
    """What keeps `engine edit` well under a second: no torch, no audio decoder."""
    (tmp_path / "c.json").write_text(json.dumps({"head_gain": 0.3, "blink": {"rate_per_min": 15}}))
    code = ("import sys; from engine.cli import main\n"
            f"rc = main(['edit', '--motion', {str(GOLDEN)!r}, '--controls', {str(tmp_path / 'c.json')!r}, "
            f"'--out', {str(tmp_path / 'o.npz')!r}])\n"
            "heavy = sorted(m for m in ('torch', 'librosa', 'cv2', 'scipy', 'av') if m in sys.modules)\n"
            "print('HEAVY', heavy); sys.exit(rc)\n")
    cp = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert cp.returncode == 0, cp.stderr
    assert "HEAVY []" in cp.stdout, cp.stdout
