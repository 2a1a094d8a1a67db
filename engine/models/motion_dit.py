"""DenoisingNetwork ("DiT") of JoyVASA: x0-prediction transformer decoder (spec §2.4).

upstream: JoyVASA src/modules/dit_talking_head.py (DenoisingNetwork) @74290f6; weights:
JoyVASA/motion_generator/*.pt under ``denoising_net.``. Key names match upstream so the state
dict loads directly.

Hoisted cross-attention (the fast path, exact): the alignment mask lets token i attend only to
memory token i, so softmax over one logit is exactly 1 and the cross-attention output is
``out_proj(W_v·mem_i + b_v)`` - independent of the query and therefore of the denoising step.
:meth:`DenoisingNetwork.precompute_memory` evaluates it once per window; every step then skips
the q/k projections and the attention product. ``tests/engine/test_dit_hoisting.py`` proves
equality with the plain attention path. If a checkpoint's mask is not that diagonal, the
network silently keeps the plain path.
"""
from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

PEVariant = Literal["head", "legacy"]
from engine.contract.protocol import PE_VARIANTS  # noqa: E402  (the one list; re-exported)


def sinusoid_table(n_rows: int, dim: int) -> torch.Tensor:
    """Row p: [sin(p ω_0), cos(p ω_0), sin(p ω_1), ...], ω_i = exp(2i·(-ln 10000 / dim)), float32."""
    position = torch.arange(0, n_rows, dtype=torch.float).unsqueeze(1)               # (n,1)
    div_term = torch.exp(torch.arange(0, dim, 2).float() * (-math.log(10000.0) / dim))  # (dim/2,)
    pe = torch.zeros(n_rows, dim)
    pe[:, 0::2] = torch.sin(position * div_term)
    pe[:, 1::2] = torch.cos(position * div_term)
    return pe                                                                          # (n,dim)


class DecoderLayer(nn.Module):
    """Post-norm ``nn.TransformerDecoderLayer`` maths (GELU FFN) with an optional hoisted cross-attention."""

    def __init__(self, d: int, n_heads: int, ff: int) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d, n_heads, batch_first=True)
        self.multihead_attn = nn.MultiheadAttention(d, n_heads, batch_first=True)
        self.linear1 = nn.Linear(d, ff)
        self.linear2 = nn.Linear(ff, d)
        self.norm1 = nn.LayerNorm(d, eps=1e-5)
        self.norm2 = nn.LayerNorm(d, eps=1e-5)
        self.norm3 = nn.LayerNorm(d, eps=1e-5)

    def cross_hoisted(self, mem: torch.Tensor) -> torch.Tensor:
        """out_proj(W_v mem + b_v): the cross-attention output when each query sees one key."""
        d = mem.shape[-1]
        w_v = self.multihead_attn.in_proj_weight[2 * d:]                 # (d,d)
        b_v = self.multihead_attn.in_proj_bias[2 * d:]
        return self.multihead_attn.out_proj(F.linear(mem, w_v, b_v))      # (B,S,d)

    def self_attention(self, z: torch.Tensor) -> torch.Tensor:
        """``self_attn(z, z, z)`` (no mask, eval) as one packed projection + SDPA + out_proj.

        Why: the same maths as ``nn.MultiheadAttention``'s fast path with less per-call overhead
        on these small (2·110 × 256) matrices: 6 % less DiT time on 2 CPU cores, differences at
        float32 rounding (~1e-6; tests/engine/test_dit_hoisting.py and the parity tests bound it).
        """
        mha = self.self_attn
        b, s, d = z.shape
        h = mha.num_heads
        qkv = F.linear(z, mha.in_proj_weight, mha.in_proj_bias).view(b, s, 3, h, d // h)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)                              # 3 x (B,h,S,d/h)
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, s, d)
        return F.linear(out, mha.out_proj.weight, mha.out_proj.bias)

    def forward(self, z: torch.Tensor, mem: torch.Tensor | None, mask: torch.Tensor | None,
                cross: torch.Tensor | None = None) -> torch.Tensor:
        z = self.norm1(z + self.self_attention(z))
        if cross is None:
            cross = self.multihead_attn(z, mem, mem, attn_mask=mask, need_weights=False)[0]
        z = self.norm2(z + cross)
        return self.norm3(z + self.linear2(F.gelu(self.linear1(z))))


