"""X-Pose at official size (synthetic random weights from tools/make_synthetic_weights.py).

One representative runs in CI (write → strict load → a forward pass on a small picture); the
full-size 800-px pass is the benchmark's job (``python -m engine.framing.xpose_bench``), not a test."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from engine_testkit import REPO

pytestmark = pytest.mark.slow


def test_official_size_file_writes_loads_strictly_and_runs(tmp_path: Path) -> None:
    sys.path.insert(0, str(REPO / "tools"))
    try:
        import make_synthetic_weights
    finally:
        sys.path.pop(0)
    assert make_synthetic_weights.main(["--config", "official", "--only", "xpose", "--out", str(tmp_path)]) == 0
    from engine.framing import xpose
    from engine.framing.xpose_model import XPoseConfig
    from engine.framing.xpose_prompts import load_prompts
    from engine.weights import synthetic_info

    path = tmp_path / xpose.XPOSE_FILE
    assert synthetic_info(tmp_path)["parts"]["xpose"]["config"] == "official"
    state = xpose.read_state_dict(path)
    keys = json.loads((REPO / "tests/fixtures/spec/xpose_checkpoint_keys.json").read_text())
    assert {k: list(v.shape) for k, v in state.items()} == {k: v["shape"] for k, v in keys.items()}
    model = xpose.build_from_state_dict(state, path)
    assert model.cfg == XPoseConfig.official()
    assert sum(v.numel() for v in state.values()) > 68_000_000
    ins, kpt = load_prompts(9)
    torch.set_num_threads(1)
    out = xpose.run_network(model, torch.randn(1, 3, 256, 320), ins, kpt)
    assert out["pred_boxes"].shape == (1, 50, 4) and out["pred_keypoints"].shape == (1, 50, 27)
    assert torch.isfinite(out["pred_boxes"]).all() and torch.isfinite(out["pred_logits"][..., 0]).all()
