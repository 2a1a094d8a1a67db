"""Upstream's own detectors, when the weights folder has them: SCRFD (det_10g) + 2d106det, via cv2.dnn.

Why: users who downloaded LivePortrait's full weights have InsightFace's ONNX files
(``insightface/models/buffalo_l/``); upstream frames from them, so we do too. Licence: those
files are InsightFace's (non-commercial), which is why they are never the default and never
shipped. Written from the published model signatures: SCRFD takes a 640² letterboxed RGB
image ``(x − 127.5)/128`` and returns, for strides 8/16/32 with 2 anchors per cell, scores
(N×1), distance-to-border boxes (N×4) and five points (N×10) in stride units; 2d106det takes
a 192² RGB patch (raw 0–255, the model normalises) of the face box enlarged ×1.5 and returns
212 numbers, 106 (x, y) pairs in [−1, 1] of the patch. The tests export ONNX models with
exactly these signatures (tests/engine/test_framing_onnx.py).
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from engine.framing import face_mesh
from engine.framing import geometry as geo
from engine.framing.crop import Framing, FramingOptions, _pick, _result

DET_SIZE = 640
LMK_SIZE = 192
STRIDES = (8, 16, 32)


@lru_cache(maxsize=2)
def _net(path: str, mtime: float) -> "cv2.dnn.Net":  # noqa: ARG001 - mtime invalidates the cache
    return cv2.dnn.readNetFromONNX(path)


def _load(path: Path) -> "cv2.dnn.Net":
    return _net(str(path), path.stat().st_mtime)


def detect_scrfd(img: np.ndarray, det_path: Path, threshold: float = 0.5) -> list[tuple[np.ndarray, float, np.ndarray]]:
    """[(box x0,y0,x1,y1, score, points 5×2)] in ``img`` pixels, best first."""
    net = _load(det_path)
    H, W = img.shape[:2]
    s = DET_SIZE / max(H, W)
    resized = cv2.resize(img, (max(1, int(round(W * s))), max(1, int(round(H * s)))))
    canvas = np.zeros((DET_SIZE, DET_SIZE, 3), np.uint8)
    canvas[: resized.shape[0], : resized.shape[1]] = resized
    blob = cv2.dnn.blobFromImage(canvas, 1.0 / 128, (DET_SIZE, DET_SIZE), (127.5, 127.5, 127.5), swapRB=False)
    net.setInput(blob)
    outs = [np.asarray(o) for o in net.forward(net.getUnconnectedOutLayersNames())]
    by_width: dict[int, list[np.ndarray]] = {}
    for o in outs:
        o = o.reshape(-1, o.shape[-1])
        by_width.setdefault(o.shape[-1], []).append(o)
    # per stride, larger maps first (stride 8 has the most anchors)
    scores = sorted(by_width.get(1, []), key=len, reverse=True)
    boxes = sorted(by_width.get(4, []), key=len, reverse=True)
    kpss = sorted(by_width.get(10, []), key=len, reverse=True)
    found_b, found_s, found_k = [], [], []
    for i, stride in enumerate(STRIDES):
        if i >= len(scores) or i >= len(boxes):
            break
        n = DET_SIZE // stride
        ys, xs = np.mgrid[:n, :n]
        centers = np.repeat(np.stack([xs, ys], -1).reshape(-1, 2).astype(np.float32) * stride, 2, axis=0)
        sc = scores[i][:, 0]
        keep = sc >= threshold
        if not keep.any():
            continue
        d = boxes[i][keep] * stride
        c = centers[keep]
        found_b.append(np.stack([c[:, 0] - d[:, 0], c[:, 1] - d[:, 1], c[:, 0] + d[:, 2], c[:, 1] + d[:, 3]], -1) / s)
        found_s.append(sc[keep])
        if i < len(kpss):
            k = kpss[i][keep].reshape(-1, 5, 2) * stride + c[:, None, :]
            found_k.append(k / s)
        else:
            found_k.append(np.full((int(keep.sum()), 5, 2), np.nan))
    if not found_b:
        return []
    b, sc, k = np.concatenate(found_b), np.concatenate(found_s), np.concatenate(found_k)
    xywh = [[float(x0), float(y0), float(x1 - x0), float(y1 - y0)] for x0, y0, x1, y1 in b]
    idx = np.array(cv2.dnn.NMSBoxes(xywh, sc.tolist(), threshold, 0.4)).reshape(-1)
    return sorted(((b[i], float(sc[i]), k[i]) for i in idx), key=lambda t: -t[1])


def landmarks_106(img: np.ndarray, box: np.ndarray, lmk_path: Path) -> np.ndarray | None:
    """106 (x, y) points in ``img`` pixels around the face ``box`` (x0,y0,x1,y1), or None."""
    x0, y0, x1, y1 = box
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    s = LMK_SIZE / (max(x1 - x0, y1 - y0) * 1.5)
    M = np.array([[s, 0, LMK_SIZE / 2 - s * cx], [0, s, LMK_SIZE / 2 - s * cy]], np.float64)
    patch = cv2.warpAffine(img, M, (LMK_SIZE, LMK_SIZE), borderMode=cv2.BORDER_CONSTANT)
    net = _load(lmk_path)
    net.setInput(cv2.dnn.blobFromImage(patch, 1.0, (LMK_SIZE, LMK_SIZE), (0, 0, 0), swapRB=False))
    pred = np.asarray(net.forward()).reshape(-1, 2)[:106]
    if pred.shape != (106, 2) or not np.isfinite(pred).all():
        return None
    pts = (pred + 1) * (LMK_SIZE / 2)
    return (pts - M[:, 2]) / s


def frame(img: np.ndarray, small: np.ndarray, f: float, files: tuple[Path, Path | None],
          opts: FramingOptions) -> Framing | None:
    """Frame from upstream's detectors; None when they cannot run (then the default detector does)."""
    det, lmk = files
    try:
        faces = detect_scrfd(small, det)
    except cv2.error:
        return None
    faces = [fc for fc in faces if np.isfinite(fc[2]).all()]
    if not faces:
        return None
    (box, score, kps), idx = _pick(faces, opts, lambda t: (t[0][2] - t[0][0]) * (t[0][3] - t[0][1]))
    kps = kps / f
    e0 = (kps[0] + kps[1]) / 2
    e1 = (kps[3] + kps[4]) / 2
    pts106 = None
    if lmk is not None:
        try:
            pts106 = landmarks_106(small, box, lmk)
        except cv2.error:
            pts106 = None
    obox = tuple(float(v) for v in (box[0] / f, box[1] / f, (box[2] - box[0]) / f, (box[3] - box[1]) / f))
    if pts106 is not None:
        pts = pts106 / f
        fr = geo.frame_from_landmarks(pts, e0, e1, opts.scale, opts.vx, opts.vy)
        out = _result(img, fr, "insightface", box=obox, points=pts.tolist(), faces=len(faces), face_index=idx)
    else:
        fr = geo.frame_from_points(kps[0], kps[1], e1, opts.scale, opts.vx, opts.vy)
        out = _result(img, fr, "insightface", box=obox, points=kps.tolist(), faces=len(faces), face_index=idx)
    # lip_open from the same face mesh as the default path (one definition of the ratio, whatever
    # detector framed the face), placed from SCRFD's eyes and mouth corners
    return face_mesh.attach_lip_open(img, out, kps[0], kps[1], e1)
