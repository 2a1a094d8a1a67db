"""The trained diffusion schedule (upstream ``DiffusionSchedule(N, 'cosine', s=0.008)``, spec §2.5).

Upstream stores the buffers in the checkpoint; exact mode uses those verbatim
(:meth:`Schedule.from_state_dict`). :meth:`Schedule.cosine` recomputes them in float32 the way
upstream does (clipped cosine betas, cumulative log-alpha loop) - used by parity and tests.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Schedule:
    betas: torch.Tensor          # (N+1,) float32, betas[0] = 0
    alphas: torch.Tensor         # 1 - betas
    alpha_bars: torch.Tensor     # cumulative product (alpha_bars[0] = 1)
    sigmas_flex: torch.Tensor    # sqrt(betas)
    sigmas_inflex: torch.Tensor  # posterior std: sqrt((1-ab[t-1])/(1-ab[t]) * beta_t)

    @property
    def N(self) -> int:
        return int(self.betas.shape[0]) - 1

    @classmethod
    def cosine(cls, N: int, s: float = 0.008) -> "Schedule":
        x = torch.linspace(0, N, N + 1)                                              # (N+1,)
        ac = torch.cos(((x / N) + s) / (1 + s) * math.pi * 0.5) ** 2
        ac = ac / ac[0]
        betas = torch.clip(1 - (ac[1:] / ac[:-1]), 1e-4, 0.999)                       # (N,)
        betas = torch.cat([torch.zeros(1), betas])                                   # (N+1,)
        alphas = 1 - betas
        log_alphas = torch.log(alphas)
        for i in range(1, log_alphas.shape[0]):                                      # float32 running sum
            log_alphas[i] += log_alphas[i - 1]
        alpha_bars = log_alphas.exp()
        sigmas_flex = torch.sqrt(betas)
        sigmas_inflex = torch.zeros_like(sigmas_flex)
        for i in range(1, sigmas_flex.shape[0]):
            sigmas_inflex[i] = ((1 - alpha_bars[i - 1]) / (1 - alpha_bars[i])) * betas[i]
        sigmas_inflex = torch.sqrt(sigmas_inflex)
        return cls(betas, alphas, alpha_bars, sigmas_flex, sigmas_inflex)

    @classmethod
    def from_state_dict(cls, sd: dict[str, torch.Tensor], prefix: str = "diffusion_sched.") -> "Schedule":
        get = lambda k: sd[prefix + k].float().clone()  # noqa: E731
        return cls(get("betas"), get("alphas"), get("alpha_bars"), get("sigmas_flex"), get("sigmas_inflex"))

    def to(self, device: torch.device | str) -> "Schedule":
        return Schedule(*(getattr(self, f).to(device) for f in
                          ("betas", "alphas", "alpha_bars", "sigmas_flex", "sigmas_inflex")))

    def timesteps(self, steps: int) -> list[int]:
        """``steps + 1`` integer times N = t_0 > t_1 > ... > t_K = 0, evenly spaced ("trailing":
        the first model call is always at t = N, where x_N was drawn). steps = N gives N..0."""
        N = self.N
        if not 1 <= steps <= N:
            raise ValueError(f"steps must be between 1 and {N} (the trained schedule), got {steps}")
        ts = [int(round(N - i * N / steps)) for i in range(steps + 1)]
        return ts

    def alpha_bar(self, t: int) -> float:
        """ᾱ_t as a Python float (float64 maths for the fast samplers' coefficients)."""
        return float(self.alpha_bars[t])
