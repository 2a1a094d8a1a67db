"""DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2) for an x0-predicting network.

With α_t = sqrt(ᾱ_t), σ_t = sqrt(1-ᾱ_t), λ_t = log(α_t/σ_t) and h_i = λ_{t_{i+1}} - λ_{t_i}:
    D_i = x̂0_i                                              (first step)
    D_i = (1 + 1/(2 r_i)) x̂0_i - 1/(2 r_i) x̂0_{i-1},  r_i = h_{i-1}/h_i   (multistep)
    x_{t_{i+1}} = (σ_{t_{i+1}}/σ_{t_i}) x_{t_i} - α_{t_{i+1}} (e^{-h_i} - 1) D_i
The last step (to t = 0, where σ = 0 and λ = ∞) returns x̂0 (first order: "lower order final").
"""
from __future__ import annotations

import math

import torch

from engine.sampling.schedule import Schedule


class DPMSolverPP2MSampler:
    name = "dpmpp_2m"
    stochastic = False

    def __init__(self, schedule: Schedule, steps: int) -> None:
        self.schedule = schedule
        self.steps = int(steps)
        self.ts = schedule.timesteps(self.steps)
        self._prev_x0: torch.Tensor | None = None
        self._prev_h: float | None = None

    def timesteps(self) -> list[int]:
        return self.ts[:-1]

    def needs_noise(self, i: int) -> bool:  # noqa: ARG002
        return False

    def begin(self) -> None:
        self._prev_x0, self._prev_h = None, None

    def _coeffs(self, t: int) -> tuple[float, float, float]:
        ab = self.schedule.alpha_bar(t)
        alpha, sigma = math.sqrt(ab), math.sqrt(max(0.0, 1 - ab))
        lam = math.log(alpha) - math.log(sigma) if sigma > 0 else math.inf
        return alpha, sigma, lam

    def step(self, i: int, x_t: torch.Tensor, x0: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:  # noqa: ARG002
        t, s = self.ts[i], self.ts[i + 1]
        a_t, sig_t, lam_t = self._coeffs(t)
        a_s, sig_s, lam_s = self._coeffs(s)
        if sig_s == 0.0:                       # final step: the clean estimate
            return x0
        h = lam_s - lam_t
        if self._prev_x0 is None or self._prev_h is None:
            d = x0
        else:
            r = self._prev_h / h
            d = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * self._prev_x0
        self._prev_x0, self._prev_h = x0, h
        return (sig_s / sig_t) * x_t - a_s * math.expm1(-h) * d
