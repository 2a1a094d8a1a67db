"""Audio encoder built through transformers from a folder's config.json (HuBERT and wav2vec 2.0)."""
from __future__ import annotations

import pytest
import torch

from engine.audio import pad_audio
from engine.models.audio_encoder import load_audio_encoder


@pytest.mark.parametrize("kind", ["hubert", "wav2vec2"])
def test_front_end_matches_transformers_forward(tmp_path, kind):
    from transformers import HubertConfig, HubertModel, Wav2Vec2Config, Wav2Vec2Model

    cfg_cls, model_cls = (HubertConfig, HubertModel) if kind == "hubert" else (Wav2Vec2Config, Wav2Vec2Model)
    torch.manual_seed(0)
    cfg = cfg_cls(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                  conv_dim=[8] * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
    cfg._attn_implementation = "eager"
    ref = model_cls(cfg).eval()
    cfg.to_json_file(str(tmp_path / "config.json"))
    sd = {f"audio_encoder.{k}": v for k, v in ref.state_dict().items()}
    sd["audio_feature_map.weight"] = torch.randn(16, 32)
    sd["audio_feature_map.bias"] = torch.randn(16)
    enc = load_audio_encoder(tmp_path, sd, feature_dim=16, window_frames=20)
    audio = torch.randn(1, 640 * 20) * 0.1
    with torch.no_grad():
        expect = ref(pad_audio(audio)).last_hidden_state            # (1,40,32): 2L frames already
        got = enc.hidden(audio)
        torch.testing.assert_close(got, expect, rtol=1e-5, atol=1e-5)
        feat = enc(audio)
        pairs = 0.5 * (got[:, 0::2] + got[:, 1::2])                  # back-resampling = pair means
        torch.testing.assert_close(feat, pairs @ sd["audio_feature_map.weight"].T + sd["audio_feature_map.bias"],
                                   rtol=1e-5, atol=1e-5)
    assert feat.shape == (1, 20, 16)


def test_a_refused_hubert_bin_names_the_file(tmp_path):
    """Issue #13 defect 8: the folder's pytorch_model.bin (used for tensors the checkpoint lacks)
    holding code is refused as weights_corrupt naming that file, never executed."""
    import os
    import pickle

    from transformers import HubertConfig

    from engine.errors import WeightsCorrupt

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'owned'}",))

    cfg = HubertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                       conv_dim=[8] * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
    cfg.to_json_file(str(tmp_path / "config.json"))
    (tmp_path / "pytorch_model.bin").write_bytes(pickle.dumps(Evil()))
    sd = {"audio_feature_map.weight": torch.randn(16, 32), "audio_feature_map.bias": torch.randn(16)}
    with pytest.raises(WeightsCorrupt, match="pytorch_model.bin"):
        load_audio_encoder(tmp_path, sd, feature_dim=16, window_frames=20)
    assert not (tmp_path / "owned").exists()
