"""Face crop for the source portrait, with OpenCV only (no InsightFace package).

Why: LivePortrait's networks expect a head-and-shoulders square crop (face about 1/2.3 of
the side, slightly above centre). Upstream finds it with InsightFace + a 203-point landmark
ONNX; we keep the dependency list small:

* ``auto``: if the official detector ONNX files shipped with the LivePortrait weights are
  present (``insightface/models/buffalo_l/det_10g.onnx``), run SCRFD through ``cv2.dnn`` and
  crop around its box (best effort: not tested against real ONNX files in this repo's CI);
  otherwise OpenCV's bundled Haar cascade (frontal face), biggest face wins.
* ``X,Y,W,H``: a manual box (animals, profiles, hard cases), used as the face box.
* ``none``: the whole image resized to 512² (upstream ``flag_do_crop=False``).

Every crop is a similarity transform; we return the 2x3 affine crop→original so that the
rendered 512² frames can be pasted back (engine/render/pasteback.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from engine.errors import BadRequest, ImageError, NoFaceError

CROP_SIZE = 512
#: LivePortrait gradio defaults (crop side = SCALE x face size, centre moved by VY x side)
SCALE = 2.3
VX, VY = 0.0, -0.125

NO_FACE_HINT = ("pass --crop X,Y,W,H with the face box in pixels (e.g. for animals or profiles) "
                "or --crop none to use the whole picture")


@dataclass(frozen=True)
class CropResult:
    image: np.ndarray          # (512,512,3) uint8 RGB crop fed to stage one
    box: tuple[int, int, int, int] | None  # face box X,Y,W,H in the original (None for 'none')
    M_c2o: np.ndarray          # (2,3) float64: crop pixel -> original pixel
    method: str                # haar | scrfd | manual | none
    original_size: tuple[int, int]  # (width, height)

    @property
    def M_o2c(self) -> np.ndarray:
        return cv2.invertAffineTransform(self.M_c2o)


def load_image_rgb(path: str | Path) -> np.ndarray:
    """Read a portrait as RGB uint8 (alpha dropped, grey expanded); ImageError if unreadable."""
    p = Path(path)
    if not p.is_file():
        raise ImageError(f"portrait image {p} does not exist")
    data = np.fromfile(str(p), dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if img is None or img.size == 0:
        raise ImageError(f"cannot read {p} as an image (corrupt or unsupported format; use PNG or JPEG)")
    if min(img.shape[:2]) < 16:
        raise ImageError(f"{p} is too small ({img.shape[1]}x{img.shape[0]}); use a portrait of at least 256x256")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def resize_to_limit(img: np.ndarray, max_dim: int = 1280, division: int = 2) -> np.ndarray:
    """Upstream's source pre-processing: longer side ≤ max_dim, both sides multiples of 2."""
    h, w = img.shape[:2]
    if max(h, w) > max_dim:
        if w >= h:
            w, h = max_dim, int(h * max_dim / w)
        else:
            h, w = max_dim, int(w * max_dim / h)
        img = cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)
    h, w = img.shape[:2]
    return img[: h - h % division, : w - w % division]


def parse_crop_arg(value: str) -> str | tuple[int, int, int, int]:
    """``auto`` | ``none`` | ``X,Y,W,H`` (integers, W,H > 0)."""
    v = (value or "auto").strip().lower()
    if v in ("auto", "none"):
        return v
    parts = v.replace(" ", "").split(",")
    try:
        x, y, w, h = (int(round(float(p))) for p in parts)
    except ValueError:
        raise BadRequest(f"--crop must be auto, none or X,Y,W,H, got {value!r}") from None
    if w <= 0 or h <= 0:
        raise BadRequest(f"--crop box needs positive width and height, got {value!r}")
    return (x, y, w, h)


def _square_affine(cx: float, cy: float, side: float, size: int = CROP_SIZE) -> np.ndarray:
    """2x3 crop→original for an axis-aligned square of ``side`` px centred at (cx, cy)."""
    s = side / size
    return np.array([[s, 0.0, cx - side / 2], [0.0, s, cy - side / 2]], dtype=np.float64)