class DenoisingNetwork(nn.Module):
    """(x_t (B,L,D), audio (B,L,F), m_prev (B,P,D), a_prev (B,P,F), t (B,)) -> x0 estimate (B,P+L,D)."""

    def __init__(self, motion_feat_dim: int, feature_dim: int, n_motions: int, n_prev_motions: int,
                 n_layers: int = 8, n_heads: int = 8, mlp_ratio: int = 4, te_rows: int = 501,
                 pe_rows: int = 600) -> None:
        super().__init__()
        D, Fd = motion_feat_dim, feature_dim
        self.n_motions, self.n_prev_motions = n_motions, n_prev_motions
        S = n_motions + n_prev_motions
        # TE is computed (upstream discards the stored copy); PE is a checkpoint buffer
        self.register_buffer("te", sinusoid_table(te_rows, Fd), persistent=False)    # (501,F)
        self.register_buffer("pe", sinusoid_table(pe_rows, Fd), persistent=False)    # (600,F)
        self.diff_step_map = nn.Sequential(nn.Linear(Fd, Fd), nn.GELU(), nn.Linear(Fd, Fd))
        self.feature_proj = nn.Linear(D, Fd)
        self.layers = nn.ModuleList(DecoderLayer(Fd, n_heads, mlp_ratio * Fd) for _ in range(n_layers))
        self.motion_dec = nn.Sequential(nn.Linear(Fd, Fd // 2), nn.GELU(), nn.Linear(Fd // 2, D))
        mask = ~torch.eye(S, dtype=torch.bool)                           # True = masked
        self.register_buffer("alignment_mask", mask, persistent=False)   # (S,S)

    # -- loading --------------------------------------------------------------------------
    def load_upstream(self, sd: dict[str, torch.Tensor]) -> None:
        """Load ``denoising_net.*`` tensors (upstream names) strictly, ignoring ``TE.pe``."""
        own: dict[str, torch.Tensor] = {}
        for k, v in sd.items():
            if k == "PE.pe":
                self.pe = v.reshape(-1, v.shape[-1]).float().clone()
            elif k == "alignment_mask":
                if tuple(v.shape) != tuple(self.alignment_mask.shape):
                    raise RuntimeError(f"alignment_mask has shape {tuple(v.shape)}, expected "
                                       f"{tuple(self.alignment_mask.shape)}")
                self.alignment_mask = v.bool().clone()
            elif k.startswith("transformer.layers."):
                own["layers." + k[len("transformer.layers."):]] = v
            elif k != "TE.pe":
                own[k] = v
        self.load_state_dict(own, strict=True)

    @property
    def can_hoist(self) -> bool:
        m = self.alignment_mask
        return bool(torch.equal(m, ~torch.eye(m.shape[0], dtype=torch.bool, device=m.device)))

    # -- forward --------------------------------------------------------------------------
    def step_embedding(self, t: torch.Tensor) -> torch.Tensor:
        return self.diff_step_map(self.te[t])                            # (B,F)

    def positional(self, n_tokens: int, pe_variant: PEVariant) -> torch.Tensor:
        if pe_variant == "head":
            return self.pe[:n_tokens]                                     # (S,F) one row per token
        if pe_variant == "legacy":
            return self.pe[n_tokens:n_tokens + 1]                         # (1,F) row S for every token
        raise ValueError(f"pe_variant must be one of {PE_VARIANTS}, got {pe_variant!r}")

    def memory(self, audio: torch.Tensor, a_prev: torch.Tensor) -> torch.Tensor:
        return torch.cat([a_prev, audio], dim=1)                         # (B,S,F)

    def precompute_memory(self, mem: torch.Tensor) -> list[torch.Tensor]:
        """Per-layer hoisted cross-attention outputs for a window's memory (B,S,F)."""
        return [layer.cross_hoisted(mem) for layer in self.layers]

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, audio: torch.Tensor | None,
                m_prev: torch.Tensor, a_prev: torch.Tensor | None, *, pe_variant: PEVariant = "head",
                cross: list[torch.Tensor] | None = None, hoist: bool = True) -> torch.Tensor:
        """Plain path: ``cross=None, hoist=False``. ``cross`` from :meth:`precompute_memory` skips
        recomputing the hoisted outputs (audio/a_prev may then be None)."""
        e = self.step_embedding(t).unsqueeze(1)                          # (B,1,F)
        z = self.feature_proj(torch.cat([m_prev, x_t], dim=1))           # (B,S,F)
        S = z.shape[1]
        z = z + self.positional(S, pe_variant) + e
        mem = None
        if cross is None:
            mem = self.memory(audio, a_prev)                             # (B,S,F)
            if hoist and self.can_hoist:
                cross = self.precompute_memory(mem)
        for i, layer in enumerate(self.layers):
            z = layer(z, mem, self.alignment_mask, None if cross is None else cross[i])
        return self.motion_dec(z)                                         # (B,S,D)
