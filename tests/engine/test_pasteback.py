"""Paste-back: the frame lands where the crop came from; outside the mask the original is untouched."""
from __future__ import annotations

import numpy as np

from engine.render.crop import crop_from_box
from engine.render.pasteback import PasteBack, feathered_mask


def test_mask_shape_and_range() -> None:
    m = feathered_mask()
    assert m.shape == (512, 512) and m.min() == 0.0 and m.max() == 1.0
    assert m[256, 256] == 1.0 and m[0, 0] == 0.0


def test_identity_frame_reproduces_original() -> None:
    rng = np.random.default_rng(0)
    original = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
    crop = crop_from_box(original, (150, 100, 80, 80))
    paste = PasteBack(original, crop.M_c2o)
    out = paste(crop.image)  # pasting the unmodified crop gives (almost) the original back
    assert out.shape == original.shape and out.dtype == np.uint8
    inside = paste.mask[..., 0] > 0.99
    assert inside.any()
    # inside the blend the original comes back up to resampling error; far away it is exact
    assert np.mean(np.abs(out.astype(int) - original.astype(int))[inside]) < 60
    far = paste.mask[..., 0] == 0
    assert np.array_equal(out[far], original[far])


def test_constant_frame_fills_the_face_region() -> None:
    original = np.zeros((200, 200, 3), np.uint8)
    crop = crop_from_box(original, (70, 70, 40, 40))
    paste = PasteBack(original, crop.M_c2o)
    out = paste(np.full((512, 512, 3), 200, np.uint8))
    cx, cy = (crop.M_c2o @ np.array([256, 256, 1.0])).round().astype(int)
    assert out[cy, cx].min() >= 195
    assert out[0, 0].max() == 0