def crop_from_box(img: np.ndarray, box: tuple[float, float, float, float], *, scale: float = SCALE,
                  vx: float = VX, vy: float = VY, method: str = "manual") -> CropResult:
    """Square crop around a face box, LivePortrait-style, clamped to the image when possible.

    The crop side is ``scale·max(w,h)``; the centre moves by ``(vx, vy)·side``. When the
    square fits inside the image it is shifted inside; otherwise the border is replicated.
    """
    H, W = img.shape[:2]
    x, y, w, h = box
    side = scale * max(w, h)
    cx = x + w / 2 + vx * side
    cy = y + h / 2 + vy * side
    if side <= W:
        cx = min(max(cx, side / 2), W - side / 2)
    if side <= H:
        cy = min(max(cy, side / 2), H - side / 2)
    M_c2o = _square_affine(cx, cy, side)
    crop = cv2.warpAffine(img, cv2.invertAffineTransform(M_c2o), (CROP_SIZE, CROP_SIZE),
                          flags=cv2.INTER_AREA if side > CROP_SIZE else cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)
    ibox = tuple(int(round(v)) for v in box)
    return CropResult(crop, ibox, M_c2o, method, (W, H))  # type: ignore[arg-type]


def crop_none(img: np.ndarray) -> CropResult:
    """Whole image resized to 512² (aspect ratio not kept, as upstream without cropping)."""
    H, W = img.shape[:2]
    M_c2o = np.array([[W / CROP_SIZE, 0.0, 0.0], [0.0, H / CROP_SIZE, 0.0]], dtype=np.float64)
    crop = cv2.resize(img, (CROP_SIZE, CROP_SIZE), interpolation=cv2.INTER_LINEAR)
    return CropResult(crop, None, M_c2o, "none", (W, H))


