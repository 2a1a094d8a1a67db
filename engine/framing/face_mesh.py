"""MediaPipe's 468-point face mesh on one face → inner-lip points → the source lip-open ratio.

Why: upstream's lip normalisation (``lip_delta_before_animation``, spec §3) needs the source's
lip-open ratio, which five detector points or three clicked points cannot give. MediaPipe's
``face_landmark.tflite`` (Apache-2.0, vendored in ``data/`` with its licence and NOTICE) gives the
inner lips; we run it with our own TFLite reader + torch executor (``tflite.py``), so nothing is
downloaded and no new dependency is installed.

How, as MediaPipe does it: the model sees a 192×192 RGB crop (values in [0, 1]: the range in the
``face_landmark_cpu`` graph registered inside the 0.10.14 wheel's ``_framework_bindings`` library,
``output_tensor_float_range {min: 0 max: 1}``), a square turned so
the face is upright, 1.5× the face's extent, and returns 468 (x, y, z) points in crop pixels and a
face-presence logit. Pass 1 places that square from the detector's eyes and mouth; pass 2 places
it again from pass 1's landmarks (MediaPipe's tracking ROI: the landmarks' box in the eye-line frame
× 1.5), which makes the result nearly independent of the detector's box. Crops are resampled from
the full-resolution picture, only around the face (``crop.warp_crop``), so a 6000×4000 photo
costs what a small one does.

``lip_open`` = |p13 − p14| / |p61 − p291|: inner upper-lip midpoint to inner lower-lip midpoint,
over mouth-corner to mouth-corner, in 2-D picture pixels (see README.md beside this file for why
this matches upstream's |p90 − p102| / |p48 − p66| on its 203 points).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from engine.framing import geometry as geo
from engine.framing import tflite

if TYPE_CHECKING:
    from engine.framing.crop import Framing

MODEL_PATH = Path(__file__).with_name("data") / "face_landmark.tflite"
INPUT_SIZE = 192
#: MediaPipe's ROI: the face's extent × 1.5
ROI_SCALE = 1.5
#: pass-1 ROI from eyes + mouth, in units of the eye-centre → mouth-centre distance d: the mesh's
#: box in the eye frame is ≈ 2.45 d tall, centred ≈ 0.48 d below the eye centre (fitted on pass-2
#: ROIs of examples/portrait.jpg and grace_hopper; pass 2 re-centres anyway)
EXTENT_PER_D = 2.45
CENTRE_BELOW_EYES_D = 0.48
#: MediaPipe's default: faces below this presence probability are not trusted
MIN_PRESENCE = 0.5
#: mesh indices (MediaPipe canonical face mesh)
UPPER_INNER_LIP, LOWER_INNER_LIP, MOUTH_CORNER_L, MOUTH_CORNER_R = 13, 14, 61, 291
EYE_OUTER_L, EYE_OUTER_R = 33, 263   # image-left / image-right eye outer corners on a frontal face


@dataclass(frozen=True)
class Mesh:
    """468 landmarks of one face, in pixels of the picture given to :func:`run`."""

    points: np.ndarray   # (468, 3): x, y in picture pixels; z in the same scale (relative depth)
    presence: float      # face-presence probability of the last pass

    @property
    def lip_open(self) -> float:
        """Inner-lip gap over mouth width (2-D)."""
        p = self.points[:, :2]
        gap = float(np.hypot(*(p[UPPER_INNER_LIP] - p[LOWER_INNER_LIP])))
        width = float(np.hypot(*(p[MOUTH_CORNER_L] - p[MOUTH_CORNER_R])))
        return gap / width if width > 1e-6 else float("nan")


@lru_cache(maxsize=1)
def program() -> tflite.TorchProgram:
    """The face-mesh model, read and converted once per process (~10 ms)."""
    return tflite.TorchProgram(tflite.load_model(MODEL_PATH))


def roi_from_points(eye_l: np.ndarray, eye_r: np.ndarray, mouth: np.ndarray) -> np.ndarray:
    """Pass-1 crop (2×3 ``M_c2o`` into 192²) from image-left eye, image-right eye and mouth centre."""
    e0 = (np.asarray(eye_l, np.float64) + np.asarray(eye_r, np.float64)) / 2
    ux, uy = geo.axes(e0, mouth)
    d = float(np.hypot(*(np.asarray(mouth, np.float64) - e0)))
    centre = e0 + uy * (CENTRE_BELOW_EYES_D * d)
    return geo.affine_c2o(centre, ROI_SCALE * EXTENT_PER_D * d, ux, uy, INPUT_SIZE)


def roi_from_mesh(points: np.ndarray) -> np.ndarray:
    """Pass-2 crop from a mesh, as MediaPipe tracks: the points' box in the eye-line frame × 1.5."""
    p = np.asarray(points, np.float64)[:, :2]
    v = p[EYE_OUTER_R] - p[EYE_OUTER_L]
    n = float(np.hypot(*v))
    if not np.isfinite(n) or n < 1e-6:
        raise ValueError("degenerate mesh")
    ux = v / n
    uy = np.array([-ux[1], ux[0]])
    r = p @ np.stack([ux, uy]).T
    lo, hi = r.min(0), r.max(0)
    c = (lo + hi) / 2
    centre = ux * c[0] + uy * c[1]
    return geo.affine_c2o(centre, ROI_SCALE * float(max(hi - lo)), ux, uy, INPUT_SIZE)


