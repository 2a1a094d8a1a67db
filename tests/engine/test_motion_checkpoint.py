"""Safe loading of the motion-generator checkpoint and template; sizes from tensors."""
from __future__ import annotations

import argparse
import os
import pathlib
import pickle

import numpy as np
import pytest
import torch

from engine.errors import WeightsCorrupt, WeightsMissing
from engine.motion.checkpoint import config_from_checkpoint, load_checkpoint
from engine.motion.template import load_template


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_refuses_code_in_checkpoint(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"args": _Evil(), "model": {}, "iter": 1}, path)
    with pytest.raises(WeightsCorrupt, match="not allowed"):
        load_checkpoint(path)


def test_truncated_and_missing(tmp_path, synthetic_tiny_joyvasa):
    src = synthetic_tiny_joyvasa / "JoyVASA/motion_generator/motion_generator_hubert_chinese.pt"
    cut = tmp_path / "cut.pt"
    cut.write_bytes(src.read_bytes()[: 5000])
    with pytest.raises(WeightsCorrupt):
        load_checkpoint(cut)
    with pytest.raises(WeightsMissing):
        load_checkpoint(tmp_path / "nope.pt")


def test_paths_become_pure_paths(tmp_path):
    path = tmp_path / "p.pt"
    ns = argparse.Namespace(data_root=pathlib.Path("data"), n_motions=3)
    torch.save({"args": ns, "model": {"denoising_net.x": torch.zeros(1)}, "iter": 5}, path)
    ck = load_checkpoint(path)
    assert isinstance(ck["args"].data_root, pathlib.PurePath) and str(ck["args"].data_root) == "data"


def test_sizes_from_tensors(synthetic_tiny_joyvasa, tmp_path):
    from engine.motion.synthetic import write_joyvasa_weights

    cfg = config_from_checkpoint(load_checkpoint(
        synthetic_tiny_joyvasa / "JoyVASA/motion_generator/motion_generator_hubert_chinese.pt"))
    assert (cfg.motion_feat_dim, cfg.n_motions, cfg.n_prev_motions, cfg.feature_dim, cfg.n_diff_steps,
            cfg.audio_hidden) == (73, 20, 5, 32, 10, 64)
    write_joyvasa_weights(tmp_path, "tiny", seed=1, overrides={"motion_feat_dim": 70, "n_prev_motions": 8})
    cfg2 = config_from_checkpoint(load_checkpoint(tmp_path / "JoyVASA/motion_generator/motion_generator_hubert_chinese.pt"))
    assert (cfg2.motion_feat_dim, cfg2.n_prev_motions, cfg2.n_motions) == (70, 8, 20)


def test_template_restricted_unpickler(tmp_path, synthetic_tiny_joyvasa):
    tpl = load_template(synthetic_tiny_joyvasa / "JoyVASA/motion_template/motion_template.pkl")
    assert len(tpl) == 35 and all(v.dtype == np.float32 for v in tpl.values())
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps({"mean_exp": _Evil()}, protocol=4))
    with pytest.raises(WeightsCorrupt, match="posix.system|os.system|only numpy"):
        load_template(evil)
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(b"\x80\x04garbage")
    with pytest.raises(WeightsCorrupt):
        load_template(bad)


def test_both_weight_norm_namings_give_same_encoder(tiny_reference):
    """The .pt uses parametrizations.*; renaming them to legacy weight_g/weight_v must not matter."""
    from engine.models.audio_encoder import load_audio_encoder

    ck = load_checkpoint(tiny_reference / "JoyVASA/motion_generator/motion_generator_hubert_chinese.pt")
    sd = ck["model"]
    legacy = {k.replace("parametrizations.weight.original0", "weight_g")
               .replace("parametrizations.weight.original1", "weight_v"): v for k, v in sd.items()}
    assert any(k.endswith("weight_g") for k in legacy)
    folder = tiny_reference / "TencentGameMate:chinese-hubert-base"
    a = torch.randn(1, 12800, generator=torch.Generator().manual_seed(0)) * 0.1
    with torch.no_grad():
        y1 = load_audio_encoder(folder, sd, 32, 20)(a)
        y2 = load_audio_encoder(folder, legacy, 32, 20)(a)
    assert torch.equal(y1, y2)


def test_checkpoint_encoder_weights_win_over_folder(tiny_reference):
    from engine.models.audio_encoder import load_audio_encoder

    ck = load_checkpoint(tiny_reference / "JoyVASA/motion_generator/motion_generator_hubert_chinese.pt")
    enc = load_audio_encoder(tiny_reference / "TencentGameMate:chinese-hubert-base", ck["model"], 32, 20)
    w = enc.hf.encoder.layers[0].attention.q_proj.weight
    assert torch.equal(w, ck["model"]["audio_encoder.encoder.layers.0.attention.q_proj.weight"])
