"""Parity for X-Pose (animal-face framing) against a folder holding ``xpose_reference.npz``.

The folder (layout of ``shared/fixtures/upstream_xpose_tiny_seed0``) has an X-Pose checkpoint in
upstream's container (``liveportrait_animals/xpose.pth``), its own prompt pickles (random in the
fixtures, read with the restricted reader: engine/framing/xpose_prompts.py), ``animal.png`` and
what the unmodified upstream code computed. One line per array, named ``XPOSE_<key>``:

* ``input``: our preprocessing (resize, normalisation) of ``animal.png``;
* ``pred_logits`` / ``pred_boxes`` / ``pred_keypoints``: the network with every keypoint slot
  (upstream's full output; -inf entries must be -inf in the same places), within 1e-4 relative
  (boxes, keypoints: elementwise; logits: of the array's scale, see :data:`LOGITS_REL`);
* ``kept_index``, ``points9``, ``M_c2o``, ``img_crop``: the production path (only the prompted
  keypoint slots decoded, engine/framing/xpose.py) → the kept detection, its 9 points, the crop.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

import numpy as np

from engine.parity import ParityLine, Tolerance, compare

REFERENCE = "xpose_reference.npz"
PREFIX = "XPOSE_"
#: the targets of issue 22 (shared/spec/xpose.md "Reference fixture")
TOLERANCES = {
    "input": Tolerance(rtol=0.0, atol=1e-6),
    "pred_boxes": Tolerance(rtol=1e-4, atol=1e-6),
    "pred_keypoints": Tolerance(rtol=1e-4, atol=1e-6),
    "kept_index": Tolerance(exact=True),
    "points9": Tolerance(rtol=0.0, atol=0.05),
    "M_c2o": Tolerance(rtol=1e-4, atol=1e-6),
    "img_crop": Tolerance(frame_fraction=1.0),
}
#: pred_logits: within 1e-4 of the array's largest magnitude. Elementwise rtol is meaningless for
#: logits near 0: every logit is a dot product with the prompt's text vector, which leaves the encoder
#: through a softmax over all ~13k image tokens (image→text fusion) that amplifies float32 rounding;
#: reordering the same sums moves every logit by ~2-3e-5 whatever its size (max |logit| ≈ 16).
LOGITS_REL = 1e-4
#: recorded inputs (nothing to recompute)
INPUTS = ("image",)


def _compare(name: str, ours: np.ndarray, ref: np.ndarray, tol: Tolerance) -> ParityLine:
    """:func:`engine.parity.compare` with this group's tolerance; non-finite entries must match."""
    ours = np.asarray(ours)
    if ours.shape == ref.shape and np.issubdtype(ref.dtype, np.floating) and not np.all(np.isfinite(ref)):
        same = np.array_equal(np.isfinite(ours), np.isfinite(ref)) and np.array_equal(
            ours[~np.isfinite(ref)], ref[~np.isfinite(ref)])
        if not same:
            return ParityLine(name, "FAIL", float("inf"), tol.describe(), "-inf/inf entries differ")
        fin = np.isfinite(ref)
        line = _compare(name, ours[fin], ref[fin], tol)
        line.note = (line.note + "; " if line.note else "") + f"{int((~fin).sum())} non-finite entries equal"
        return line
    return compare(name, ours, ref, tol)


def compute(ref_dir: Path, wanted: set[str]) -> dict[str, np.ndarray]:
    """Our arrays for the wanted reference keys (without the ``XPOSE_`` prefix)."""
    import cv2
    import torch

    from engine.framing import xpose
    from engine.framing.frame import warp_crop
    from engine.framing.xpose_prompts import read_prompt_pickle

    torch.manual_seed(0)
    folder = Path(ref_dir) / "liveportrait_animals"
    path = folder / "xpose.pth"
    model = xpose.build_from_state_dict(xpose.read_state_dict(path), path)
    instance, keypoints = read_prompt_pickle(folder / "clip_embedding_9.pkl")
    bgr = cv2.imread(str(Path(ref_dir) / "animal.png"), cv2.IMREAD_COLOR)
    if bgr is None:
        raise FileNotFoundError(f"{Path(ref_dir) / 'animal.png'} missing or unreadable")
    img = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    x = xpose.preprocess(img)
    out: dict[str, np.ndarray] = {"input": x.numpy()}
    if wanted & {"pred_logits", "pred_boxes", "pred_keypoints"}:
        full = xpose.run_network(model, x, instance, keypoints, full_keypoints=True)
        out.update({k: full[k].numpy() for k in ("pred_logits", "pred_boxes", "pred_keypoints")})
    if wanted & {"kept_index", "points9", "M_c2o", "img_crop"}:
        fast = xpose.run_network(model, x, instance, keypoints, full_keypoints=False)
        best = xpose.decode(fast, keypoints.shape[0], img.shape[1], img.shape[0])[0]
        fr = xpose.frame_points9(best.points, 2.3, 0.0, -0.125)
        out.update({"kept_index": np.array(best.index), "points9": best.points, "M_c2o": fr.M_c2o,
                    "img_crop": warp_crop(img, fr.M_c2o)})
    return out


def run(ref_dir: Path, only: list[str] | None = None, out: TextIO = sys.stdout) -> int:
    """Print one line per array of ``xpose_reference.npz``; return the number of failures."""
    ref = np.load(Path(ref_dir) / REFERENCE, allow_pickle=False)
    names = [k for k in ref.files if not only or (PREFIX + k).startswith(tuple(only))]
    if not names:
        return 0
    wanted = {k for k in names if k not in INPUTS}
    ours = compute(Path(ref_dir), wanted) if wanted else {}
    failures = 0
    for key in names:
        name = PREFIX + key
        if key in INPUTS:
            line = ParityLine(name, "input")
        elif key in ours:
            r = np.asarray(ref[key])
            if key == "M_c2o" and r.shape == (3, 3):
                r = r[:2]
            if key == "pred_logits":
                finite = r[np.isfinite(r)]
                tol = Tolerance(rtol=0.0, atol=LOGITS_REL * float(np.abs(finite).max() if finite.size else 1.0))
            else:
                tol = TOLERANCES.get(key, Tolerance())
            line = _compare(name, ours[key], r, tol)
        else:
            line = ParityLine(name, "skipped", note="not computed by this engine")
        failures += line.status == "FAIL"
        print(line.render(), file=out, flush=True)
    return failures
