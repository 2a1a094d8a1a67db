"""The crop itself: what was asked (:class:`FramingOptions`), what came out (:class:`Framing`), the
picture as read from disk, and the crop built from a box or three points (upstream's formula in
geometry.py). The detectors (detect.py, animal.py, insightface.py, face_mesh.py) build on this
module and :mod:`engine.framing.frame` (``frame_portrait``) sits on top of them: no circle.

Why it is shaped like this:

* every coordinate we report (``box``, ``points``, ``M_c2o``) is in pixels of the **file as
  read from disk**, whatever we resize internally, so the Blender add-on can draw them on the
  image it shows and hand clicked points back unchanged;
* detection runs on a copy downscaled to :data:`DETECT_SIDE` (a strided subsample first, then
  area interpolation), and the crop is resampled only from the face's neighbourhood, so a
  6000×4000 photo costs about what a 1000×1000 one does once decoded;
* where the square leaves the picture it is filled with black (``BORDER_CONSTANT``, as
  upstream) instead of smeared edge pixels; transparent pictures are composited on grey first.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TypeVar

import cv2
import numpy as np

from engine.errors import BadRequest, ImageError
from engine.framing import geometry as geo
from engine.framing.image_header import MIN_IMAGE_SIDE, check_image_header
from engine.jobs import CropSpec, check_framing
from engine.pathguard import input_problem

CROP_SIZE = geo.CROP_SIZE
#: longer side of the copy the detectors see (faces down to ~4 % of the long side are found)
DETECT_SIDE = 640
#: background for transparent pixels: neutral mid-grey, not black
ALPHA_BACKGROUND = 128

POINTS_HINT = ("pass --crop points:LX,LY,RX,RY,MX,MY (image-left eye, image-right eye, mouth centre in "
               "pixels of the picture), or mark them with the Frame Face tool in Blender")
NO_FACE_HINT = f"{POINTS_HINT}; --crop X,Y,W,H gives a face box, --crop none uses the whole picture"

@dataclass(frozen=True)
class FramingOptions:
    """What the user asked for (CLI ``--crop/--scale/--vx/--vy/--face-index/--animal``)."""

    crop: CropSpec = "auto"            # parse_crop_arg() result
    scale: float = geo.SCALE
    vx: float = geo.VX
    vy: float = geo.VY
    face_index: int | None = None      # None: the largest face
    animal: bool = False
    weights_root: Path | None = None   # upstream detector ONNX files are used when present

    def validated(self) -> "FramingOptions":
        """The bounds of engine/jobs.py (the one place options are checked)."""
        check_framing(self.scale, self.vx, self.vy, self.face_index)
        return self


@dataclass
class Framing:
    """The crop and everything needed to report it, draw it, or paste frames back."""

    image: np.ndarray                  # (512,512,3) uint8 RGB: what stage one sees
    M_c2o: np.ndarray                  # (2,3): crop pixel → pixel of the original file
    method: str                        # mtcnn | insightface | haar | xpose | cat_haar | points | manual | none | fallback
    original_size: tuple[int, int]     # (width, height) of the file
    box: tuple[float, float, float, float] | None = None   # face box X,Y,W,H (original pixels)
    points: list[list[float]] | None = None                 # landmarks used (original pixels)
    angle_deg: float = 0.0
    faces: int = 0                     # faces the detector found
    face_index: int | None = None      # which one was used
    lip_open: float | None = None      # source lip-open ratio, when the landmarks allow it
    score: float | None = None         # detector confidence where it has one (X-Pose animal faces)
    detector_note: str = ""            # for the log: e.g. "X-Pose 7.9 s on cpu" (not in the JSON)
    warnings: list[tuple[str, str]] = field(default_factory=list)

    @property
    def M_o2c(self) -> np.ndarray:
        return cv2.invertAffineTransform(self.M_c2o)

    def M_c2o_scaled(self, fx: float, fy: float) -> np.ndarray:
        """The affine into a resized copy of the original (e.g. the ≤1280 px paste-back canvas)."""
        return np.diag([fx, fy]) @ self.M_c2o

    def to_json(self) -> dict[str, Any]:
        """The object ``engine crop --json`` prints and ``animate`` events carry."""
        r = lambda v: round(float(v), 3)  # noqa: E731
        return {
            "method": self.method,
            "box": None if self.box is None else [r(v) for v in self.box],
            "points": None if self.points is None else [[r(x), r(y)] for x, y in self.points],
            "angle_deg": r(self.angle_deg),
            "M_c2o": [[float(f"{v:.6g}") for v in row] for row in self.M_c2o.tolist()],
            "crop_size": CROP_SIZE,
            "image_size": list(self.original_size),
            "faces": self.faces,
            "face_index": self.face_index,
            "lip_open": None if self.lip_open is None else r(self.lip_open),
            "score": None if self.score is None else round(float(self.score), 4),
        }


# -- picture ------------------------------------------------------------------------------------

def _decode(data: np.ndarray) -> np.ndarray | None:
    """Decode once, keeping what matters: EXIF orientation (phone JPEGs are stored sideways; only
    IMREAD_COLOR applies it) and alpha (only IMREAD_UNCHANGED keeps it)."""
    head = data[:8].tobytes()
    if head[:2] == b"\xff\xd8":                       # JPEG: no alpha, often an EXIF orientation
        return cv2.imdecode(data, cv2.IMREAD_COLOR)
    raw = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if raw is None or head == b"\x89PNG\r\n\x1a\n" or (raw.ndim == 3 and raw.shape[2] in (2, 4)):
        return raw                                     # PNG (no EXIF in practice) or a picture with alpha
    oriented = cv2.imdecode(data, cv2.IMREAD_COLOR)    # TIFF, WebP, ... without alpha: orientation applies
    return oriented if oriented is not None else raw


def load_picture(path: str | Path) -> np.ndarray:
    """The file as RGB uint8 at full resolution: alpha composited on grey, 16-bit and grey handled."""
    p = Path(path)
    problem = input_problem(p)
    if problem:
        hint = "; pass an image file (PNG or JPEG)" if "folder" in problem else ""
        raise ImageError(f"portrait image {p} {problem}{hint}")
    data = np.fromfile(str(p), dtype=np.uint8)
    check_image_header(data, p)                        # before decoding: a header claiming 10^10 pixels
    img = _decode(data) if data.size else None
    if img is None or img.size == 0:
        raise ImageError(f"cannot read {p} as an image (corrupt or unsupported format; use PNG or JPEG)")
    if img.dtype != np.uint8:
        top = 65535.0 if img.dtype == np.uint16 else float(max(img.max(), 1))
        img = np.clip(img.astype(np.float32) * (255.0 / top) + 0.5, 0, 255).astype(np.uint8)
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    elif img.shape[2] == 4:
        a = img[..., 3:4].astype(np.float32) / 255.0
        rgb = cv2.cvtColor(np.ascontiguousarray(img[..., :3]), cv2.COLOR_BGR2RGB).astype(np.float32)
        img = np.clip(rgb * a + ALPHA_BACKGROUND * (1.0 - a) + 0.5, 0, 255).astype(np.uint8)
    elif img.shape[2] == 2:  # grey + alpha
        a = img[..., 1].astype(np.float32) / 255.0
        g = np.clip(img[..., 0] * a + ALPHA_BACKGROUND * (1.0 - a) + 0.5, 0, 255).astype(np.uint8)
        img = cv2.cvtColor(g, cv2.COLOR_GRAY2RGB)
    else:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    if min(img.shape[:2]) < MIN_IMAGE_SIDE:
        raise ImageError(f"{p} is too small ({img.shape[1]}x{img.shape[0]}); the engine needs at least "
                         f"{MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE} pixels (faces under ~256 pixels come out soft)")
    return img


def downscaled(img: np.ndarray, longest: int = DETECT_SIDE) -> tuple[np.ndarray, float]:
    """(copy with the longer side ≤ ``longest``, factor original→copy). Cost ∝ the copy, not the file."""
    h, w = img.shape[:2]
    f = min(1.0, longest / max(h, w))
    if f >= 1.0:
        return img, 1.0
    step = max(1, int(1.0 / f) // 2)       # strided subsample to ~2× the target, then area filter
    sub = img[::step, ::step]
    tw, th = max(1, round(w * f)), max(1, round(h * f))
    small = cv2.resize(np.ascontiguousarray(sub), (tw, th), interpolation=cv2.INTER_AREA)
    return small, tw / w


def warp_crop(img: np.ndarray, M_c2o: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    """Resample the crop; only the crop's neighbourhood is touched, pre-shrunk by area when large."""
    H, W = img.shape[:2]
    corners = geo.to_original(M_c2o, np.array([[0, 0], [size, 0], [0, size], [size, size]], np.float64))
    x0, y0 = np.floor(corners.min(0)).astype(int) - 2
    x1, y1 = np.ceil(corners.max(0)).astype(int) + 2
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, W), min(y1, H)
    if cx0 >= cx1 or cy0 >= cy1:
        return np.zeros((size, size, 3), np.uint8)
    roi = img[cy0:cy1, cx0:cx1]
    M = np.asarray(M_c2o, np.float64).copy()
    M[:, 2] -= (cx0, cy0)
    s = float(np.hypot(M[0, 0], M[1, 0]))  # original pixels per crop pixel
    if s > 1.5:                             # shrink the neighbourhood first: no aliasing
        f = 1.0 / s
        rw, rh = max(1, round(roi.shape[1] * f)), max(1, round(roi.shape[0] * f))
        fx, fy = rw / roi.shape[1], rh / roi.shape[0]
        roi = cv2.resize(np.ascontiguousarray(roi), (rw, rh), interpolation=cv2.INTER_AREA)
        M = np.diag([fx, fy]) @ M
        # pixel centres: area resize maps x → (x + 0.5)·f − 0.5
        M[0, 2] += 0.5 * fx - 0.5
        M[1, 2] += 0.5 * fy - 0.5
    return cv2.warpAffine(roi, M, (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))