def run_crop(img: np.ndarray, M_c2o: np.ndarray) -> Mesh:
    """One pass: the 192² crop ``M_c2o`` of ``img`` (RGB uint8) → the mesh in ``img`` pixels."""
    from engine.framing.crop import warp_crop

    crop = warp_crop(img, M_c2o, INPUT_SIZE)
    x = crop.astype(np.float32)[None] * (1.0 / 255.0)
    lm, score = program()(x)
    pts = lm.reshape(-1, 3).astype(np.float64)
    scale = float(np.hypot(M_c2o[0, 0], M_c2o[1, 0]))
    out = np.empty_like(pts)
    out[:, :2] = geo.to_original(M_c2o, pts[:, :2])
    out[:, 2] = pts[:, 2] * scale
    presence = float(1.0 / (1.0 + np.exp(-float(score.reshape(-1)[0]))))
    return Mesh(out, presence)


def run(img: np.ndarray, eye_l: np.ndarray, eye_r: np.ndarray, mouth: np.ndarray, passes: int = 2) -> Mesh:
    """The mesh of the face whose eyes and mouth centre are given (pixels of ``img``)."""
    mesh = run_crop(img, roi_from_points(eye_l, eye_r, mouth))
    for _ in range(passes - 1):
        if mesh.presence < MIN_PRESENCE:
            break
        mesh = run_crop(img, roi_from_mesh(mesh.points))
    return mesh


def lip_open(img: np.ndarray, eye_l: np.ndarray, eye_r: np.ndarray, mouth: np.ndarray
             ) -> tuple[float | None, tuple[str, str] | None]:
    """(ratio, None), or (None, warning) when the mesh cannot be trusted: never raises for a bad face."""
    try:
        mesh = run(img, eye_l, eye_r, mouth)
    except (ValueError, tflite.TFLiteError, RuntimeError) as e:
        return None, ("lip_open_unavailable", f"face mesh failed ({e}); lip normalisation stays off")
    ratio = mesh.lip_open
    if mesh.presence < MIN_PRESENCE or not np.isfinite(ratio):
        return None, ("lip_open_unavailable", f"face mesh not confident on this face (presence "
                                              f"{mesh.presence:.2f}); lip normalisation stays off")
    return ratio, None


def attach_lip_open(img: np.ndarray, framing: "Framing", eye_l: np.ndarray, eye_r: np.ndarray,
                    mouth: np.ndarray) -> "Framing":
    """Set ``framing.lip_open`` for the chosen human face (or a warning); the crop is left as it is."""
    ratio, warning = lip_open(img, eye_l, eye_r, mouth)
    framing.lip_open = ratio
    if warning is not None:
        framing.warnings.append(warning)
    return framing
