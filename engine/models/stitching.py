"""S, stitching and retargeting MLPs (LivePortrait §3.2).

Weights: liveportrait/retargeting_models/stitching_retargeting_module.pth, entries
``retarget_shoulder`` (stitching), ``retarget_mouth`` (lip), ``retarget_eye`` (eye);
upstream: src/modules/stitching_retargeting_network.py@1986663. Spec §1.6.
"""
from __future__ import annotations

import torch
from torch import nn

from engine.models.config import MLPConfig

#: our name → entry in the official checkpoint
CHECKPOINT_ENTRIES = {"stitching": "retarget_shoulder", "lip": "retarget_mouth", "eye": "retarget_eye"}


class StitchingRetargetingNetwork(nn.Module):
    """Linear → ReLU per hidden size, then a final Linear (no output activation)."""

    def __init__(self, cfg: MLPConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = cfg.input_size
        for hidden in cfg.hidden_sizes:
            layers += [nn.Linear(cin, hidden), nn.ReLU(inplace=True)]
            cin = hidden
        layers.append(nn.Linear(cin, cfg.output_size))
        self.mlp = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x)


def stitch(net: nn.Module, kp_source: torch.Tensor, kp_driving: torch.Tensor) -> torch.Tensor:
    """x_d' = x_d + Δ[:3K]; x_d'[..., :2] += Δ[3K:3K+2] (spec §1.6). (B,K,3) → (B,K,3)."""
    b, k = kp_source.shape[:2]
    delta = net(torch.cat([kp_source.reshape(b, -1), kp_driving.reshape(b, -1)], dim=1))  # (B, 3K+2)
    out = kp_driving + delta[..., : 3 * k].reshape(b, k, 3)
    xy = out[..., :2] + delta[..., 3 * k: 3 * k + 2].reshape(b, 1, 2)
    return torch.cat([xy, out[..., 2:]], dim=2)
