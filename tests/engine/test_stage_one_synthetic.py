"""Synthetic weights → StageOne round trips (tiny) and the official network sizes."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.models.stage_one import StageOne, frames_to_uint8
from engine.weights import WeightsLayout


def test_tiny_round_trip(synthetic_tiny_lp) -> None:
    s1 = StageOne.load(WeightsLayout(synthetic_tiny_lp))
    img = (np.random.default_rng(0).random((300, 240, 3)) * 255).astype(np.uint8)  # resized to 256²
    src = s1.extract(img)
    assert src.f_s.shape == (1, 2, 4, 64, 64)
    assert src.x_c.shape == src.exp.shape == src.x_s.shape == (1, 21, 3)
    assert src.R.shape == (1, 3, 3) and src.scale.shape == (1, 1) and src.t.shape == (1, 3)
    assert all(getattr(src, n).shape == (1, 1) for n in ("pitch", "yaw", "roll"))
    x_d = src.x_s + 0.05 * torch.randn(2, 21, 3, generator=torch.Generator().manual_seed(0))
    out = s1.warp_decode(src.f_s, src.x_s, x_d)
    assert out.shape == (2, 3, 512, 512) and out.dtype == torch.float32
    assert float(out.min()) > 0.0 and float(out.max()) < 1.0
    assert float(out.std()) > 1e-3, "synthetic weights give a flat image"
    frames = frames_to_uint8(out)
    assert frames.shape == (2, 512, 512, 3) and frames.dtype == np.uint8
    assert not np.array_equal(frames[0], frames[1])  # different keypoints → different frames
    w = s1.warp(src.f_s, src.x_s, x_d)
    assert float(w["mask"].std()) > 1e-3 and float(w["occlusion_map"].std()) > 1e-3


def test_frames_to_uint8_truncates() -> None:
    out = torch.tensor([0.5, 1.5, -0.2, 254.9 / 255]).reshape(1, 1, 2, 2).expand(1, 3, 2, 2)
    frames = frames_to_uint8(out)
    assert frames.shape == (1, 2, 2, 3)
    assert frames[0, 0, 0, 0] == 127  # 127.5 truncated, not rounded
    assert frames[0, 0, 1, 0] == 255 and frames[0, 1, 0, 0] == 0
    assert frames[0, 1, 1, 0] in (254, 253)  # float32 254.9/255*255 truncates down


def test_bf16_close_to_fp32(synthetic_tiny_lp) -> None:
    fp32 = StageOne.load(WeightsLayout(synthetic_tiny_lp))
    bf16 = StageOne.load(WeightsLayout(synthetic_tiny_lp), dtype="bfloat16")
    src = fp32.extract(np.full((256, 256, 3), 128, np.uint8))
    x_d = src.x_s + 0.03
    a, b = fp32.warp_decode(src.f_s, src.x_s, x_d), bf16.warp_decode(src.f_s, src.x_s, x_d)
    assert b.dtype == torch.float32
    mse = float(((a - b) ** 2).mean())
    psnr = 10 * np.log10(1.0 / max(mse, 1e-20))
    assert psnr > 30, psnr


@pytest.mark.slow
def test_official_sizes(synthetic_official_lp) -> None:
    """One forward of every network at official size (~10 s on 2 cores)."""
    s1 = StageOne.load(WeightsLayout(synthetic_official_lp))
    src = s1.extract(np.full((256, 256, 3), 100, np.uint8))
    assert src.f_s.shape == (1, 32, 16, 64, 64)
    assert src.x_s.shape == (1, 21, 3)
    w = s1.warp(src.f_s, src.x_s, src.x_s + 0.02)
    assert w["out"].shape == (1, 256, 64, 64)
    assert w["mask"].shape == (1, 22, 16, 64, 64) and w["deformation"].shape == (1, 16, 64, 64, 3)
    out = s1.decode(w["out"])
    assert out.shape == (1, 3, 512, 512)
    assert torch.isfinite(out).all()
