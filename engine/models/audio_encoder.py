"""Audio encoder: HuBERT (or wav2vec 2.0) + JoyVASA's front end (spec §2.3).

The backbone is :mod:`engine.models.hubert_native` (transformers' maths in plain torch, no
transformers import on a cold start); transformers' own model is the fallback for layouts the
native module does not cover.

upstream: JoyVASA src/modules/dit_talking_head.py + hubert wrapper @74290f6; weights: the
checkpoint's ``audio_encoder.*`` (fine-tuned) override the HF folder; only the folder's
``config.json`` is required.

Per window of 640·L samples: pad_audio (double reflect) -> conv feature encoder (50 Hz,
2L frames) -> linear resample to 2L frames -> feature projection -> transformer encoder ->
linear resample to L frames (= mean of frame pairs) -> ``audio_feature_map`` -> (1, L, F).

transformers >= 5 no longer draws ``torch.rand([])`` per encoder layer in eval mode (4.39 did,
for LayerDrop); the generator in :mod:`engine.motion.generate` makes those draws itself.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from engine.audio import pad_audio
from engine.errors import WeightsCorrupt, WeightsMissing, OFFICIAL_WEIGHTS_HINT


def _rename_weight_norm(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map legacy ``weight_g/weight_v`` names to torch's parametrization names."""
    out = {}
    for k, v in sd.items():
        if k.endswith("pos_conv_embed.conv.weight_g"):
            k = k[: -len("weight_g")] + "parametrizations.weight.original0"
        elif k.endswith("pos_conv_embed.conv.weight_v"):
            k = k[: -len("weight_v")] + "parametrizations.weight.original1"
        out[k] = v
    return out


def build_hf_encoder(folder: Path, native: bool = True) -> nn.Module:
    """The encoder backbone from ``folder/config.json`` (uninitialised; weights loaded later).

    ``native`` (default): :mod:`engine.models.hubert_native` (plain torch, identical maths, no
    transformers import) whenever the config has the base layout; otherwise, or with
    ``native=False``, transformers' ``HubertModel``/``Wav2Vec2Model``.
    """
    cfg_path = Path(folder) / "config.json"
    if not cfg_path.is_file():
        raise WeightsMissing(f"missing audio-encoder config {cfg_path}. {OFFICIAL_WEIGHTS_HINT}")
    from engine.models.encoder_config import check_encoder_config
    from engine.contract.protocol import JSONLimitError, loads_limited

    try:
        raw = loads_limited(cfg_path.read_bytes(), str(cfg_path))
    except OSError as exc:
        raise WeightsCorrupt(f"{cfg_path} cannot be read: {exc}") from exc
    except JSONLimitError as exc:
        raise WeightsCorrupt(f"{exc} (the audio encoder's config.json)") from None
    check_encoder_config(raw, cfg_path)
    if native:
        from engine.models.hubert_native import build_native, native_config

        cfg = native_config(raw)
        if cfg is not None:
            return build_native(cfg)
    from transformers import HubertConfig, HubertModel, Wav2Vec2Config, Wav2Vec2Model

    is_w2v = raw.get("model_type") == "wav2vec2"
    cfg_cls, model_cls = (Wav2Vec2Config, Wav2Vec2Model) if is_w2v else (HubertConfig, HubertModel)
    raw.pop("model_type", None)
    config = cfg_cls(**{k: v for k, v in raw.items() if k not in ("architectures", "transformers_version")})
    config._attn_implementation = "eager"   # upstream forced output_attentions -> eager maths
    config.layerdrop = 0.0
    try:
        from transformers.initialization import no_init_weights
    except ImportError:  # older transformers
        from transformers.modeling_utils import no_init_weights
    with no_init_weights():  # every tensor is overwritten from the checkpoint
        model = model_cls(config)
    model.eval()
    return model


