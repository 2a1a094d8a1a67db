"""Classifier-free guidance (upstream ``DitTalkingHead.sample``, spec §2.5).

The network runs on a batch ``[uncond, cond_1, ..., cond_k]``; with upstream's single 'audio'
condition that is ``[null audio, audio]``. ``incremental``: r_0 + Σ s_i (r_i - r_{i-1});
``independent``: r_0 + Σ s_i (r_i - r_0). The two coincide for one condition.
"""
from __future__ import annotations

from typing import Literal, Sequence

import torch

CfgMode = Literal["incremental", "independent"]
from engine.contract.protocol import CFG_MODES  # noqa: E402  (the one list; re-exported)


def combine(results: torch.Tensor, scales: Sequence[float], mode: CfgMode = "incremental") -> torch.Tensor:
    """``results`` (1+k, ...) network outputs -> guided x0 estimate (1, ...)."""
    if mode not in CFG_MODES:
        raise ValueError(f"cfg_mode must be one of {CFG_MODES}, got {mode!r}")
    if results.shape[0] != len(scales) + 1:
        raise ValueError("need one result per condition plus the unconditional one")
    out = results[0:1]
    for i, s in enumerate(scales, start=1):
        base = results[i - 1:i] if mode == "incremental" else results[0:1]
        out = out + s * (results[i:i + 1] - base)
    return out
