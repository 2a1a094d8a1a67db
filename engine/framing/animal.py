"""Animal faces without X-Pose: OpenCV's frontal cat-face cascade, else a centred square.

Why: upstream frames animals from X-Pose keypoints (extra non-bundled weights and a compiled
CUDA op). The licence-clean thing that finds some animal faces is Joseph Howse's cat-face Haar
cascade that OpenCV 4 shipped (BSD-3 licence, notice kept inside the gzipped file in
``data/``); OpenCV 5 has neither the cascade nor ``CascadeClassifier``, so it runs on the
engine's own evaluator (engine/render/haar.py). Everything else (dogs, alpacas, cartoons, a
missed cat) gets a centred square and a warning: ``--animal`` never fails on framing.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from engine.framing.frame import CROP_SIZE, Framing, FramingOptions, warp_crop

CAT_CASCADE = Path(__file__).with_name("data") / "haarcascade_frontalcatface.xml.gz"
#: a cat cascade box spans ears to chin; the face box upstream's points would give is a bit
#: smaller and lower (eyes sit near the box's middle): shrink to 0.8, move down by 0.1
CAT_BOX_SHRINK = 0.8
CAT_BOX_DOWN = 0.1


def detect_cat_faces(img: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Frontal cat faces (x, y, w, h) in ``img`` (RGB uint8, already downscaled), best first."""
    from engine.render.haar import detect_faces

    grey = cv2.equalizeHist(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY))
    min_side = max(24, int(0.1 * min(grey.shape)))
    return detect_faces(grey, scale_factor=1.1, min_neighbors=3, min_size=min_side,
                        cascade_path=str(CAT_CASCADE))


def face_box_from_cat_box(box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    x, y, w, h = box
    nw, nh = w * CAT_BOX_SHRINK, h * CAT_BOX_SHRINK
    return (x + (w - nw) / 2, y + (h - nh) / 2 + CAT_BOX_DOWN * h, nw, nh)


def centred_fallback(img: np.ndarray, opts: FramingOptions) -> Framing:
    """The largest centred square of the picture (scale/vx/vy ignored: there is no face to size)."""
    H, W = img.shape[:2]
    side = float(min(W, H))
    s = side / CROP_SIZE
    M = np.array([[s, 0.0, (W - side) / 2], [0.0, s, (H - side) / 2]], np.float64)
    return Framing(warp_crop(img, M), M, "fallback", (W, H))
