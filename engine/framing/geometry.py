"""Upstream's framing formula: landmarks → the rotated square crop and its 2×3 affine.

Why here and alone: every way of framing (detector landmarks, the user's three clicked points,
upstream's own 106-point model) ends in this one formula (LivePortrait ``src/utils/crop.py``,
restated in shared/spec/upstream_spec.md §3 "Cropping"):

* e0 = eye centre, e1 = lip centre; uy = (e1 − e0)/|e1 − e0| points down the face,
  ux = (uy_y, −uy_x) points to the image right of an upright face;
* the landmarks, rotated into (ux, uy), give a box; its larger side × ``scale`` is the crop
  side; the centre is the box centre moved by ``(vx, vy)·side`` along (ux, uy);
* the crop is that square, rotated so that uy points straight down (a tilted head comes out
  upright), warped to 512² with a constant black border where it leaves the picture.

Sparse point sets (five detector points, three clicked points) have no brow-to-chin box;
:func:`virtual_box` stands in for the 203-point box that upstream would measure, sized from
the eye–mouth distance and the eye distance so that a typical face lands where upstream puts
it (eye midpoint at y ≈ 0.54 of the crop, eye-to-mouth ≈ 0.205 of the side at scale 2.3).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from engine.contract.schema import FRAMING_SCALE as SCALE, FRAMING_VX as VX, FRAMING_VY as VY  # noqa: F401  (upstream app defaults)

CROP_SIZE = 512

#: virtual 203-point box for sparse points, in units of the eye-to-mouth distance d:
#: side = BOX_PER_D · max(d, EYE_TO_D · eye distance); centre BOX_CENTRE_D · d below the eyes.
#: Derived from the target window (eye y 0.54, eye–mouth 0.205 of the side at scale 2.3):
#: 1 / (0.205 · 2.3) = 2.12 and (0.125 − 0.04) · 2.3 · 2.12 = 0.414. The eye distance only
#: takes over when it exceeds d / 0.85 (a face seen from below or a wide cartoon face): on
#: frontal photos the pupil distance is 0.9–1.15 × d, so d sets the size there.
BOX_PER_D = 2.12
BOX_CENTRE_D = 0.414
EYE_TO_D = 0.85

#: animals: the stand-in for the box of X-Pose's 9 points (eye corners, nose, lips), in units of the
#: eye-to-mouth distance d and the eye distance e: side = max(ANIMAL_BOX_PER_D·d, ANIMAL_BOX_PER_EYE·e),
#: centre ANIMAL_CENTRE_D·d below the eye centre. Width and centre are measured on a hand-labelled
#: cat (scikit-image ``chelsea``, CC0): its 9 points span 1.39 e across (outer eye corners), centred
#: 0.416 d below the eyes. The cat's width decides its size, so the height term comes from a
#: muzzle-heavy (dog-like) layout instead: eye corners ~0.1 d above the eye line, lower lip ~0.1 d
#: below the mouth centre → 1.2 d. Eye-to-mouth then lands at 0.283 of the crop side at scale 2.3 on
#: the cat, where upstream's 9-point framing puts it (0.283), instead of the human sizing's 0.205.
ANIMAL_BOX_PER_D = 1.2
ANIMAL_BOX_PER_EYE = 1.39
ANIMAL_CENTRE_D = 0.416


@dataclass(frozen=True)
class Frame:
    """A similarity crop: centre and side in original pixels, the face's down axis, the affine."""

    center: tuple[float, float]
    side: float
    uy: tuple[float, float]
    M_c2o: np.ndarray  # (2,3) float64: crop pixel (x, y) → original pixel

    @property
    def angle_deg(self) -> float:
        """Roll of the face in the picture: 0 = upright, positive = the face turned clockwise on screen
        (its down axis swung from straight down towards the image left); the crop undoes it."""
        return math.degrees(math.atan2(-self.uy[0], self.uy[1]))


def axes(e0: np.ndarray, e1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ux, uy) from the eye centre e0 and the lip centre e1."""
    d = np.asarray(e1, np.float64) - np.asarray(e0, np.float64)
    n = float(np.hypot(*d))
    if not np.isfinite(n) or n < 1e-6:
        raise ValueError("the eye centre and the mouth centre coincide")
    uy = d / n
    return np.array([uy[1], -uy[0]]), uy


def affine_c2o(center: np.ndarray, side: float, ux: np.ndarray, uy: np.ndarray,
               size: int = CROP_SIZE) -> np.ndarray:
    """2×3 map of a crop pixel to the original: the crop's x runs along ux, its y along uy."""
    s = side / size
    c = np.asarray(center, np.float64)
    half = size / 2.0
    return np.array([[s * ux[0], s * uy[0], c[0] - half * s * (ux[0] + uy[0])],
                     [s * ux[1], s * uy[1], c[1] - half * s * (ux[1] + uy[1])]], np.float64)


