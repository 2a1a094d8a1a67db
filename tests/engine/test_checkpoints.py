"""Checkpoint loader: refuses unsafe pickles, names the file and the first bad key, strict shapes."""
from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch

from engine.checkpoints import check_state_dict, load_state_dict_strict, safe_torch_load, strip_module_prefix
from engine.errors import OFFICIAL_WEIGHTS_HINT, WeightsCorrupt, WeightsMissing
from engine.models.stage_one import StageOne
from engine.weights import WeightsLayout


class _Evil:
    """Unpickling this would run a shell command that creates a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_that_runs_code_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    bad = tmp_path / "evil.pth"
    with open(bad, "wb") as fh:
        pickle.dump({"weight": _Evil(marker)}, fh)
    with pytest.raises(WeightsCorrupt) as info:
        safe_torch_load(bad, what="test file")
    assert str(bad) in str(info.value) and "refused" in str(info.value)
    assert str(info.value).endswith(OFFICIAL_WEIGHTS_HINT)
    assert not marker.exists()
    # also inside torch's zip container
    bad_zip = tmp_path / "evil_zip.pth"
    torch.save({"weight": _Evil(marker)}, bad_zip)
    with pytest.raises(WeightsCorrupt):
        safe_torch_load(bad_zip)
    assert not marker.exists()


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(WeightsMissing) as info:
        safe_torch_load(tmp_path / "nope.pth", what="LivePortrait warping module")
    assert "nope.pth" in str(info.value) and str(info.value).endswith(OFFICIAL_WEIGHTS_HINT)


def test_truncated_file(tmp_path: Path) -> None:
    path = tmp_path / "model.pth"
    torch.save({"a": torch.randn(1000)}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsCorrupt) as info:
        safe_torch_load(path)
    assert "model.pth" in str(info.value) and "truncated" in str(info.value)


def test_strict_keys_and_shapes() -> None:
    module = torch.nn.Linear(3, 2)
    good = {"weight": torch.zeros(2, 3), "bias": torch.zeros(2)}
    load_state_dict_strict(module, good, "x.pth")
    assert torch.equal(module.weight, torch.zeros(2, 3))
    with pytest.raises(WeightsCorrupt, match="missing key 'bias'"):
        load_state_dict_strict(module, {"weight": torch.zeros(2, 3)}, "x.pth")
    with pytest.raises(WeightsCorrupt, match="unexpected key 'extra'"):
        load_state_dict_strict(module, {**good, "extra": torch.zeros(1)}, "x.pth")
    with pytest.raises(WeightsCorrupt, match=r"'weight' has shape \(3, 3\), expected \(2, 3\)") as info:
        load_state_dict_strict(module, {**good, "weight": torch.zeros(3, 3)}, "x.pth")
    assert "x.pth" in str(info.value) and str(info.value).endswith(OFFICIAL_WEIGHTS_HINT)
    with pytest.raises(WeightsCorrupt, match="does not hold a state dict"):
        check_state_dict({"a": (1,)}, [1, 2], "x.pth")


def test_module_prefix_stripped() -> None:
    assert strip_module_prefix({"module.mlp.0.weight": 1}) == {"mlp.0.weight": 1}


def _copy_reference(src: Path, dst: Path) -> WeightsLayout:
    shutil.copytree(src / "liveportrait", dst / "liveportrait")
    shutil.copy(src / "models.yaml", dst / "models.yaml")
    for p in dst.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    return WeightsLayout(dst)


def test_stage_one_errors_name_file_and_key(tiny_reference: Path, tmp_path: Path) -> None:
    layout = _copy_reference(tiny_reference, tmp_path / "w")
    StageOne.load(layout)  # loads as copied
    # wrong size: official sizes expected (no models.yaml) but tiny tensors on disk
    layout.models_yaml.unlink()
    with pytest.raises(WeightsCorrupt) as info:
        StageOne.load(layout)
    msg = str(info.value)
    assert "appearance_feature_extractor.pth" in msg and "missing key 'resblocks_3d.3dr1.conv1.weight'" in msg
    # same keys, wrong shape: a tiny tensor inside an otherwise matching file
    layout_s = _copy_reference(tiny_reference, tmp_path / "w_shape")
    sd = torch.load(layout_s.motion_extractor, weights_only=True)
    sd["detector.fc_t.bias"] = torch.zeros(4)
    torch.save(sd, layout_s.motion_extractor)
    with pytest.raises(WeightsCorrupt, match=r"motion_extractor\.pth: key 'detector\.fc_t\.bias' has shape \(4,\)"):
        StageOne.load(layout_s)
    # a spectral-norm triple member missing from the SPADE file
    layout = _copy_reference(tiny_reference, tmp_path / "w2")
    sd = torch.load(layout.spade_generator, weights_only=True)
    del sd["up_0.conv_s.weight_u"]
    torch.save(sd, layout.spade_generator)
    with pytest.raises(WeightsCorrupt, match=r"spade_generator\.pth is missing key 'up_0\.conv_s\.weight_u'"):
        StageOne.load(layout)
    # a missing file
    layout.warping_module.unlink()
    with pytest.raises(WeightsMissing, match="warping_module.pth"):
        StageOne.load(layout)


def test_spectral_norm_fold_matches_torch() -> None:
    from engine.models.spade import fold_spectral_norm

    conv = torch.nn.utils.spectral_norm(torch.nn.Conv2d(4, 6, 3))
    conv.train()
    for _ in range(3):
        conv(torch.randn(1, 4, 5, 5))  # a few power iterations so u, v are not the init ones
    conv.eval()
    state = {f"c.{k}": v for k, v in conv.state_dict().items()}
    folded = fold_spectral_norm(state)
    assert set(folded) == {"c.weight", "c.bias"}
    x = torch.randn(2, 4, 7, 7)
    ref = conv(x)
    ours = torch.nn.functional.conv2d(x, folded["c.weight"], folded["c.bias"])
    torch.testing.assert_close(ours, ref, rtol=1e-6, atol=1e-6)
