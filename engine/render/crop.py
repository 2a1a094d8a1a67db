"""The names ``animate`` and the tests have always imported; the framing lives in engine/framing.

Why this file stays: ``engine/commands/animate.py`` (and the pipeline layer built from it)
imports the crop from here. Everything that decides *where* the crop is — detectors,
upstream's formula, borders, alpha — is in :mod:`engine.framing`; this module only adds the
≤1280 px paste-back canvas (upstream's ``resize_to_limit``) and the frontal-face Haar boxes
that the human detector falls back to when the ``mtcnn`` package is missing.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from engine.framing.frame import CROP_SIZE, NO_FACE_HINT, Framing, FramingOptions, frame_portrait, parse_crop_arg
from engine.framing.frame import load_picture as load_image_rgb

__all__ = ["CROP_SIZE", "NO_FACE_HINT", "Framing", "crop_portrait", "detect_faces_haar", "load_image_rgb",
           "parse_crop_arg", "paste_canvas", "resize_to_limit"]


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


def crop_portrait(img: np.ndarray, mode: Any = "auto", weights_root: Path | None = None, **options: Any) -> Framing:
    """Frame ``img`` (full resolution); ``mode`` is a :func:`parse_crop_arg` result."""
    return frame_portrait(img, FramingOptions(crop=mode, weights_root=weights_root, **options))


def detect_faces_haar(img: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Frontal faces (x, y, w, h) with a Haar cascade, most confident first (no landmarks).

    OpenCV 4.x: its ``CascadeClassifier`` + bundled cascade; OpenCV 5 (no cascades any more):
    the same cascade file, shipped with the engine, evaluated by engine/render/haar.py.
    """
    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    f = min(1.0, 400.0 / max(grey.shape))
    small = cv2.resize(grey, None, fx=f, fy=f, interpolation=cv2.INTER_AREA) if f < 1 else grey
    small = cv2.equalizeHist(small)
    min_side = max(24, int(0.08 * min(small.shape)))
    cascade_cls = getattr(cv2, "CascadeClassifier", None)
    data = getattr(getattr(cv2, "data", None), "haarcascades", None)
    xml = Path(data) / "haarcascade_frontalface_default.xml" if data else None
    if cascade_cls is not None and xml is not None and xml.is_file():
        cascade = cascade_cls(str(xml))
        found = cascade.detectMultiScale(small, scaleFactor=1.1, minNeighbors=5, minSize=(min_side, min_side))
        found = sorted((tuple(b) for b in found), key=lambda b: b[2] * b[3], reverse=True)
    else:
        from engine.render.haar import detect_faces

        found = detect_faces(small, scale_factor=1.1, min_neighbors=4, min_size=min_side)
    return [tuple(int(round(v / f)) for v in b) for b in found]  # type: ignore[misc]
