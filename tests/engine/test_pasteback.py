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


def _frames(n: int, seed: int = 0):
    import torch

    g = torch.Generator().manual_seed(seed)
    noise = torch.rand(n, 3, 512, 512, generator=g) * 1.3 - 0.15     # beyond [0,1]: clipping is tested too
    return torch.nn.functional.avg_pool2d(noise, 7, 1, 3)


def test_uint8_on_the_device_is_bit_equal() -> None:
    import torch

    from engine.models.stage_one import frames_to_uint8
    from engine.render.pasteback import frames_to_uint8_tensor

    out = torch.rand(3, 3, 64, 64) * 1.4 - 0.2
    got = frames_to_uint8_tensor(out)
    assert got.dtype == torch.uint8 and got.shape == (3, 64, 64, 3)
    assert np.array_equal(got.numpy(), frames_to_uint8(out))
    assert np.array_equal(frames_to_uint8_tensor(out.bfloat16()).numpy(), frames_to_uint8(out.bfloat16()))


@pytest.mark.parametrize("deg,box,size", [(0.0, (150, 100, 80, 80), (300, 400)),
                                          (-25.0, (40, 30, 260, 240), (330, 350)),   # crop partly outside
                                          (20.0, (300, 200, 400, 400), (900, 1000))])
def test_device_paste_back_equals_cpu_within_one_grey_level(deg: float, box, size) -> None:
    """DevicePasteBack (torch, here on CPU tensors) vs PasteBack (cv2): |diff| <= 1 everywhere,
    identical outside the face, and chunking does not change the result."""
    from engine.models.stage_one import frames_to_uint8
    from engine.render.pasteback import DevicePasteBack

    rng = np.random.default_rng(4)
    original = cv2.GaussianBlur(rng.integers(0, 256, (*size, 3), dtype=np.uint8), (0, 0), 2)
    crop = frame_box(original, box, FramingOptions())
    M = crop.M_c2o.copy()
    if deg:
        c = M @ np.array([256, 256, 1.0])
        R = cv2.getRotationMatrix2D((float(c[0]), float(c[1])), deg, 1.0)
        M = R @ np.vstack([M, [0, 0, 1]])
    cpu = PasteBack(original, M)
    dev = DevicePasteBack(cpu, "cpu")
    out = _frames(3)
    got = dev(out).numpy()
    ref = np.stack([cpu(f) for f in frames_to_uint8(out)])
    assert got.shape == ref.shape == (3, *size, 3) and got.dtype == np.uint8
    diff = np.abs(got.astype(int) - ref.astype(int))
    assert diff.max() <= 1 and diff.mean() < 0.01
    outside = cpu.mask[..., 0] == 0
    assert np.array_equal(got[:, outside], np.broadcast_to(original[outside], got[:, outside].shape))
    tiny = DevicePasteBack(cpu, "cpu", chunk_mb=0.001)
    assert tiny.chunk == 1 and np.array_equal(tiny(out).numpy(), got)
    assert dev.size == cpu.size and dev.working_mb > 0
