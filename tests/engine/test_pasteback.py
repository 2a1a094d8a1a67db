"""Paste-back: the frame lands where the crop came from (also a rotated crop); outside the mask
the original is untouched."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from engine.framing.frame import FramingOptions, frame_box, frame_portrait
from engine.render.pasteback import PasteBack, feathered_mask


def test_mask_shape_and_range() -> None:
    m = feathered_mask()
    assert m.shape == (512, 512) and m.min() == 0.0 and m.max() == 1.0
    assert m[256, 256] == 1.0 and m[0, 0] == 0.0


def test_identity_frame_reproduces_original() -> None:
    rng = np.random.default_rng(0)
    original = cv2.GaussianBlur(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8), (0, 0), 2)
    crop = frame_box(original, (150, 100, 80, 80), FramingOptions())
    paste = PasteBack(original, crop.M_c2o)
    out = paste(crop.image)  # pasting the unmodified crop gives (almost) the original back
    assert out.shape == original.shape and out.dtype == np.uint8
    inside = paste.mask[..., 0] > 0.99
    assert inside.any()
    assert np.mean(np.abs(out.astype(int) - original.astype(int))[inside]) < 6
    far = paste.mask[..., 0] == 0
    assert np.array_equal(out[far], original[far])


@pytest.mark.parametrize("deg", [-25.0, 20.0])
def test_rotated_crop_pastes_back_in_place(deg: float) -> None:
    """A tilted face is cropped upright; paste-back must turn the frame back by the same angle."""
    rng = np.random.default_rng(1)
    original = cv2.GaussianBlur(rng.integers(0, 256, (500, 600, 3), dtype=np.uint8), (0, 0), 3)
    c = np.array([300.0, 250.0])
    a = np.deg2rad(deg)
    down = np.array([-np.sin(a), np.cos(a)])    # the face's down axis, tilted
    right = np.array([down[1], -down[0]])
    eyes = [c - 30 * right, c + 30 * right]
    mouth = c + 40 * down
    crop = frame_portrait(original, FramingOptions(crop=("points", (*eyes[0], *eyes[1], *mouth))))
    assert abs(crop.angle_deg) == pytest.approx(abs(deg), abs=1e-6)
    paste = PasteBack(original, crop.M_c2o)
    out = paste(crop.image)
    inside = paste.mask[..., 0] > 0.99
    assert inside.sum() > 10000
    assert np.mean(np.abs(out.astype(int) - original.astype(int))[inside]) < 6
    # a frame that is not the crop shows up exactly where the rotated square was
    marked = crop.image.copy()
    marked[240:272, 240:272] = (255, 0, 255)
    centre = (crop.M_c2o @ np.array([256, 256, 1.0])).round().astype(int)
    assert tuple(paste(marked)[centre[1], centre[0]]) == (255, 0, 255)


def test_constant_frame_fills_the_face_region() -> None:
    original = np.zeros((200, 200, 3), np.uint8)
    crop = frame_box(original, (70, 70, 40, 40), FramingOptions())
    paste = PasteBack(original, crop.M_c2o)
    out = paste(np.full((512, 512, 3), 200, np.uint8))
    cx, cy = (crop.M_c2o @ np.array([256, 256, 1.0])).round().astype(int)
    assert out[cy, cx].min() >= 195
    assert out[0, 0].max() == 0
