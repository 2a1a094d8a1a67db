"""A small Viola–Jones (Haar cascade) face detector in numpy, for OpenCV builds without one.

Why: OpenCV 5 dropped ``cv2.CascadeClassifier`` and the bundled cascades from the main
package, yet the engine must find a face with no extra download. We ship OpenCV's
``haarcascade_frontalface_default.xml`` (Intel License, notice kept inside the file; gzip)
and evaluate it here. Where OpenCV still has ``CascadeClassifier`` (4.x), :func:`detect_faces_haar`
uses that. Framing owns every detector: this is the human detector's last fallback (no
``mtcnn`` package) and the animal framing's cat cascade (engine/framing/animal.py).

Evaluation follows OpenCV's HaarEvaluator: fixed 24×24 window over an image pyramid (scale
factor 1.1), integral images, variance normalisation over the inner (w−2)×(h−2) window,
stump classifiers ``leaf[0] if f < thr·σ·A else leaf[1]``, a stage passes when the sum of
its leaves ≥ the stage threshold; candidate windows are grouped by overlap and kept when
they have at least ``min_neighbors`` neighbours.
"""
from __future__ import annotations

import gzip
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

CASCADE = Path(__file__).with_name("data") / "haarcascade_frontalface_default.xml.gz"


@dataclass
class Stage:
    threshold: float
    feat: np.ndarray     # (n,) feature index
    thr: np.ndarray      # (n,) node thresholds
    left: np.ndarray     # (n,) leaf values
    right: np.ndarray    # (n,)


@dataclass
class Cascade:
    width: int
    height: int
    stages: list[Stage]
    rects: np.ndarray    # (F,3,4) x,y,w,h per rect (unused rects zero)
    weights: np.ndarray  # (F,3)


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split()]


@lru_cache(maxsize=2)
def load_cascade(path: str = str(CASCADE)) -> Cascade:
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as fh:
        root = ET.parse(fh).getroot()
    c = root.find("cascade")
    assert c is not None
    width, height = int(c.findtext("width")), int(c.findtext("height"))
    stages = []
    for st in c.find("stages"):
        feats, thrs, lefts, rights = [], [], [], []
        for wc in st.find("weakClassifiers"):
            nodes = _floats(wc.findtext("internalNodes"))
            leaves = _floats(wc.findtext("leafValues"))
            feats.append(int(nodes[2]))
            thrs.append(nodes[3])
            lefts.append(leaves[0])
            rights.append(leaves[1])
        stages.append(Stage(float(st.findtext("stageThreshold")), np.array(feats), np.array(thrs),
                            np.array(lefts), np.array(rights)))
    feats_xml = list(c.find("features"))
    rects = np.zeros((len(feats_xml), 3, 4), np.int64)
    weights = np.zeros((len(feats_xml), 3), np.float64)
    for i, f in enumerate(feats_xml):
        for j, r in enumerate(f.find("rects")):
            v = _floats(r.text)
            rects[i, j] = v[:4]
            weights[i, j] = v[4]
    return Cascade(width, height, stages, rects, weights)


