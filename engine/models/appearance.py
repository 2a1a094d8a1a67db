"""F, appearance feature extractor (LivePortrait §3.1): image → 3-D appearance volume f_s.

Weights: liveportrait/base_models/appearance_feature_extractor.pth;
upstream: src/modules/appearance_feature_extractor.py@1986663. Spec §1.1.
"""
from __future__ import annotations

import torch
from torch import nn

from engine.models.blocks import DownBlock2d, ResBlock3d, same_block_2d
from engine.models.config import AppearanceConfig


class AppearanceFeatureExtractor(nn.Module):
    def __init__(self, cfg: AppearanceConfig = AppearanceConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        be, mf = cfg.block_expansion, cfg.max_features
        self.first = same_block_2d(cfg.image_channel, be)
        blocks = []
        cout = be
        for i in range(cfg.num_down_blocks):
            cin = min(mf, be * 2 ** i)
            cout = min(mf, be * 2 ** (i + 1))
            blocks.append(DownBlock2d(cin, cout))
        self.down_blocks = nn.ModuleList(blocks)
        self.second = nn.Conv2d(cout, mf, kernel_size=1)
        self.resblocks_3d = nn.Sequential()
        for i in range(cfg.num_resblocks):
            self.resblocks_3d.add_module(f"3dr{i}", ResBlock3d(cfg.reshape_channel))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.first(x)  # (B, be, 256, 256)
        for block in self.down_blocks:
            out = block(out)  # (B, c, H/2, W/2)
        out = self.second(out)  # (B, max_features, 64, 64)
        b, _, h, w = out.shape
        f_s = out.view(b, self.cfg.reshape_channel, self.cfg.reshape_depth, h, w)  # (B, 32, 16, 64, 64)
        return self.resblocks_3d(f_s)
