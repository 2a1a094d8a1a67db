"""Human face detector with five landmarks: MTCNN, run with torch, weights from the ``mtcnn`` wheel.

Why this detector: it is the only licence-clean face detector *with landmarks* we found on PyPI
whose package brings neither a second ``cv2`` nor TensorFlow/JAX: the ``mtcnn`` wheel (MIT,
1.5 MB of weights in ``mtcnn/assets/weights/*.lz4``) depends only on ``joblib`` + ``lz4``
(TensorFlow is an optional extra we never install or import). We read its three weight lists
with joblib and evaluate the networks ourselves in torch (already an engine dependency), so
nothing is downloaded at run time. (The alternatives and the measurements are in the commit
that added this file and in engine/framing/README.md.)

The algorithm is the published MTCNN cascade (Zhang et al. 2016): P-Net proposes 12-px
windows over an image pyramid, R-Net (24²) and O-Net (48²) refine them; O-Net also regresses
five points: image-left eye, image-right eye, nose tip, mouth corners. Inputs are RGB,
``(x − 127.5) / 128``; Keras-layout weights (kernels HWIO, dense ``in×out``, dense inputs
flattened in (W, H, C) order) are converted once at load.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

#: thresholds of the three stages and the pyramid factor (the published defaults)
THRESHOLDS = (0.6, 0.7, 0.7)
PYRAMID_FACTOR = 0.709


@dataclass(frozen=True)
class Face:
    """One detection in the coordinates of the image given to :func:`detect`."""

    box: tuple[float, float, float, float]   # x, y, w, h
    score: float
    points: np.ndarray                      # (5, 2): left eye, right eye, nose, mouth left, mouth right


def weights_dir() -> Path | None:
    """Folder of the ``mtcnn`` wheel's weights, found without importing the package (it imports TF)."""
    spec = importlib.util.find_spec("mtcnn")
    if spec is None or not spec.submodule_search_locations:
        return None
    d = Path(list(spec.submodule_search_locations)[0]) / "assets" / "weights"
    return d if (d / "onet.lz4").is_file() else None


def available() -> bool:
    return weights_dir() is not None


