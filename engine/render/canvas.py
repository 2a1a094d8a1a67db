"""The paste-back canvas: the portrait at ≤1280 px (upstream's ``resize_to_limit``), into which
animated crops are pasted. Where the crop is (detectors, upstream's formula, borders) is
:mod:`engine.framing`'s business; this module only sizes the picture frames are pasted into.
"""
from __future__ import annotations

import cv2
import numpy as np


def resize_to_limit(img: np.ndarray, max_dim: int = 1280, division: int = 2) -> np.ndarray:
    """Upstream's source pre-processing: longer side ≤ max_dim, both sides multiples of 2."""
    h, w = img.shape[:2]
    if max(h, w) > max_dim:
        w, h = _limited_size(w, h, max_dim)
        img = cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)
    h, w = img.shape[:2]
    return img[: h - h % division, : w - w % division]


def paste_canvas(original: np.ndarray) -> tuple[np.ndarray, float, float]:
    """(the ≤1280 px canvas frames are pasted into, fx, fy): canvas pixel = original pixel × (fx, fy).

    The framing's ``M_c2o`` is in the original's pixels; ``Framing.M_c2o_scaled(fx, fy)`` maps the
    crop into this canvas.
    """
    canvas = resize_to_limit(original)
    h, w = original.shape[:2]
    scaled = _limited_size(w, h)
    return canvas, scaled[0] / w, scaled[1] / h


def _limited_size(w: int, h: int, max_dim: int = 1280) -> tuple[int, int]:
    if max(h, w) > max_dim:
        if w >= h:
            return max_dim, int(h * max_dim / w)
        return int(w * max_dim / h), max_dim
    return w, h
