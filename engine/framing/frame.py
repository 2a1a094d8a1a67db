"""Frame a portrait: picture → the 512² crop the networks see, and where it sits in the file.

One function, :func:`frame_portrait`, serves ``engine crop`` and ``engine animate`` (and the
warm worker) so that the preview a user approves is the crop that gets animated. It picks the
way (none, a box, clicked points, a detector: detect.py) and builds the crop with
:mod:`engine.framing.crop`, whose names are re-exported here for callers.
"""
from __future__ import annotations

import numpy as np

from engine.errors import BadRequest
from engine.framing import detect, face_mesh
from engine.framing.crop import (ALPHA_BACKGROUND, CROP_SIZE, DETECT_SIDE, NO_FACE_HINT, POINTS_HINT,  # noqa: F401
                                 Framing, FramingOptions, _pick, _result, downscaled, frame_box, frame_none,
                                 frame_three, load_picture, warp_crop)
from engine.jobs import CropSpec, parse_crop


# -- the --crop argument ------------------------------------------------------------------------

def parse_crop_arg(value: str | None) -> CropSpec:
    """``auto`` | ``none`` | ``X,Y,W,H`` | ``points:LX,LY,RX,RY,MX,MY`` → a spec for FramingOptions
    (the parser and its messages live with the job types, engine/jobs.py)."""
    return parse_crop(value)


def frame_portrait(img: np.ndarray, opts: FramingOptions | None = None) -> Framing:
    """Frame ``img`` (RGB uint8, the file at full resolution) as ``opts`` asks.

    Raises NoFaceError (humans) when nothing is found; animals fall back to a centred square
    with a warning instead (``--animal`` never fails on framing).
    """
    opts = (opts or FramingOptions()).validated()
    H, W = img.shape[:2]
    spec = opts.crop
    if spec == "none":
        return frame_none(img)
    if isinstance(spec, tuple) and spec and spec[0] == "points":
        pts = np.array(spec[1], np.float64).reshape(3, 2)
        if not ((-W <= pts[:, 0]).all() and (pts[:, 0] <= 2 * W).all() and (-H <= pts[:, 1]).all()
                and (pts[:, 1] <= 2 * H).all()):
            raise BadRequest(f"--crop points lie far outside the {W}x{H} picture (pixels of the original file)")
        framing = frame_three(img, pts, opts, "points", points=pts.tolist())
        if opts.animal:
            return framing
        # clicked eyes + mouth (the Blender Frame Face tool) seed the face mesh as the detector's do,
        # so a corrected framing keeps lip normalisation; the crop stays the points' own
        return face_mesh.attach_lip_open(img, framing, pts[0], pts[1], pts[2])
    if isinstance(spec, tuple):
        x, y, w, h = spec
        if x >= W or y >= H or x + w <= 0 or y + h <= 0:
            raise BadRequest(f"--crop box {x:g},{y:g},{w:g},{h:g} lies outside the {W}x{H} picture")
        return frame_box(img, spec, opts)
    if spec != "auto":
        raise BadRequest(f"unknown --crop {spec!r}")
    if opts.animal:
        return detect.frame_animal(img, opts)
    return detect.frame_human(img, opts)
