"""Paste the 512² rendered face back into the full-resolution portrait.

Upstream warps ``mask_template.png`` and each frame with the crop's inverse affine and blends
``clip(mask·frame + (1−mask)·original)``. We build an equivalent feathered mask ourselves
(the template is not part of the weights): 1 in the middle of the crop, a smooth fall-off to
0 towards the crop border. The warped mask and the float original are computed once.
"""
from __future__ import annotations

import cv2
import numpy as np

CROP_SIZE = 512


def feathered_mask(size: int = CROP_SIZE, margin: float = 0.08, feather: float = 0.10) -> np.ndarray:
    """(size,size) float32 in [0,1]: zero within ``margin`` of the border, ramp over ``feather``."""
    coord = (np.arange(size, dtype=np.float32) + 0.5) / size
    edge = np.minimum(coord, 1.0 - coord)                       # distance to nearest border, 0..0.5
    ramp = np.clip((edge - margin) / feather, 0.0, 1.0)
    ramp = ramp * ramp * (3 - 2 * ramp)                        # smoothstep
    return np.outer(ramp, ramp).astype(np.float32)             # (size,size)


class PasteBack:
    """Blend frames into ``original`` (H,W,3 uint8 RGB) through ``M_c2o`` (2x3 crop→original)."""

    def __init__(self, original: np.ndarray, M_c2o: np.ndarray, crop_size: int = CROP_SIZE) -> None:
        self.H, self.W = original.shape[:2]
        self.M = np.asarray(M_c2o, dtype=np.float64)
        mask = cv2.warpAffine(feathered_mask(crop_size), self.M, (self.W, self.H), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        self.mask = mask[..., None].astype(np.float32)             # (H,W,1)
        self.base = (1.0 - self.mask) * original.astype(np.float32)  # (H,W,3), the constant term

    @property
    def size(self) -> tuple[int, int]:
        return self.W, self.H

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        """(512,512,3) uint8 → (H,W,3) uint8."""
        warped = cv2.warpAffine(frame, self.M, (self.W, self.H), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        out = self.mask * warped.astype(np.float32) + self.base
        return np.clip(out, 0, 255).astype(np.uint8)
