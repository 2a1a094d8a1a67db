"""X-Pose parity with the unmodified upstream code on the vendored tiny reference (seed 0):
``python -m engine parity --reference DIR`` prints one ``XPOSE_*`` line per array, all ``ok``."""
from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine_testkit import REPO


def test_every_reference_array_is_reproduced(xpose_reference: Path) -> None:
    from engine.parity.run import run_parity

    buf = io.StringIO()
    failures = run_parity(xpose_reference, out=buf)
    lines = buf.getvalue().splitlines()
    ref = np.load(xpose_reference / "xpose_reference.npz")
    assert [ln.split()[0] for ln in lines] == [f"XPOSE_{k}" for k in ref.files]
    assert failures == 0, buf.getvalue()
    for ln in lines:
        assert ln.endswith(" input") or " ok" in ln, ln
    assert "XPOSE_kept_index max_abs_err=0.000e+00 tol=exact ok" in lines


def test_production_path_matches_the_reference_too(xpose_reference: Path) -> None:
    """The fast path (unprompted keypoint slots dropped) gives the same logits, boxes and 9 points."""
    import torch

    from engine.framing import xpose
    from engine.framing.xpose_prompts import read_prompt_pickle

    ref = np.load(xpose_reference / "xpose_reference.npz")
    path = xpose_reference / "liveportrait_animals" / "xpose.pth"
    model = xpose.build_from_state_dict(xpose.read_state_dict(path), path)
    ins, kpt = read_prompt_pickle(xpose_reference / "liveportrait_animals" / "clip_embedding_9.pkl")
    out = xpose.run_network(model, torch.from_numpy(ref["input"]), ins, kpt, full_keypoints=False)
    assert out["pred_keypoints"].shape == (1, 50, 27)
    fin = np.isfinite(ref["pred_logits"])
    assert np.array_equal(np.isfinite(out["pred_logits"].numpy()), fin)
    assert np.abs(out["pred_logits"].numpy()[fin] - ref["pred_logits"][fin]).max() < 1e-4 * np.abs(ref["pred_logits"][fin]).max()
    assert np.allclose(out["pred_boxes"].numpy(), ref["pred_boxes"], rtol=1e-4, atol=1e-6)
    assert np.allclose(out["pred_keypoints"].numpy()[..., :18], ref["pred_keypoints"][..., :18], rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_parity_command_line(xpose_reference: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "engine", "parity", "--reference", str(xpose_reference),
                        "--only", "XPOSE_kept,XPOSE_points9"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [ln for ln in r.stdout.splitlines() if ln.endswith(" ok")]
    assert len(r.stdout.splitlines()) == 2 and "parity: 0 failure(s)" in r.stderr


def test_xpose_failures_count_when_the_folder_also_holds_reference_npz(tmp_path: Path, monkeypatch) -> None:
    """A folder with both reference files: the X-Pose failures are part of the total (the driver
    once reset its count before the JoyVASA/LivePortrait lines and reported 0)."""
    from engine.parity import xpose
    from engine.parity.run import run_parity

    np.savez(tmp_path / "reference.npz", some_array=np.zeros(3, np.float32))
    (tmp_path / "xpose_reference.npz").write_bytes(b"")
    monkeypatch.setattr(xpose, "run", lambda ref_dir, only, out: 2)
    assert run_parity(tmp_path, only=["no_such_prefix"], out=io.StringIO()) == 2