def frame_from_box(anchor: np.ndarray, ux: np.ndarray, uy: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                   scale: float = SCALE, vx: float = VX, vy: float = VY) -> Frame:
    """Upstream's last step: a box [lo, hi] in the rotated frame around ``anchor`` → the crop."""
    c1 = (np.asarray(lo) + np.asarray(hi)) / 2.0
    side = float(max(hi[0] - lo[0], hi[1] - lo[1]) * scale)
    if not np.isfinite(side) or side <= 0:
        raise ValueError("degenerate landmark box")
    center = np.asarray(anchor, np.float64) + ux * c1[0] + uy * c1[1] + ux * (vx * side) + uy * (vy * side)
    return Frame((float(center[0]), float(center[1])), side, (float(uy[0]), float(uy[1])),
                 affine_c2o(center, side, ux, uy))


def frame_from_landmarks(points: np.ndarray, e0: np.ndarray, e1: np.ndarray, scale: float = SCALE,
                         vx: float = VX, vy: float = VY) -> Frame:
    """Upstream exactly: the box of all ``points`` rotated into the eye→lip frame."""
    P = np.asarray(points, np.float64)
    ux, uy = axes(e0, e1)
    mean = P.mean(0)
    r = (P - mean) @ np.stack([ux, uy]).T
    return frame_from_box(mean, ux, uy, r.min(0), r.max(0), scale, vx, vy)


def virtual_box(e0: np.ndarray, e1: np.ndarray, eye_l: np.ndarray | None = None,
                eye_r: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(ux, uy, lo, hi) of the stand-in 203-point box around the eye centre e0 (see module doc)."""
    ux, uy = axes(e0, e1)
    d = float(np.hypot(*(np.asarray(e1, np.float64) - e0)))
    size = d
    if eye_l is not None and eye_r is not None:
        size = max(d, EYE_TO_D * float(np.hypot(*(np.asarray(eye_r, np.float64) - eye_l))))
    half = BOX_PER_D * size / 2.0
    cy = BOX_CENTRE_D * d
    return ux, uy, np.array([-half, cy - half]), np.array([half, cy + half])


def virtual_box_animal(e0: np.ndarray, e1: np.ndarray, eye_l: np.ndarray,
                       eye_r: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(ux, uy, lo, hi) of the stand-in for X-Pose's 9-point box around the eye centre e0."""
    ux, uy = axes(e0, e1)
    d = float(np.hypot(*(np.asarray(e1, np.float64) - e0)))
    e = float(np.hypot(*(np.asarray(eye_r, np.float64) - eye_l)))
    half = max(ANIMAL_BOX_PER_D * d, ANIMAL_BOX_PER_EYE * e) / 2.0
    cy = ANIMAL_CENTRE_D * d
    return ux, uy, np.array([-half, cy - half]), np.array([half, cy + half])


def frame_from_points(eye_l: np.ndarray, eye_r: np.ndarray, mouth: np.ndarray, scale: float = SCALE,
                      vx: float = VX, vy: float = VY, animal: bool = False) -> Frame:
    """Three points (image-left eye, image-right eye, mouth centre) → the crop upstream would make
    (``animal``: the crop upstream's X-Pose framing makes of such a face)."""
    eye_l, eye_r, mouth = (np.asarray(p, np.float64) for p in (eye_l, eye_r, mouth))
    e0 = (eye_l + eye_r) / 2.0
    box = virtual_box_animal if animal else virtual_box
    ux, uy, lo, hi = box(e0, mouth, eye_l, eye_r)
    return frame_from_box(e0, ux, uy, lo, hi, scale, vx, vy)


def to_crop(M_c2o: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Original pixels → crop pixels (N,2)."""
    A = np.vstack([M_c2o, [0.0, 0.0, 1.0]])
    inv = np.linalg.inv(A)[:2]
    P = np.asarray(pts, np.float64).reshape(-1, 2)
    return P @ inv[:, :2].T + inv[:, 2]


def to_original(M_c2o: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Crop pixels → original pixels (N,2)."""
    P = np.asarray(pts, np.float64).reshape(-1, 2)
    return P @ np.asarray(M_c2o)[:, :2].T + np.asarray(M_c2o)[:, 2]
