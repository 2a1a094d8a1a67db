"""W, warping module (LivePortrait §3.1): warp f_s by the dense motion, project to a 2-D feature map.

Weights: liveportrait/base_models/warping_module.pth;
upstream: src/modules/warping_network.py@1986663. Spec §1.4.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from engine.models.blocks import same_block_2d
from engine.models.config import WarpingConfig
from engine.models.dense_motion import DenseMotionNetwork


class WarpingNetwork(nn.Module):
    def __init__(self, cfg: WarpingConfig = WarpingConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        dm = cfg.dense_motion_params
        self.dense_motion_network = DenseMotionNetwork(dm, cfg.reshape_channel, cfg.num_kp,
                                                       cfg.estimate_occlusion_map)
        out_features = min(cfg.max_features, cfg.block_expansion * 2 ** cfg.num_down_blocks)
        self.third = same_block_2d(cfg.reshape_channel * dm.reshape_depth, out_features, lrelu=True)
        self.fourth = nn.Conv2d(out_features, out_features, kernel_size=1)

    def forward(self, feature_3d: torch.Tensor, kp_source: torch.Tensor, kp_driving: torch.Tensor,
                compressed: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Returns out (B, C, 64, 64), deformation (B, D, 64, 64, 3), occlusion_map (B,1,64,64), mask."""
        dense = self.dense_motion_network(feature_3d, kp_driving, kp_source, compressed)
        out = F.grid_sample(feature_3d, dense["deformation"], align_corners=False)  # (B, C, D, H, W)
        b, c, d, h, w = out.shape
        out = self.fourth(self.third(out.view(b, c * d, h, w)))  # (B, out_features, H, W)
        if "occlusion_map" in dense:
            out = out * dense["occlusion_map"]
        return {"out": out, **dense}
