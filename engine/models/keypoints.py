"""Keypoint maths shared by the source path and the animation (spec §1.2–1.3).

Upstream: src/utils/camera.py (headpose_pred_to_degree, get_rotation_matrix) and
live_portrait_wrapper.transform_keypoint @1986663. Angles are degrees; π is numpy's pi.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

PI = np.pi


def headpose_pred_to_degree(pred: torch.Tensor) -> torch.Tensor:
    """66 bin logits (B, 66) → degrees (B,): 3·Σ softmax·i − 97.5. Other shapes pass unchanged."""
    if pred.ndim > 1 and pred.shape[1] == 66:
        idx = torch.arange(66, dtype=pred.dtype, device=pred.device)
        prob = F.softmax(pred, dim=1)
        return torch.sum(prob * idx, dim=1) * 3 - 97.5
    return pred


def rotation_matrix(pitch: torch.Tensor, yaw: torch.Tensor, roll: torch.Tensor) -> torch.Tensor:
    """(Rz(roll)·Ry(yaw)·Rx(pitch))ᵀ for angles in degrees, shape (B,) or (B,1) → (B, 3, 3).

    Keypoints are row vectors multiplied on the right (``x @ R``).
    """
    def rad(a: torch.Tensor) -> torch.Tensor:
        a = a if a.ndim > 1 else a.unsqueeze(1)  # (B, 1)
        return a / 180 * PI

    x, y, z = rad(pitch), rad(yaw), rad(roll)
    b = x.shape[0]
    one = torch.ones(b, 1, dtype=x.dtype, device=x.device)
    zero = torch.zeros(b, 1, dtype=x.dtype, device=x.device)
    rot_x = torch.cat([one, zero, zero, zero, torch.cos(x), -torch.sin(x), zero, torch.sin(x), torch.cos(x)],
                      dim=1).reshape(b, 3, 3)
    rot_y = torch.cat([torch.cos(y), zero, torch.sin(y), zero, one, zero, -torch.sin(y), zero, torch.cos(y)],
                      dim=1).reshape(b, 3, 3)
    rot_z = torch.cat([torch.cos(z), -torch.sin(z), zero, torch.sin(z), torch.cos(z), zero, zero, zero, one],
                      dim=1).reshape(b, 3, 3)
    return (rot_z @ rot_y @ rot_x).permute(0, 2, 1)


def transform_keypoint(kp: torch.Tensor, R: torch.Tensor, exp: torch.Tensor, scale: torch.Tensor,
                       t: torch.Tensor) -> torch.Tensor:
    """x = scale·(kp·R + exp); x[..., :2] += t[:, :2] (t_z ignored). kp/exp (B,K,3) or (B,3K) → (B,K,3)."""
    b = kp.shape[0]
    k = kp.shape[1] if kp.ndim == 3 else kp.shape[1] // 3
    out = kp.reshape(b, k, 3) @ R + exp.reshape(b, k, 3)  # (B, K, 3)
    out = out * scale.reshape(b, 1, 1)
    xy = out[:, :, 0:2] + t.reshape(b, 3)[:, None, 0:2]  # (B, K, 2)
    return torch.cat([xy, out[:, :, 2:]], dim=2)
