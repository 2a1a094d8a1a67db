"""Ancestral DDPM sampler for x0-prediction (upstream's sampler; exact mode at steps = N).

Exact mode (every trained step, stored buffers verbatim), for t = N..1, with x̂0 = model(x_t, t)
and z ~ N(0, I) drawn *before* the model call (z = 0 at t = 1):
    x_{t-1} = c0 x_t + c1 x̂0 + σ_t z,
    c0 = (1-ᾱ_{t-1}) sqrt(α_t) / (1-ᾱ_t),  c1 = (1-α_t) sqrt(ᾱ_{t-1}) / (1-ᾱ_t),  σ_t = sigmas_inflex[t]
(the mean and std of the DDPM posterior q(x_{t-1} | x_t, x0), Ho et al. 2020 eq. 6-7).
Strided mode (steps < N, t -> s): the same posterior between t and s, with
α_{t|s} = ᾱ_t/ᾱ_s: c0 = sqrt(α_{t|s})(1-ᾱ_s)/(1-ᾱ_t), c1 = sqrt(ᾱ_s)(1-α_{t|s})/(1-ᾱ_t),
σ² = (1-ᾱ_s)(1-α_{t|s})/(1-ᾱ_t). For s = t-1 it reduces to the exact formula.
"""
from __future__ import annotations

import math

import torch

from engine.sampling.schedule import Schedule


class AncestralSampler:
    name = "ancestral"
    stochastic = True

    def __init__(self, schedule: Schedule, steps: int | None = None) -> None:
        self.schedule = schedule
        self.steps = schedule.N if steps is None else int(steps)
        self.ts = schedule.timesteps(self.steps)     # N = t_0 > ... > t_K = 0
        self.exact = self.steps == schedule.N

    def timesteps(self) -> list[int]:
        return self.ts[:-1]                          # model calls

    def needs_noise(self, i: int) -> bool:
        return self.ts[i + 1] > 0

    def begin(self) -> None:
        pass

    def step(self, i: int, x_t: torch.Tensor, x0: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
        t, s = self.ts[i], self.ts[i + 1]
        sch = self.schedule
        if self.exact:
            alpha, ab, ab_prev = sch.alphas[t], sch.alpha_bars[t], sch.alpha_bars[t - 1]
            c0 = (1 - ab_prev) * torch.sqrt(alpha) / (1 - ab)
            c1 = (1 - alpha) * torch.sqrt(ab_prev) / (1 - ab)
            sigma = sch.sigmas_flex[t] * 0.0 + sch.sigmas_inflex[t] * 1.0   # get_sigmas(t, flexibility=0)
            c0, c1, sigma = (v.to(x_t.device) for v in (c0, c1, sigma))
        else:
            ab_t, ab_s = sch.alpha_bar(t), sch.alpha_bar(s)
            a_ts = ab_t / ab_s
            c0 = math.sqrt(a_ts) * (1 - ab_s) / (1 - ab_t)
            c1 = math.sqrt(ab_s) * (1 - a_ts) / (1 - ab_t)
            sigma = math.sqrt(max(0.0, (1 - ab_s) * (1 - a_ts) / (1 - ab_t)))
        out = c0 * x_t + c1 * x0
        if z is not None:
            out = out + sigma * z
        return out
