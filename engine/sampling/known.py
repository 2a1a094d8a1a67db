"""Known-frame clamping (training-free inpainting) for the x0-predicting samplers.

Why: the live stream (engine/live/stream.py) re-runs a window whose first C frames are already
committed; holding them fixed at every step makes the new frames continue them (the DiT's
self-attention is bidirectional). Two rules, one per sampler family:

* every sampler: the network's x̂0 on the known rows is replaced by the known x0 before the
  update (for the deterministic DDIM / DPM-Solver++ that is the whole mechanism);
* stochastic (ancestral) samplers: after the update the known rows are re-drawn from the
  forward process q(x_s | x0) = N(sqrt(ᾱ_s) x0, (1-ᾱ_s) I) with the caller's noise
  (RePaint, Lugmayr et al. 2022), so they carry exactly the noise level of step s.

The known rows are the leading rows of the window (the committed past).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch


@dataclass
class KnownPrefix:
    """The first ``x0.shape[1]`` rows of the window are known: ``x0`` (1, C, D)."""

    x0: torch.Tensor
    #: step index i -> (1, C, D) standard normal noise for re-noising (stochastic samplers only)
    noise: Callable[[int], torch.Tensor] | None = None

    @property
    def rows(self) -> int:
        return int(self.x0.shape[1])

    def clamp_x0(self, x0: torch.Tensor) -> torch.Tensor:
        """x̂0 with its known rows replaced (a copy; the caller's tensor is untouched)."""
        if self.rows == 0:
            return x0
        out = x0.clone()
        out[:, : self.rows] = self.x0.to(out.dtype)
        return out

    def renoise(self, x: torch.Tensor, alpha_bar_s: float, i: int) -> torch.Tensor:
        """x_s with its known rows drawn from q(x_s | x0) (step i's noise); σ = 0 at s = 0."""
        if self.rows == 0:
            return x
        out = x.clone()
        sd = math.sqrt(max(0.0, 1.0 - alpha_bar_s))
        known = math.sqrt(alpha_bar_s) * self.x0.to(out.dtype)
        if sd > 0.0 and self.noise is not None:
            known = known + sd * self.noise(i).to(out.dtype)
        out[:, : self.rows] = known
        return out
