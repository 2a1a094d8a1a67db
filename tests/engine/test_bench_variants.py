"""bench render --variants: a variant that cannot run here is reported, not a crash; eager matches itself."""
from __future__ import annotations

from types import SimpleNamespace

import torch

from engine.bench.variants import measure_variants


class FakeStageOne:
    def warp_decode(self, f_s: torch.Tensor, x_s: torch.Tensor, x_d: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(x_d.sum((1, 2))).reshape(-1, 1, 1, 1).expand(-1, 3, 4, 4) + 0 * f_s.sum()


def test_variants_on_cpu() -> None:
    lines: list[str] = []
    src = SimpleNamespace(f_s=torch.zeros(1, 2), x_s=torch.zeros(1, 21, 3))
    drive = torch.randn(6, 21, 3, generator=torch.Generator().manual_seed(0))
    fps = measure_variants(FakeStageOne(), src, drive, 2, 3, ["eager", "graph", "bogus"], torch.device("cpu"),
                           "W+G float32 batch 2", lines.append)
    assert set(fps) == {"eager"} and fps["eager"] > 0
    assert lines[0].startswith("W+G float32 batch 2 variant eager:") and "max |diff| vs eager 0.00e+00" in lines[0]
    assert "variant graph: not available here" in lines[1] and "CUDA" in lines[1]
    assert "variant bogus: unknown" in lines[2]