# -- framing ------------------------------------------------------------------------------------

#: a detector's face (mtcnn's Face, haar's box): :func:`_pick` returns one of those it is given
FaceT = TypeVar("FaceT")


def _result(img: np.ndarray, fr: geo.Frame, method: str, **kw: Any) -> Framing:
    H, W = img.shape[:2]
    return Framing(warp_crop(img, fr.M_c2o), fr.M_c2o, method, (W, H), angle_deg=fr.angle_deg, **kw)


def frame_none(img: np.ndarray) -> Framing:
    """The whole picture squeezed to 512² (upstream without cropping)."""
    H, W = img.shape[:2]
    M = np.array([[W / CROP_SIZE, 0.0, 0.0], [0.0, H / CROP_SIZE, 0.0]], np.float64)
    small, _ = downscaled(img, 2 * CROP_SIZE)
    crop = cv2.resize(small, (CROP_SIZE, CROP_SIZE), interpolation=cv2.INTER_AREA)
    return Framing(crop, M, "none", (W, H))


def frame_box(img: np.ndarray, box: tuple[float, float, float, float], opts: FramingOptions,
              method: str = "manual", **kw: Any) -> Framing:
    """A face box (upright): the box stands in for upstream's landmark box."""
    x, y, w, h = (float(v) for v in box)
    ux, uy = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    fr = geo.frame_from_box(np.array([x + w / 2, y + h / 2]), ux, uy, np.array([-w / 2, -h / 2]),
                            np.array([w / 2, h / 2]), opts.scale, opts.vx, opts.vy)
    return _result(img, fr, method, box=(x, y, w, h), **kw)


def frame_three(img: np.ndarray, pts: np.ndarray, opts: FramingOptions, method: str, **kw: Any) -> Framing:
    """Image-left eye, image-right eye, mouth centre (3×2, original pixels) → upstream's crop
    (with ``--animal``: sized like upstream's 9-point X-Pose framing, engine/framing/geometry.py)."""
    fr = geo.frame_from_points(pts[0], pts[1], pts[2], opts.scale, opts.vx, opts.vy,
                               animal=opts.animal and method == "points")
    return _result(img, fr, method, **kw)


def _pick(faces: list[FaceT], opts: FramingOptions, area: Callable[[FaceT], float]) -> tuple[FaceT, int]:
    """The largest face, or --face-index N (faces ordered largest first)."""
    order = sorted(range(len(faces)), key=lambda i: -area(faces[i]))
    if opts.face_index is None:
        return faces[order[0]], 0
    if opts.face_index >= len(faces):
        raise BadRequest(f"--face-index {opts.face_index}: only {len(faces)} face(s) found "
                         f"(0 = the largest)")
    return faces[order[opts.face_index]], opts.face_index
