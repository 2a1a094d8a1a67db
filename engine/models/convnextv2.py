"""ConvNeXt-V2 backbone with LivePortrait's seven regression heads (the ``detector`` of M).

upstream: src/modules/convnextv2.py@1986663 (itself after facebookresearch/ConvNeXt-V2). Spec §1.2.
Drop-path is 0 at inference, so it is omitted.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class LayerNormChannelsFirst(nn.Module):
    """LayerNorm over C of an NCHW tensor, written out (mean, biased variance) as upstream does."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = x.mean(1, keepdim=True)  # (B, 1, H, W)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) / torch.sqrt(s + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class GRN(nn.Module):
    """Global response normalisation on NHWC input."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1, 1, 1, dim))
        self.beta = nn.Parameter(torch.zeros(1, 1, 1, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gx = torch.norm(x, p=2, dim=(1, 2), keepdim=True)  # (B, 1, 1, C)
        nx = gx / (gx.mean(dim=-1, keepdim=True) + 1e-6)
        return self.gamma * (x * nx) + self.beta + x


class Block(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.grn = GRN(4 * dim)
        self.pwconv2 = nn.Linear(4 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dwconv(x).permute(0, 2, 3, 1)  # (B, H, W, C)
        y = self.pwconv2(self.grn(F.gelu(self.pwconv1(self.norm(y)))))  # (B, H, W, C)
        return x + y.permute(0, 3, 1, 2)  # (B, C, H, W)


class ConvNeXtV2(nn.Module):
    """Backbone + heads; ``forward`` returns the raw head outputs (pitch/yaw/roll = bin logits)."""

    def __init__(self, depths: Sequence[int], dims: Sequence[int], num_kp: int = 21,
                 num_bins: int = 66, in_chans: int = 3) -> None:
        super().__init__()
        self.downsample_layers = nn.ModuleList()
        self.downsample_layers.append(nn.Sequential(
            nn.Conv2d(in_chans, dims[0], kernel_size=4, stride=4), LayerNormChannelsFirst(dims[0])))
        for i in range(3):
            self.downsample_layers.append(nn.Sequential(
                LayerNormChannelsFirst(dims[i]), nn.Conv2d(dims[i], dims[i + 1], kernel_size=2, stride=2)))
        self.stages = nn.ModuleList(nn.Sequential(*[Block(dims[i]) for _ in range(depths[i])]) for i in range(4))
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)
        d = dims[-1]
        self.fc_kp = nn.Linear(d, 3 * num_kp)
        self.fc_scale = nn.Linear(d, 1)
        self.fc_pitch = nn.Linear(d, num_bins)
        self.fc_yaw = nn.Linear(d, num_bins)
        self.fc_roll = nn.Linear(d, num_bins)
        self.fc_t = nn.Linear(d, 3)
        self.fc_exp = nn.Linear(d, 3 * num_kp)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        for down, stage in zip(self.downsample_layers, self.stages):
            x = stage(down(x))  # 256 → 64 → 32 → 16 → 8
        x = self.norm(x.mean([-2, -1]))  # (B, C)
        return {
            "kp": self.fc_kp(x), "scale": self.fc_scale(x), "pitch": self.fc_pitch(x),
            "yaw": self.fc_yaw(x), "roll": self.fc_roll(x), "t": self.fc_t(x), "exp": self.fc_exp(x),
        }