class AudioEncoder(nn.Module):
    """HF encoder + resampling + ``audio_feature_map``: (B, 640·L) samples -> (B, L, F)."""

    def __init__(self, hf_model: nn.Module, hidden: int, feature_dim: int, window_frames: int) -> None:
        super().__init__()
        self.hf = hf_model
        self.audio_feature_map = nn.Linear(hidden, feature_dim)
        self.window_frames = window_frames

    @property
    def n_layers(self) -> int:
        return int(self.hf.config.num_hidden_layers)

    def conv_features(self, audio: torch.Tensor) -> torch.Tensor:
        """(B, n) raw window -> (B, C, T50) conv features after ``pad_audio``."""
        return self.hf.feature_extractor(pad_audio(audio))

    def hidden(self, audio: torch.Tensor, frame_num: int | None = None) -> torch.Tensor:
        """(B, n) -> last_hidden_state (B, 2L, H) at 2×fps (JoyVASA's forward, output_fps 25)."""
        frame_num = 2 * self.window_frames if frame_num is None else frame_num
        feats = self.conv_features(audio)                                 # (B,C,T50)
        feats = feats[:, :, : round(frame_num * 50 / 25)]
        feats = F.interpolate(feats, size=frame_num, mode="linear", align_corners=False)  # (B,C,2L)
        h = self.hf.feature_projection(feats.transpose(1, 2))             # (B,2L,H)
        if isinstance(h, tuple):                                          # wav2vec2 returns (h, normed)
            h = h[0]
        out = self.hf.encoder(h)
        return out if isinstance(out, torch.Tensor) else out.last_hidden_state  # (B,2L,H)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        h = self.hidden(audio)                                            # (B,2L,H)
        h = F.interpolate(h.transpose(1, 2), size=self.window_frames, mode="linear",
                          align_corners=False).transpose(1, 2)            # (B,L,H)
        return self.audio_feature_map(h)                                  # (B,L,F)


def load_audio_encoder(folder: Path, sd: dict[str, torch.Tensor], feature_dim: int,
                       window_frames: int, hf: nn.Module | None = None) -> AudioEncoder:
    """Build from ``folder/config.json`` (or take the already built ``hf``); weights from the
    checkpoint's ``audio_encoder.*`` tensors (``sd`` = full motion-generator state dict). Falls
    back to the folder's ``pytorch_model.bin`` only for tensors the checkpoint lacks."""
    hf = hf if hf is not None else build_hf_encoder(folder)
    enc_sd = _rename_weight_norm({k[len("audio_encoder."):]: v for k, v in sd.items() if k.startswith("audio_encoder.")})
    own = hf.state_dict()
    missing = [k for k in own if k not in enc_sd]
    if missing:
        bin_path = Path(folder) / "pytorch_model.bin"
        if bin_path.is_file():
            from engine.checkpoints import safe_torch_load

            folder_sd = _rename_weight_norm(safe_torch_load(bin_path, what="audio-encoder weight file"))
            folder_sd = {k.removeprefix("hubert.").removeprefix("wav2vec2."): v for k, v in folder_sd.items()}
            enc_sd = {**{k: v for k, v in folder_sd.items() if k in own}, **enc_sd}
    missing = [k for k in own if k not in enc_sd and not k.endswith("masked_spec_embed")]
    if missing:
        raise WeightsCorrupt(f"audio-encoder weights lack {len(missing)} tensors, e.g. {missing[0]} (neither the "
                             f"motion-generator checkpoint nor {Path(folder) / 'pytorch_model.bin'} has them)")
    # a native backbone is built on the meta device: its parameters BECOME the checkpoint's
    # (memory-mapped) tensors instead of being copied into freshly allocated ones (cold start, peak RSS)
    on_meta = any(p.is_meta for p in hf.parameters())
    try:
        hf.load_state_dict({k: v for k, v in enc_sd.items() if k in own}, strict=False, assign=on_meta)
    except RuntimeError as exc:
        raise WeightsCorrupt(f"audio-encoder weights do not match {folder}/config.json: {exc}") from exc
    if any(p.is_meta for p in hf.parameters()):
        raise WeightsCorrupt(f"audio-encoder weights for {folder}/config.json are incomplete")
    w = sd.get("audio_feature_map.weight")
    if w is None:
        raise WeightsCorrupt("motion-generator checkpoint lacks audio_feature_map.weight")
    hidden = int(w.shape[1])
    if hidden != int(hf.config.hidden_size):
        raise WeightsCorrupt(f"audio_feature_map expects width {hidden} but {folder}/config.json "
                             f"has hidden_size {hf.config.hidden_size}")
    enc = AudioEncoder(hf, hidden, int(w.shape[0]), window_frames)
    enc.audio_feature_map.load_state_dict({"weight": w, "bias": sd["audio_feature_map.bias"]})
    enc.eval()
    return enc
