"""Samplers for x0-predicting diffusion models, separate from the network (diffusers style).

Each sampler has ``timesteps()`` (the model-call times, descending), ``needs_noise(i)``,
``begin()`` (reset per window) and ``step(i, x_t, x0_hat, z) -> x_next``; :func:`run_sampler`
is the loop. ``ancestral`` with steps = N is upstream's exact sampler.
"""
from __future__ import annotations

from typing import Callable, Protocol

import torch

from engine.sampling.ancestral import AncestralSampler
from engine.sampling.ddim import DDIMSampler
from engine.sampling.dpm_solver import DPMSolverPP2MSampler
from engine.sampling.known import KnownPrefix
from engine.sampling.schedule import Schedule

from engine.contract.protocol import DEFAULT_STEPS, SAMPLERS  # noqa: F401  (the one list; re-exported)


class Sampler(Protocol):
    name: str
    stochastic: bool
    steps: int
    schedule: Schedule
    ts: list[int]                # steps + 1 times, N .. 0 (timesteps() = the model calls)

    def timesteps(self) -> list[int]: ...
    def needs_noise(self, i: int) -> bool: ...
    def begin(self) -> None: ...
    def step(self, i: int, x_t: torch.Tensor, x0: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor: ...


def make_sampler(name: str, schedule: Schedule, steps: int | None = None) -> Sampler:
    if name == "ancestral":
        return AncestralSampler(schedule, steps)
    if steps is None:
        steps = min(DEFAULT_STEPS[name], schedule.N) if name in DEFAULT_STEPS else schedule.N
    if name == "ddim":
        return DDIMSampler(schedule, steps)
    if name == "dpmpp_2m":
        return DPMSolverPP2MSampler(schedule, steps)
    raise ValueError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")


def run_sampler(sampler: Sampler, x0_fn: Callable[[torch.Tensor, int], torch.Tensor], x_T: torch.Tensor,
                noise_fn: Callable[[int, int], torch.Tensor] | None = None,
                on_step: Callable[[int, int], None] | None = None,
                known: KnownPrefix | None = None) -> torch.Tensor:
    """The reverse loop: noise for step i is drawn *before* the model call (upstream order).

    ``known``: rows held fixed at every step (engine/sampling/known.py; the live stream's
    committed frames)."""
    sampler.begin()
    x = x_T
    ts = sampler.timesteps()
    for i, t in enumerate(ts):
        z = noise_fn(i, t) if (noise_fn is not None and sampler.needs_noise(i)) else None
        x0 = x0_fn(x, t)
        if known is not None:
            x0 = known.clamp_x0(x0)
        x = sampler.step(i, x, x0, z)
        if known is not None and sampler.stochastic:
            x = known.renoise(x, sampler.schedule.alpha_bar(sampler.ts[i + 1]), i)
        if on_step is not None:
            on_step(i + 1, len(ts))
    return x
