"""Automatic framing: find the face, pick one, hand its landmarks to the upstream formula.

Humans, in order of preference:
1. upstream's own InsightFace ONNX files when the weights folder has them (SCRFD det_10g
   five points + 2d106det 106 points: the landmark box, as upstream);
2. MTCNN five points (``mtcnn`` wheel, default install; engine/framing/mtcnn.py);
3. OpenCV's frontal-face Haar cascade (a box, no landmarks) if the mtcnn package is missing.
Animals (engine/framing/animal.py): X-Pose when ``liveportrait_animals/xpose.pth`` is in the
weights folder, else OpenCV's cat-face Haar cascade (BSD data bundled in engine/framing/data),
else a centred square and a warning that names ``--crop points:`` and the Blender Frame Face tool.

All detection runs on the downscaled copy (:func:`engine.framing.crop.downscaled`); results
are mapped back to the original file's pixels before framing. The chosen human face then gets
its source lip-open ratio from MediaPipe's face mesh (engine/framing/face_mesh.py; crops taken
from the full-resolution picture around the face only); a failed or unsure mesh leaves
``lip_open`` None with a warning, and never changes the crop.
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

import numpy as np

from engine.errors import NoFaceError
from engine.framing import face_mesh, mtcnn
from engine.framing.crop import (DETECT_SIDE, NO_FACE_HINT, Framing, FramingOptions, _pick, downscaled,
                                  frame_box, frame_three)

#: MTCNN detections below this O-Net score are ignored (clean portraits score > 0.99)
MIN_SCORE = 0.9
#: second, finer look when nothing was found on the DETECT_SIDE copy (faces down to ~1.3 %)
SECOND_LOOK_SIDE = 1600
#: turned copies tried after a miss (MTCNN itself copes with rolls up to ~45 deg): a head tilted
#: further, or a picture lying on its side or upside down (no EXIF to say so)
TURNS = (45.0, -45.0, 90.0, -90.0, 135.0, -135.0, 180.0)


@contextlib.contextmanager
def _single_thread() -> Iterator[None]:
    """Small convolutions on two busy cores: one thread is 3-10× faster than two contending."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def insightface_files(weights_root: Path | None) -> tuple[Path, Path | None] | None:
    """(det_10g.onnx, 2d106det.onnx or None) from upstream's weights layout, if present."""
    if weights_root is None:
        return None
    folder = Path(weights_root) / "insightface" / "models" / "buffalo_l"
    det = folder / "det_10g.onnx"
    if not det.is_file():
        return None
    lmk = folder / "2d106det.onnx"
    return det, (lmk if lmk.is_file() else None)


def _roll_deg(points: np.ndarray) -> float:
    """How far the eye-centre → mouth-centre axis is from straight down (degrees, absolute)."""
    axis = (points[3] + points[4]) / 2 - (points[0] + points[1]) / 2
    return abs(float(np.degrees(np.arctan2(axis[0], axis[1]))))


def _detect_turned(small: np.ndarray) -> list[mtcnn.Face]:
    """MTCNN on copies of ``small`` turned by each of TURNS degrees. The copy with the most confident
    face wins, the most upright one among equals (MTCNN's points are best on an upright face); the
    points come back in ``small``'s pixels and the upstream formula undoes the turn like any roll."""
    import cv2

    h, w = small.shape[:2]
    best: tuple[tuple[float, float], list[mtcnn.Face]] = ((1.0, 1e9), [])
    for deg in TURNS:
        R = cv2.getRotationMatrix2D((w / 2, h / 2), deg, 1.0)
        c, s_ = abs(R[0, 0]), abs(R[0, 1])
        nw, nh = int(round(w * c + h * s_)), int(round(w * s_ + h * c))
        R[:, 2] += ((nw - w) / 2, (nh - h) / 2)
        turned = cv2.warpAffine(small, R, (nw, nh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                                borderValue=(128, 128, 128))
        found = [fc for fc in mtcnn.detect(turned) if fc.score >= MIN_SCORE]
        if not found:
            continue
        # the most confident face wins (false faces in turned copies score lower), then the most upright
        rank = min((-round(fc.score, 2), _roll_deg(fc.points)) for fc in found)
        if rank >= best[0]:
            continue
        back = cv2.invertAffineTransform(R)
        out = []
        for fc in found:
            x, y, bw, bh = fc.box
            corners = np.array([[x, y], [x + bw, y], [x, y + bh], [x + bw, y + bh]]) @ back[:, :2].T + back[:, 2]
            (x0, y0), (x1, y1) = corners.min(0), corners.max(0)
            out.append(mtcnn.Face((float(x0), float(y0), float(x1 - x0), float(y1 - y0)), fc.score,
                                  fc.points @ back[:, :2].T + back[:, 2]))
        best = (rank, out)
    return best[1]


def frame_human(img: np.ndarray, opts: FramingOptions) -> Framing:
    small, f = downscaled(img)
    files = insightface_files(opts.weights_root)
    if files is not None:
        from engine.framing import insightface

        got = insightface.frame(img, small, f, files, opts)
        if got is not None:
            return got
    if mtcnn.available():
        with _single_thread():
            faces = [fc for fc in mtcnn.detect(small) if fc.score >= MIN_SCORE]
            if not faces and max(img.shape[:2]) > DETECT_SIDE:
                # a small face in a large picture: look once more at higher resolution (only on a miss)
                small, f = downscaled(img, SECOND_LOOK_SIDE)
                faces = [fc for fc in mtcnn.detect(small) if fc.score >= MIN_SCORE]
            if not faces:
                # a head tilted past ~45 deg, or a picture lying on its side: look at turned copies
                faces = _detect_turned(downscaled(img)[0])
                small, f = downscaled(img)
        if not faces:
            raise NoFaceError(f"no face found in the portrait; {NO_FACE_HINT}")
        face, idx = _pick(faces, opts, lambda fc: fc.box[2] * fc.box[3])
        pts = face.points / f
        three = np.stack([pts[0], pts[1], (pts[3] + pts[4]) / 2])
        box = tuple(float(v) / f for v in face.box)
        out = frame_three(img, three, opts, "mtcnn", box=box, points=pts.tolist(), faces=len(faces),
                          face_index=idx)
        with _single_thread():  # the source lip-open ratio from the face mesh; the crop stays as framed
            return face_mesh.attach_lip_open(img, out, *three)
    from engine.framing.haar import detect_faces_haar

    boxes = detect_faces_haar(small)
    if not boxes:
        raise NoFaceError(f"no face found in the portrait; {NO_FACE_HINT}")
    box, idx = _pick(boxes, opts, lambda b: b[2] * b[3])
    out = frame_box(img, tuple(v / f for v in box), opts, method="haar", faces=len(boxes), face_index=idx)
    out.warnings.append(("no_landmarks", "the mtcnn package is not installed: framing from a Haar box "
                                         "(no landmarks, tilted heads stay tilted); reinstall the engine"))
    return out


def frame_animal(img: np.ndarray, opts: FramingOptions) -> Framing:
    """Animals: X-Pose when its file is in the weights folder, else the cat cascade / centred square."""
    from engine.framing import animal

    return animal.frame_animal(img, opts)