def detect_faces_haar(img: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Frontal faces with a Haar cascade, most confident first.

    OpenCV 4.x: its ``CascadeClassifier`` + bundled cascade; OpenCV 5 (no cascades any more):
    the same cascade file, shipped with the engine, evaluated by engine/render/haar.py.
    """
    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    # detect on a bounded size: faster, and enough for a portrait's main face
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


def _scrfd_paths(weights_root: Path | None) -> Path | None:
    if weights_root is None:
        return None
    det = Path(weights_root) / "insightface/models/buffalo_l/det_10g.onnx"
    return det if det.is_file() else None


def detect_faces_scrfd(img: np.ndarray, det_path: Path, threshold: float = 0.5) -> list[tuple[int, int, int, int]]:
    """SCRFD (InsightFace det_10g) through cv2.dnn: 640² letterbox, strides 8/16/32, 2 anchors.

    Best effort: written from the published SCRFD output layout (score, distance-to-border
    boxes per anchor); not verified against the real ONNX file here.
    """
    net = cv2.dnn.readNetFromONNX(str(det_path))
    H, W = img.shape[:2]
    size = 640
    s = size / max(H, W)
    resized = cv2.resize(img, (int(round(W * s)), int(round(H * s))))
    canvas = np.zeros((size, size, 3), np.uint8)
    canvas[: resized.shape[0], : resized.shape[1]] = resized
    blob = cv2.dnn.blobFromImage(canvas, 1.0 / 128, (size, size), (127.5, 127.5, 127.5), swapRB=False)
    net.setInput(blob)
    outs = net.forward(net.getUnconnectedOutLayersNames())
    strides = (8, 16, 32)
    scores_by_len = {}
    for o in outs:
        o = o.reshape(-1, o.shape[-1])
        scores_by_len.setdefault(o.shape[-1], []).append(o)
    score_maps = sorted(scores_by_len.get(1, []), key=len, reverse=True)
    box_maps = sorted(scores_by_len.get(4, []), key=len, reverse=True)
    boxes, scores = [], []
    for stride, sc, bb in zip(strides, score_maps, box_maps):
        n = size // stride
        ys, xs = np.mgrid[:n, :n]
        centers = np.stack([xs, ys], -1).reshape(-1, 2).astype(np.float32) * stride
        centers = np.repeat(centers, 2, axis=0)  # 2 anchors per location
        keep = sc[:, 0] >= threshold
        d = bb[keep] * stride
        c = centers[keep]
        b = np.stack([c[:, 0] - d[:, 0], c[:, 1] - d[:, 1], c[:, 0] + d[:, 2], c[:, 1] + d[:, 3]], -1) / s
        boxes.append(b)
        scores.append(sc[keep, 0])
    if not boxes or not sum(len(b) for b in boxes):
        return []
    b = np.concatenate(boxes)
    sc = np.concatenate(scores)
    xywh = [[float(x0), float(y0), float(x1 - x0), float(y1 - y0)] for x0, y0, x1, y1 in b]
    idx = cv2.dnn.NMSBoxes(xywh, sc.tolist(), threshold, 0.4)
    out = [tuple(int(round(v)) for v in xywh[i]) for i in np.array(idx).reshape(-1)]
    return sorted(out, key=lambda r: r[2] * r[3], reverse=True)  # type: ignore[return-value]


def refine_with_landmarks(img: np.ndarray, box: tuple[int, int, int, int], lmk_path: Path) -> tuple[float, float, float, float]:
    """InsightFace 2d106det through cv2.dnn: 106 landmarks around ``box`` → their bounding box.

    Best effort (not verified against the real ONNX file here): 192² input, the face box
    enlarged ×1.5 around its centre, raw pixel values (the model normalises internally), output
    106×2 in [−1, 1] of the input square.
    """
    size = 192
    x, y, w, h = box
    cx, cy = x + w / 2, y + h / 2
    s = size / (max(w, h) * 1.5)
    M = np.array([[s, 0, size / 2 - s * cx], [0, s, size / 2 - s * cy]], dtype=np.float64)
    patch = cv2.warpAffine(img, M, (size, size), borderMode=cv2.BORDER_CONSTANT)
    net = cv2.dnn.readNetFromONNX(str(lmk_path))
    net.setInput(cv2.dnn.blobFromImage(patch, 1.0, (size, size), (0, 0, 0), swapRB=False))
    pred = np.asarray(net.forward()).reshape(-1, 2)[:106]
    pts = (pred + 1) * (size // 2)
    pts = (pts - M[:, 2]) / s  # back to the original image
    x0, y0 = pts.min(0)
    x1, y1 = pts.max(0)
    if not np.all(np.isfinite([x0, y0, x1, y1])) or x1 - x0 < 4 or y1 - y0 < 4:
        return (float(x), float(y), float(w), float(h))
    return (float(x0), float(y0), float(x1 - x0), float(y1 - y0))


def crop_portrait(img: np.ndarray, mode: str | tuple[int, int, int, int] = "auto",
                  weights_root: Path | None = None) -> CropResult:
    """Crop according to ``mode`` (see module doc). Raises NoFaceError when auto finds nothing."""
    if mode == "none":
        return crop_none(img)
    if isinstance(mode, tuple):
        x, y, w, h = mode
        H, W = img.shape[:2]
        if x >= W or y >= H or x + w <= 0 or y + h <= 0:
            raise BadRequest(f"--crop box {x},{y},{w},{h} lies outside the {W}x{H} image")
        return crop_from_box(img, mode, method="manual")
    det = _scrfd_paths(weights_root)
    if det is not None:
        try:
            faces = detect_faces_scrfd(img, det)
            if faces:
                box: tuple[float, float, float, float] = faces[0]
                lmk = det.parent / "2d106det.onnx"
                if lmk.is_file():
                    box = refine_with_landmarks(img, faces[0], lmk)
                return crop_from_box(img, box, method="scrfd")
        except cv2.error:
            pass  # fall back to Haar below
    faces = detect_faces_haar(img)
    if not faces:
        raise NoFaceError(f"no face found in the portrait; {NO_FACE_HINT}")
    return crop_from_box(img, faces[0], method="haar")