def _rect_sum(ii: np.ndarray, xs: np.ndarray, ys: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Sum over rect r=(x,y,w,h) offset by window corners (xs,ys) using integral image ii."""
    x0, y0 = xs + r[..., 0], ys + r[..., 1]
    x1, y1 = x0 + r[..., 2], y0 + r[..., 3]
    return ii[y1, x1] - ii[y0, x1] - ii[y1, x0] + ii[y0, x0]


def _detect_scale(grey: np.ndarray, cas: Cascade, step: int) -> np.ndarray:
    """Windows (k,2) top-left corners (scaled image coords) that pass every stage."""
    h, w = grey.shape
    ww, wh = cas.width, cas.height
    if h < wh or w < ww:
        return np.zeros((0, 2), np.int64)
    g = grey.astype(np.float64)
    ii = cv2.integral(g, sdepth=cv2.CV_64F)                 # (h+1,w+1)
    ii2 = cv2.integral(g * g, sdepth=cv2.CV_64F)
    ys, xs = np.mgrid[0:h - wh + 1:step, 0:w - ww + 1:step]
    xs, ys = xs.ravel(), ys.ravel()
    norm = np.array([1, 1, ww - 2, wh - 2])
    area = float((ww - 2) * (wh - 2))
    s = _rect_sum(ii, xs, ys, norm)
    sq = _rect_sum(ii2, xs, ys, norm)
    nf = area * sq - s * s
    nf = np.where(nf > 0, np.sqrt(np.maximum(nf, 0)), 1.0)  # (k,)
    for st in cas.stages:
        if xs.size == 0:
            break
        r = cas.rects[st.feat]                              # (n,3,4)
        wts = cas.weights[st.feat]                          # (n,3)
        val = np.zeros((xs.size, st.feat.size))
        for j in range(3):
            rj = r[:, j]                                    # (n,4)
            used = wts[:, j] != 0
            if not used.any():
                continue
            sums = _rect_sum(ii, xs[:, None], ys[:, None], rj[None, :, :])  # (k,n)
            val += sums * wts[None, :, j]
        leaves = np.where(val < st.thr[None, :] * nf[:, None], st.left[None, :], st.right[None, :])
        keep = leaves.sum(1) >= st.threshold - 1e-6
        xs, ys, nf = xs[keep], ys[keep], nf[keep]
    return np.stack([xs, ys], 1)


def _group(rects: list[tuple[float, float, float, float]], min_neighbors: int, eps: float = 0.2):
    """OpenCV-style grouping: rects are similar if their corners differ by < eps·mean size."""
    n = len(rects)
    labels = list(range(n))

    def find(i: int) -> int:
        while labels[i] != i:
            labels[i] = labels[labels[i]]
            i = labels[i]
        return i

    for i in range(n):
        for j in range(i + 1, n):
            a, b = rects[i], rects[j]
            delta = eps * (min(a[2], b[2]) + min(a[3], b[3])) * 0.5
            if (abs(a[0] - b[0]) <= delta and abs(a[1] - b[1]) <= delta
                    and abs(a[0] + a[2] - b[0] - b[2]) <= delta and abs(a[1] + a[3] - b[1] - b[3]) <= delta):
                labels[find(i)] = find(j)
    groups: dict[int, list[tuple[float, float, float, float]]] = {}
    for i in range(n):
        groups.setdefault(find(i), []).append(rects[i])
    out = []
    for members in groups.values():
        if len(members) <= min_neighbors:
            continue
        m = np.mean(np.array(members), axis=0)
        out.append((tuple(int(round(v)) for v in m), len(members)))
    return out


def detect_faces(grey: np.ndarray, *, scale_factor: float = 1.1, min_neighbors: int = 3,
                 min_size: int = 24, cascade_path: str = str(CASCADE)) -> list[tuple[int, int, int, int]]:
    """Faces (x,y,w,h) in ``grey`` (uint8), most confident (most neighbours) first."""
    cas = load_cascade(cascade_path)
    h, w = grey.shape
    found: list[tuple[float, float, float, float]] = []
    factor = max(1.0, min_size / cas.width)
    while True:
        sw, sh = int(round(w / factor)), int(round(h / factor))
        if sw < cas.width or sh < cas.height:
            break
        small = cv2.resize(grey, (sw, sh), interpolation=cv2.INTER_LINEAR)
        step = 1 if factor > 2 else 2
        for x, y in _detect_scale(small, cas, step):
            found.append((x * factor, y * factor, cas.width * factor, cas.height * factor))
        factor *= scale_factor
    groups = _group(found, min_neighbors)
    # most neighbours first: real faces collect many overlapping hits, false ones few
    groups.sort(key=lambda g: (g[1], g[0][2] * g[0][3]), reverse=True)
    return [g[0] for g in groups]  # type: ignore[misc]


def detect_faces_haar(img: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Frontal faces (x, y, w, h) with a Haar cascade, most confident first (no landmarks).

    OpenCV 4.x: its ``CascadeClassifier`` + bundled cascade; OpenCV 5 (no cascades any more):
    the same cascade file, shipped with the engine, evaluated by :func:`detect_faces` here.
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
        found = detect_faces(small, scale_factor=1.1, min_neighbors=4, min_size=min_side)
    return [tuple(int(round(v / f)) for v in b) for b in found]  # type: ignore[misc]
