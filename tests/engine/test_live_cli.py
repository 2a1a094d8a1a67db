"""``python -m engine live`` end to end with the real streaming sampler (tiny synthetic weights): a
seeded take is the same whether the file streams at real time or as fast as possible, the events
match the take, and the take is an ordinary take (``engine export`` reads it)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engine.motion.npz import load_motion
from engine_testkit import engine_env, speech_clip

REPO = Path(__file__).resolve().parents[2]


def _engine(*args: str) -> tuple[int, list[dict[str, Any]], str]:
    proc = subprocess.run([sys.executable, "-m", "engine", *args, "--progress", "json"], capture_output=True,
                          text=True, env=engine_env(), cwd=REPO, timeout=300, stdin=subprocess.DEVNULL)
    return proc.returncode, [json.loads(line) for line in proc.stdout.splitlines()], proc.stderr


@pytest.mark.slow
def test_seeded_live_take_is_reproducible_and_exportable(synthetic_tiny_joyvasa: Path, tmp_path: Path) -> None:
    clip = speech_clip(tmp_path, 1.6)
    takes = {}
    for pace in ("fast", "realtime"):
        out = tmp_path / f"{pace}.npz"
        rc, events, err = _engine("live", "--audio", str(clip), "--out", str(out), "--pace", pace, "--seed", "5",
                                  "--hop", "10", "--lookahead", "3", "--weights", str(synthetic_tiny_joyvasa),
                                  "--device", "cpu", "--dtype", "fp32")
        assert rc == 0, err[-2000:]
        frames = [e for e in events if e["type"] == "live_frame"]
        assert [f["frame"] for f in frames] == list(range(len(frames)))
        take = load_motion(out)
        assert take.n_frames == len(frames) and events[-1]["outputs"]["audio_wav"] == str(out.with_suffix(".wav"))
        np.testing.assert_allclose(np.array([f["motion"]["exp"] for f in frames]), take.exp.reshape(-1, 63), atol=1e-6)
        np.testing.assert_allclose([f["t"] for f in frames], float(take.meta["audio_offset_s"])
                                   + np.arange(take.n_frames) / 25.0, atol=1e-6)
        takes[pace] = take
    a, b = takes["fast"], takes["realtime"]
    for key in ("exp", "pitch", "yaw", "roll", "t", "scale"):
        np.testing.assert_allclose(getattr(a, key), getattr(b, key), atol=1e-6, err_msg=key)
    rc, events, err = _engine("export", "--motion", str(tmp_path / "fast.npz"), "--format", "livelinkface-csv",
                              "--out", str(tmp_path / "take.csv"))
    assert rc == 0, err[-2000:]
    from engine.export import export_frames

    rows = (tmp_path / "take.csv").read_text().splitlines()   # the export's audio timeline, as for any take
    assert len(rows) == 1 + export_frames(a).n_frames and export_frames(a).n_frames >= round(1.6 * 25)
