"""Animal faces: X-Pose when its optional file is there, else the cat-face cascade, else a centred square.

Why three ways: upstream frames animals from X-Pose's 9 face points (engine/framing/xpose.py), but
X-Pose's weights are an optional, non-commercial download. Without them the licence-clean thing
that finds some animal faces is Joseph Howse's cat-face Haar cascade that OpenCV 4 shipped
(BSD-3 licence, notice kept inside the gzipped file in ``data/``); OpenCV 5 has neither the
cascade nor ``CascadeClassifier``, so it runs on the engine's own evaluator
(engine/framing/haar.py). Everything else (dogs, alpacas, cartoons, a missed cat, an X-Pose score
below :data:`engine.framing.xpose.MIN_SCORE`) gets a centred square and a warning that names
the clicked-points way: ``--animal`` never fails on framing (a damaged X-Pose file gives an
``xpose_unusable`` warning naming the file and its first bad key, then the path without it).
"""
from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np

from engine.errors import BadRequest, WeightsCorrupt, WeightsMissing
from engine.framing.crop import (CROP_SIZE, POINTS_HINT, Framing, FramingOptions, _pick, _result, downscaled,
                                  frame_box, warp_crop)

CAT_CASCADE = Path(__file__).with_name("data") / "haarcascade_frontalcatface.xml.gz"
#: a cat cascade box spans ears to chin; the face box upstream's points would give is a bit
#: smaller and lower (eyes sit near the box's middle): shrink to 0.8, move down by 0.1
CAT_BOX_SHRINK = 0.8
CAT_BOX_DOWN = 0.1
#: animal faces fill most animal portraits; the numpy Haar evaluator costs ∝ pixels
ANIMAL_DETECT_SIDE = 320


def detect_cat_faces(img: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Frontal cat faces (x, y, w, h) in ``img`` (RGB uint8, already downscaled), best first."""
    from engine.framing.haar import detect_faces

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


def frame_xpose(img: np.ndarray, path: Path, opts: FramingOptions) -> Framing:
    """Upstream's animal framing from X-Pose's 9 points; below our score threshold the centred square.

    Several animals: X-Pose's detections after upstream's NMS (IoU 0: no two boxes overlap), best
    score first; ``--face-index N`` picks the N-th of those above the threshold."""
    from engine.framing import xpose

    t0 = time.perf_counter()
    device = xpose.default_device()
    found = xpose.detect(img, path, device)
    note = f"X-Pose {time.perf_counter() - t0:.1f} s on {device}"  # once per portrait, the slow part of framing
    faces = [f for f in found if f.score >= xpose.MIN_SCORE]
    if not faces:
        best = max((f.score for f in found), default=0.0)
        out = centred_fallback(img, opts)
        out.score, out.detector_note = best, note
        out.warnings.append(("animal_face_not_found",
                             f"X-Pose found no animal face (best score {best:.2f} < {xpose.MIN_SCORE:.2f}): "
                             f"using a centred square; {POINTS_HINT}"))
        return out
    idx = opts.face_index or 0
    if idx >= len(faces):
        raise BadRequest(f"--face-index {idx}: X-Pose found only {len(faces)} animal face(s) "
                         f"(0 = the highest score)")
    face = faces[idx]
    fr = xpose.frame_points9(face.points, opts.scale, opts.vx, opts.vy)
    return _result(img, fr, "xpose", box=face.box, points=face.points.tolist(), faces=len(faces),
                   face_index=idx, score=face.score, detector_note=note)


def frame_animal(img: np.ndarray, opts: FramingOptions) -> Framing:
    """``--animal`` with ``--crop auto``: X-Pose if present, else cat cascade, else the centred square."""
    from engine.framing import xpose

    problem = None
    try:
        path = xpose.xpose_path(opts.weights_root)
        if path is not None:
            return frame_xpose(img, path, opts)
    except (WeightsCorrupt, WeightsMissing) as exc:  # a damaged optional file must not stop --animal
        problem = ("xpose_unusable", f"X-Pose not used: {exc}")
    out = _frame_without_xpose(img, opts)
    if problem is not None:
        out.warnings.insert(0, problem)
    return out


def _frame_without_xpose(img: np.ndarray, opts: FramingOptions) -> Framing:
    small, f = downscaled(img, ANIMAL_DETECT_SIDE)
    boxes = detect_cat_faces(small)
    if boxes:
        box, idx = _pick(boxes, opts, lambda b: b[2] * b[3])
        x, y, w, h = (v / f for v in box)
        return frame_box(img, face_box_from_cat_box((x, y, w, h)), opts, method="cat_haar",
                         faces=len(boxes), face_index=idx)
    out = centred_fallback(img, opts)
    out.warnings.append(("animal_face_not_found",
                         f"no animal face found automatically: using a centred square; {POINTS_HINT}"))
    return out
