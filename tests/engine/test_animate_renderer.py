"""Streaming renderer with a stand-in stage one: batches, post-processing, cancellation between batches."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.errors import Cancelled
from engine.render.renderer import render_frames


class FakeStageOne:
    def __init__(self) -> None:
        self.calls: list[int] = []

    def warp_decode(self, f_s: torch.Tensor, x_s: torch.Tensor, x_d: torch.Tensor) -> torch.Tensor:
        self.calls.append(int(x_d.shape[0]))
        value = x_d[:, 0, 0].reshape(-1, 1, 1, 1)  # frame index encoded in the keypoints
        return (value / 255.0).expand(-1, 3, 8, 8).contiguous()


class ListWriter:
    def __init__(self) -> None:
        self.frames: list[np.ndarray] = []

    def write(self, frame: np.ndarray) -> None:
        self.frames.append(frame)


class CancelAfter:
    """Reporter stand-in: progress() raises Cancelled once ``limit`` frames are done."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.events: list[tuple[int, int]] = []

    def progress(self, stage: str, done: int, total: int, unit: str) -> None:
        assert stage == "render" and unit == "frame"
        self.events.append((done, total))
        if done >= self.limit:
            raise Cancelled(stage, done)


def _x_d(n: int) -> torch.Tensor:
    x = torch.zeros(n, 21, 3)
    x[:, 0, 0] = torch.arange(n, dtype=torch.float32) + 0.5
    return x


def _to_uint8(out: torch.Tensor) -> np.ndarray:
    return (out.permute(0, 2, 3, 1).numpy() * 255).astype(np.uint8)


def test_batches_and_order() -> None:
    s1, w = FakeStageOne(), ListWriter()
    stats = render_frames(s1, torch.zeros(1, 2), torch.zeros(1, 21, 3), _x_d(10), [w], batch=4,
                          device=torch.device("cpu"),
                          post=lambda f: f[:4, :4], to_uint8=_to_uint8)
    assert s1.calls == [4, 4, 2] and stats.frames == 10 and stats.batches == 3
    assert [int(f[0, 0, 0]) for f in w.frames] == list(range(10))
    assert w.frames[0].shape == (4, 4, 3)


def test_cancel_stops_within_one_batch() -> None:
    s1, w, rep = FakeStageOne(), ListWriter(), CancelAfter(limit=3)
    with pytest.raises(Cancelled) as exc:
        render_frames(s1, torch.zeros(1, 2), torch.zeros(1, 21, 3), _x_d(20), [w], batch=3,
                      device=torch.device("cpu"),
                      reporter=rep, to_uint8=_to_uint8)
    assert exc.value.done == 3
    assert s1.calls == [3] and len(w.frames) == 3
    assert rep.events == [(0, 20), (3, 20)]
