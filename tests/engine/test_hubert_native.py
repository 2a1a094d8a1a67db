"""The native HuBERT backbone computes exactly what transformers' HubertModel computes on the same weights."""
from __future__ import annotations

import json

import pytest
import torch

from engine.models.audio_encoder import AudioEncoder, build_hf_encoder, load_audio_encoder
from engine.models.hubert_native import NativeHubert, native_config
from engine.motion.checkpoint import config_from_checkpoint, load_checkpoint


def _encoders(root):
    ckpt = load_checkpoint(root / "JoyVASA/motion_generator/motion_generator_hubert_chinese.pt")
    cfg = config_from_checkpoint(ckpt)
    folder = root / "chinese-hubert-base"
    if not folder.is_dir():
        folder = root / "TencentGameMate:chinese-hubert-base"
    out = {}
    for native in (True, False):
        hf = build_hf_encoder(folder, native=native)
        out[native] = load_audio_encoder(folder, ckpt["model"], cfg.feature_dim, cfg.n_motions, hf=hf)
    return out, cfg


def test_native_backbone_matches_transformers(synthetic_tiny_joyvasa) -> None:
    encs, cfg = _encoders(synthetic_tiny_joyvasa)
    assert isinstance(encs[True].hf, NativeHubert) and not isinstance(encs[False].hf, NativeHubert)
    assert encs[True].n_layers == encs[False].n_layers
    gen = torch.Generator().manual_seed(0)
    audio = 0.1 * torch.randn(3, 640 * cfg.n_motions, generator=gen)
    with torch.no_grad():
        a, b = encs[True](audio), encs[False](audio)
        ha, hb = encs[True].hidden(audio), encs[False].hidden(audio)
    assert a.shape == b.shape == (3, cfg.n_motions, cfg.feature_dim)
    torch.testing.assert_close(ha, hb, rtol=0, atol=1e-6)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_unsupported_layouts_fall_back_to_transformers() -> None:
    assert native_config({"model_type": "hubert"}) is not None
    assert native_config({"model_type": "hubert", "do_stable_layer_norm": True}) is None
    assert native_config({"model_type": "hubert", "feat_extract_norm": "layer"}) is None
    assert native_config({"model_type": "wav2vec2"}).feat_proj_layer_norm is True


def test_missing_encoder_tensor_is_refused(synthetic_tiny_joyvasa, tmp_path) -> None:
    """Uninitialised native storage must never be used: a tensor absent from the checkpoint is an error."""
    from engine.errors import WeightsCorrupt

    ckpt = load_checkpoint(synthetic_tiny_joyvasa / "JoyVASA/motion_generator/motion_generator_hubert_chinese.pt")
    cfg = config_from_checkpoint(ckpt)
    sd = {k: v for k, v in ckpt["model"].items() if "encoder.layers.0.attention.q_proj.weight" not in k}
    folder = next(p for p in synthetic_tiny_joyvasa.iterdir() if "hubert" in p.name and p.is_dir())
    only_config = tmp_path / "hubert"  # no pytorch_model.bin to fall back on
    only_config.mkdir()
    (only_config / "config.json").write_text(json.dumps(json.loads((folder / "config.json").read_text())))
    with pytest.raises(WeightsCorrupt, match="lack"):
        load_audio_encoder(only_config, sd, cfg.feature_dim, cfg.n_motions)
    assert AudioEncoder  # the public class stays importable