class _Nets:
    """The three networks as plain torch functions over converted weights."""

    def __init__(self, root: Path) -> None:
        import joblib
        import torch

        def conv(w: np.ndarray) -> "torch.Tensor":
            return torch.from_numpy(np.ascontiguousarray(w.transpose(3, 2, 0, 1)))

        def t(w: np.ndarray) -> "torch.Tensor":
            return torch.from_numpy(np.ascontiguousarray(w))

        self.torch = torch
        p = joblib.load(root / "pnet.lz4")
        self.p = [conv(p[0]), t(p[1]), t(p[2].reshape(-1)), conv(p[3]), t(p[4]), t(p[5].reshape(-1)),
                  conv(p[6]), t(p[7]), t(p[8].reshape(-1)), conv(p[9]), t(p[10]), conv(p[11]), t(p[12])]
        r = joblib.load(root / "rnet.lz4")
        self.r = [conv(r[0]), t(r[1]), t(r[2].reshape(-1)), conv(r[3]), t(r[4]), t(r[5].reshape(-1)),
                  conv(r[6]), t(r[7]), t(r[8].reshape(-1)), t(r[9].T), t(r[10]), t(r[11]),
                  t(r[12].T), t(r[13]), t(r[14].T), t(r[15])]
        o = joblib.load(root / "onet.lz4")
        self.o = [conv(o[0]), t(o[1]), t(o[2].reshape(-1)), conv(o[3]), t(o[4]), t(o[5].reshape(-1)),
                  conv(o[6]), t(o[7]), t(o[8].reshape(-1)), conv(o[9]), t(o[10]), t(o[11].reshape(-1)),
                  t(o[12].T), t(o[13]), t(o[14]), t(o[15].T), t(o[16]), t(o[17].T), t(o[18]),
                  t(o[19].T), t(o[20])]

    def pnet(self, x):  # x: (1,3,H,W) → reg (1,4,h,w), prob (1,h,w)
        F = self.torch.nn.functional
        w = self.p
        x = F.prelu(F.conv2d(x, w[0], w[1]), w[2])
        x = F.max_pool2d(x, 2, 2, ceil_mode=True)
        x = F.prelu(F.conv2d(x, w[3], w[4]), w[5])
        x = F.prelu(F.conv2d(x, w[6], w[7]), w[8])
        return F.conv2d(x, w[9], w[10]), F.softmax(F.conv2d(x, w[11], w[12]), dim=1)[:, 1]

    def rnet(self, x):  # (N,3,24,24) → reg (N,4), prob (N,)
        F = self.torch.nn.functional
        w = self.r
        x = F.prelu(F.conv2d(x, w[0], w[1]), w[2])
        x = F.max_pool2d(x, 3, 2, ceil_mode=True)
        x = F.prelu(F.conv2d(x, w[3], w[4]), w[5])
        x = F.max_pool2d(x, 3, 2)
        x = F.prelu(F.conv2d(x, w[6], w[7]), w[8])
        x = x.permute(0, 3, 2, 1).reshape(x.shape[0], -1)  # Keras Permute((2,1,3)) + Flatten
        x = F.prelu(F.linear(x, w[9], w[10]), w[11])
        return F.linear(x, w[12], w[13]), F.softmax(F.linear(x, w[14], w[15]), dim=1)[:, 1]

    def onet(self, x):  # (N,3,48,48) → reg (N,4), points (N,10), prob (N,)
        F = self.torch.nn.functional
        w = self.o
        x = F.prelu(F.conv2d(x, w[0], w[1]), w[2])
        x = F.max_pool2d(x, 3, 2, ceil_mode=True)
        x = F.prelu(F.conv2d(x, w[3], w[4]), w[5])
        x = F.max_pool2d(x, 3, 2)
        x = F.prelu(F.conv2d(x, w[6], w[7]), w[8])
        x = F.max_pool2d(x, 2, 2, ceil_mode=True)
        x = F.prelu(F.conv2d(x, w[9], w[10]), w[11])
        x = x.permute(0, 3, 2, 1).reshape(x.shape[0], -1)
        x = F.prelu(F.linear(x, w[12], w[13]), w[14])
        return (F.linear(x, w[15], w[16]), F.linear(x, w[17], w[18]),
                F.softmax(F.linear(x, w[19], w[20]), dim=1)[:, 1])


@lru_cache(maxsize=1)
def _nets() -> _Nets:
    root = weights_dir()
    if root is None:
        raise FileNotFoundError("the mtcnn package (face detector weights) is not installed")
    return _Nets(root)


def _nms(boxes: np.ndarray, scores: np.ndarray, thr: float, mode: str = "union") -> np.ndarray:
    """Indices kept by greedy non-maximum suppression over x0,y0,x1,y1 boxes."""
    if len(boxes) == 0:
        return np.zeros(0, int)
    x0, y0, x1, y1 = boxes.T
    area = (x1 - x0 + 1) * (y1 - y0 + 1)
    order = np.argsort(-scores)
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        iw = np.maximum(0.0, np.minimum(x1[i], x1[rest]) - np.maximum(x0[i], x0[rest]) + 1)
        ih = np.maximum(0.0, np.minimum(y1[i], y1[rest]) - np.maximum(y0[i], y0[rest]) + 1)
        inter = iw * ih
        den = np.minimum(area[i], area[rest]) if mode == "min" else area[i] + area[rest] - inter
        order = rest[inter / den <= thr]
    return np.asarray(keep, int)


def _square(boxes: np.ndarray) -> np.ndarray:
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    out = boxes.copy()
    out[:, 0] = boxes[:, 0] + w / 2 - side / 2
    out[:, 1] = boxes[:, 1] + h / 2 - side / 2
    out[:, 2] = out[:, 0] + side
    out[:, 3] = out[:, 1] + side
    return out


def _regress(boxes: np.ndarray, reg: np.ndarray) -> np.ndarray:
    w = (boxes[:, 2] - boxes[:, 0] + 1)[:, None]
    h = (boxes[:, 3] - boxes[:, 1] + 1)[:, None]
    return boxes + reg * np.concatenate([w, h, w, h], axis=1)


