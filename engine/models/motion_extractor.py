"""M, motion extractor (LivePortrait §3.1): canonical keypoints, pose bins, expression, scale, t.

Weights: liveportrait/base_models/motion_extractor.pth (keys under ``detector.``);
upstream: src/modules/motion_extractor.py@1986663. Spec §1.2.
"""
from __future__ import annotations

import torch
from torch import nn

from engine.models.config import MotionExtractorConfig
from engine.models.convnextv2 import ConvNeXtV2
from engine.models.keypoints import headpose_pred_to_degree


class MotionExtractor(nn.Module):
    def __init__(self, cfg: MotionExtractorConfig = MotionExtractorConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        self.detector = ConvNeXtV2(cfg.depths, cfg.dims, num_kp=cfg.num_kp, num_bins=cfg.num_bins)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Raw head outputs: kp/exp (B, 3K), scale (B,1), t (B,3), pitch/yaw/roll (B, 66) logits."""
        return self.detector(x)

    def kp_info(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Upstream ``get_kp_info``: degrees (B,1), kp/exp (B,K,3), t (B,3), scale (B,1)."""
        raw = self.detector(x)
        b = raw["kp"].shape[0]
        return {
            "pitch": headpose_pred_to_degree(raw["pitch"])[:, None],  # (B, 1)
            "yaw": headpose_pred_to_degree(raw["yaw"])[:, None],
            "roll": headpose_pred_to_degree(raw["roll"])[:, None],
            "kp": raw["kp"].reshape(b, -1, 3),  # (B, K, 3)
            "exp": raw["exp"].reshape(b, -1, 3),  # (B, K, 3)
            "t": raw["t"], "scale": raw["scale"],
        }
