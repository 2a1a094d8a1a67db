"""HuBERT / wav2vec 2.0 (base layout) in plain torch, with transformers' module and key names.

Why: importing ``transformers`` to build this one encoder costs ~3.4 CPU-seconds of every cold
start on our 2-core machine (it pulls in scipy.optimize, the loss zoo, hub code...), more than
loading all the weights. The maths here is transformers' ``HubertModel`` eval forward, op for op
(eager attention: ``softmax(q·kᵀ·scale)·v``; post-LN layers; weight-normed positional conv
evaluated with the same ``torch._weight_norm``), and ``tests/engine/test_hubert_native.py``
checks the outputs are identical to transformers' on the same weights.

Supported: ``feat_extract_norm == "group"``, ``do_stable_layer_norm == False``, weight-norm
positional conv (HuBERT base, chinese-hubert-base, wav2vec2-base). Anything else returns None
from :func:`native_config` and :mod:`engine.models.audio_encoder` falls back to transformers.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass(frozen=True)
class NativeConfig:
    conv_dim: tuple[int, ...]
    conv_kernel: tuple[int, ...]
    conv_stride: tuple[int, ...]
    conv_bias: bool
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    num_conv_pos_embeddings: int
    num_conv_pos_embedding_groups: int
    layer_norm_eps: float
    feat_proj_layer_norm: bool


def native_config(raw: dict[str, Any]) -> NativeConfig | None:
    """The config.json fields this module needs, or None when the layout is not the base one."""
    is_w2v = raw.get("model_type") == "wav2vec2"
    if raw.get("feat_extract_norm", "group") != "group" or raw.get("do_stable_layer_norm", False):
        return None
    if raw.get("conv_pos_batch_norm", False) or raw.get("hidden_act", "gelu") != "gelu":
        return None
    if raw.get("feat_extract_activation", "gelu") != "gelu":
        return None
    conv_dim = tuple(raw.get("conv_dim", (512,) * 7))
    return NativeConfig(
        conv_dim=conv_dim, conv_kernel=tuple(raw.get("conv_kernel", (10, 3, 3, 3, 3, 2, 2))),
        conv_stride=tuple(raw.get("conv_stride", (5, 2, 2, 2, 2, 2, 2))), conv_bias=bool(raw.get("conv_bias", False)),
        hidden_size=int(raw.get("hidden_size", 768)), num_hidden_layers=int(raw.get("num_hidden_layers", 12)),
        num_attention_heads=int(raw.get("num_attention_heads", 12)),
        intermediate_size=int(raw.get("intermediate_size", 3072)),
        num_conv_pos_embeddings=int(raw.get("num_conv_pos_embeddings", 128)),
        num_conv_pos_embedding_groups=int(raw.get("num_conv_pos_embedding_groups", 16)),
        layer_norm_eps=float(raw.get("layer_norm_eps", 1e-5)),
        # wav2vec2's projection always normalises; HuBERT's only with feat_proj_layer_norm (default True)
        feat_proj_layer_norm=True if is_w2v else bool(raw.get("feat_proj_layer_norm", True)),
    )


class _ConvLayer(nn.Module):
    def __init__(self, cin: int, cout: int, k: int, s: int, bias: bool, group_norm: bool) -> None:
        super().__init__()
        self.conv = nn.Conv1d(cin, cout, kernel_size=k, stride=s, bias=bias)
        if group_norm:
            self.layer_norm = nn.GroupNorm(num_groups=cout, num_channels=cout, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if hasattr(self, "layer_norm"):
            x = self.layer_norm(x)
        return F.gelu(x)


class FeatureEncoder(nn.Module):
    def __init__(self, c: NativeConfig) -> None:
        super().__init__()
        dims = (1,) + c.conv_dim
        self.conv_layers = nn.ModuleList(
            _ConvLayer(dims[i], dims[i + 1], c.conv_kernel[i], c.conv_stride[i], c.conv_bias, group_norm=i == 0)
            for i in range(len(c.conv_dim)))

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        x = audio[:, None]                                                   # (B,1,n)
        for layer in self.conv_layers:
            x = layer(x)
        return x                                                             # (B,C,T)


class FeatureProjection(nn.Module):
    def __init__(self, c: NativeConfig) -> None:
        super().__init__()
        if c.feat_proj_layer_norm:
            self.layer_norm = nn.LayerNorm(c.conv_dim[-1], eps=c.layer_norm_eps)
        self.projection = nn.Linear(c.conv_dim[-1], c.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if hasattr(self, "layer_norm"):
            x = self.layer_norm(x)
        return self.projection(x)


class _WeightNormConv(nn.Module):
    """Conv1d whose weight is ``g · v / ‖v‖`` (norm over all dims but 2), the checkpoint's form.

    Keys ``parametrizations.weight.original0/1`` like torch's parametrization (the loader renames
    legacy ``weight_g``/``weight_v``); the weight is recomputed per call with the same kernel
    transformers uses, so results are bit-identical."""

    def __init__(self, ch: int, k: int, groups: int) -> None:
        super().__init__()
        self.parametrizations = nn.Module()
        self.parametrizations.weight = nn.Module()
        self.parametrizations.weight.original0 = nn.Parameter(torch.empty(1, 1, k))
        self.parametrizations.weight.original1 = nn.Parameter(torch.empty(ch, ch // groups, k))
        self.bias = nn.Parameter(torch.empty(ch))
        self.padding, self.groups = k // 2, groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.parametrizations.weight
        w = torch._weight_norm(p.original1, p.original0, 2)
        return F.conv1d(x, w, self.bias, padding=self.padding, groups=self.groups)


class PositionalConvEmbedding(nn.Module):
    def __init__(self, c: NativeConfig) -> None:
        super().__init__()
        self.conv = _WeightNormConv(c.hidden_size, c.num_conv_pos_embeddings, c.num_conv_pos_embedding_groups)
        self.remove = 1 if c.num_conv_pos_embeddings % 2 == 0 else 0

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        x = self.conv(h.transpose(1, 2))
        if self.remove:
            x = x[:, :, :-self.remove]
        return F.gelu(x).transpose(1, 2)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.scaling = self.head_dim ** -0.5
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.q_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        b, t, _ = h.shape
        shape = (b, t, -1, self.head_dim)
        q = self.q_proj(h).view(shape).transpose(1, 2)                     # (B,H,T,d)
        k = self.k_proj(h).view(shape).transpose(1, 2)
        v = self.v_proj(h).view(shape).transpose(1, 2)
        w = torch.softmax(torch.matmul(q, k.transpose(2, 3)) * self.scaling, dim=-1)
        out = torch.matmul(w, v).transpose(1, 2).contiguous()               # (B,T,H,d)
        return self.out_proj(out.reshape(b, t, -1).contiguous())


class FeedForward(nn.Module):
    def __init__(self, dim: int, inner: int) -> None:
        super().__init__()
        self.intermediate_dense = nn.Linear(dim, inner)
        self.output_dense = nn.Linear(inner, dim)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.output_dense(F.gelu(self.intermediate_dense(h)))


class EncoderLayer(nn.Module):
    def __init__(self, c: NativeConfig) -> None:
        super().__init__()
        self.attention = Attention(c.hidden_size, c.num_attention_heads)
        self.layer_norm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.feed_forward = FeedForward(c.hidden_size, c.intermediate_size)
        self.final_layer_norm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = self.layer_norm(h + self.attention(h))
        return self.final_layer_norm(h + self.feed_forward(h))


class Encoder(nn.Module):
    def __init__(self, c: NativeConfig) -> None:
        super().__init__()
        self.pos_conv_embed = PositionalConvEmbedding(c)
        self.layer_norm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.layers = nn.ModuleList(EncoderLayer(c) for _ in range(c.num_hidden_layers))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = self.layer_norm(h + self.pos_conv_embed(h))
        for layer in self.layers:
            h = layer(h)
        return h                                                             # last_hidden_state


class NativeHubert(nn.Module):
    """The parts of ``HubertModel`` that :class:`engine.models.audio_encoder.AudioEncoder` calls."""

    def __init__(self, c: NativeConfig) -> None:
        super().__init__()
        self.config = c
        self.feature_extractor = FeatureEncoder(c)
        self.feature_projection = FeatureProjection(c)
        self.encoder = Encoder(c)


def build_native(c: NativeConfig) -> NativeHubert:
    """Build on the meta device: no memory, no random initialisation. The loader assigns the
    checkpoint's tensors as the parameters (``load_state_dict(assign=True)``)."""
    with torch.device("meta"):
        model = NativeHubert(c)
    return model.eval()