def _patches(img: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """Resample each box to size² (constant 0 = mid-grey outside, like a padded crop)."""
    out = np.empty((len(boxes), size, size, 3), np.float32)
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        sx = (x1 - x0 + 1) / size
        sy = (y1 - y0 + 1) / size
        M = np.array([[sx, 0, x0 + 0.5 * sx - 0.5], [0, sy, y0 + 0.5 * sy - 0.5]], np.float64)
        out[i] = cv2.warpAffine(img, M, (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                borderMode=cv2.BORDER_CONSTANT, borderValue=(0.0, 0.0, 0.0))
    return out


def detect(img: np.ndarray, min_face: int = 20) -> list[Face]:
    """All faces in ``img`` (H,W,3 uint8 RGB), most confident first.

    Callers pass a downscaled copy (a few hundred pixels): the cost grows with the pixel count.
    """
    import torch

    nets = _nets()
    x = (img.astype(np.float32) - 127.5) / 128.0
    H, W = x.shape[:2]
    # stage 1: P-Net over the pyramid
    cand = []
    scale = 12.0 / min_face
    with torch.inference_mode():
        while min(H, W) * scale >= 12:
            hs, ws = int(np.ceil(H * scale)), int(np.ceil(W * scale))
            level = cv2.resize(x, (ws, hs), interpolation=cv2.INTER_AREA)
            reg, prob = nets.pnet(torch.from_numpy(level.transpose(2, 0, 1)[None].copy()))
            prob = prob[0].numpy()
            ys, xs = np.nonzero(prob > THRESHOLDS[0])
            if len(ys):
                r = reg[0].numpy()[:, ys, xs].T
                b = np.stack([(2 * xs + 1) / scale, (2 * ys + 1) / scale,
                              (2 * xs + 12) / scale, (2 * ys + 12) / scale], 1)
                s = prob[ys, xs]
                keep = _nms(b, s, 0.5)
                cand.append(np.concatenate([b[keep], s[keep, None], r[keep]], 1))
            scale *= PYRAMID_FACTOR
        if not cand:
            return []
        c = np.concatenate(cand)
        c = c[_nms(c[:, :4], c[:, 4], 0.7)]
        boxes = _square(_regress(c[:, :4], c[:, 5:9]))
        # stage 2: R-Net
        reg, prob = nets.rnet(torch.from_numpy(_patches(x, boxes, 24).transpose(0, 3, 1, 2).copy()))
        prob, reg = prob.numpy(), reg.numpy()
        keep = prob > THRESHOLDS[1]
        boxes, prob, reg = boxes[keep], prob[keep], reg[keep]
        if not len(boxes):
            return []
        k = _nms(boxes, prob, 0.7)
        boxes = _square(_regress(boxes[k], reg[k]))
        # stage 3: O-Net (+ five points)
        reg, pts, prob = nets.onet(torch.from_numpy(_patches(x, boxes, 48).transpose(0, 3, 1, 2).copy()))
        reg, pts, prob = reg.numpy(), pts.numpy(), prob.numpy()
    keep = prob > THRESHOLDS[2]
    boxes, reg, pts, prob = boxes[keep], reg[keep], pts[keep], prob[keep]
    if not len(boxes):
        return []
    w = (boxes[:, 2] - boxes[:, 0] + 1)[:, None]
    h = (boxes[:, 3] - boxes[:, 1] + 1)[:, None]
    px = boxes[:, 0:1] + pts[:, 0:5] * w
    py = boxes[:, 1:2] + pts[:, 5:10] * h
    boxes = _regress(boxes, reg)
    k = _nms(boxes, prob, 0.7, mode="min")
    faces = []
    for i in k:
        x0, y0, x1, y1 = boxes[i]
        faces.append(Face((float(x0), float(y0), float(x1 - x0), float(y1 - y0)), float(prob[i]),
                          np.stack([px[i], py[i]], 1).astype(np.float64)))
    return sorted(faces, key=lambda f: -f.score)
