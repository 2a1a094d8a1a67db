"""DDIM (Song et al. 2021, eq. 12 with η = 0) for an x0-predicting network on the trained schedule.

From t to s < t: ε̂ = (x_t - sqrt(ᾱ_t) x̂0) / sqrt(1-ᾱ_t);  x_s = sqrt(ᾱ_s) x̂0 + sqrt(1-ᾱ_s) ε̂.
Deterministic: only the initial x_N is random. Timesteps are a trailing subset of 0..N.
"""
from __future__ import annotations

import math

import torch

from engine.sampling.schedule import Schedule


class DDIMSampler:
    name = "ddim"
    stochastic = False

    def __init__(self, schedule: Schedule, steps: int) -> None:
        self.schedule = schedule
        self.steps = int(steps)
        self.ts = schedule.timesteps(self.steps)

    def timesteps(self) -> list[int]:
        return self.ts[:-1]

    def needs_noise(self, i: int) -> bool:  # noqa: ARG002
        return False

    def begin(self) -> None:
        pass

    def step(self, i: int, x_t: torch.Tensor, x0: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:  # noqa: ARG002
        t, s = self.ts[i], self.ts[i + 1]
        ab_t, ab_s = self.schedule.alpha_bar(t), self.schedule.alpha_bar(s)
        eps = (x_t - math.sqrt(ab_t) * x0) / math.sqrt(1 - ab_t)
        return math.sqrt(ab_s) * x0 + math.sqrt(max(0.0, 1 - ab_s)) * eps
