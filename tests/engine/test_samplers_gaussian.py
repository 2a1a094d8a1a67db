"""Sampler correctness beyond parity: Gaussian data with a closed-form x0 predictor.

x0 ~ N(μ, Σ) and x_t = sqrt(ᾱ_t) x0 + sqrt(1-ᾱ_t) ε give E[x0 | x_t] = μ + sqrt(ᾱ_t) Σ C_t⁻¹ (x_t - sqrt(ᾱ_t) μ)
with C_t = ᾱ_t Σ + (1-ᾱ_t) I: the ideal network. Plugged into the samplers, samples must have
mean μ and covariance Σ up to sampling error when the discretisation is fine, stay close at the
default step counts, and degrade gracefully (mean preserved, covariance error bounded, no blow-up)
as steps drop.
"""
from __future__ import annotations

import math

import pytest
import torch

from engine.sampling import DEFAULT_STEPS, make_sampler, run_sampler
from engine.sampling.ancestral import AncestralSampler
from engine.sampling.schedule import Schedule

D = 4
M = 8000


def _problem():
    g = torch.Generator().manual_seed(0)
    A = torch.randn(D, D, generator=g, dtype=torch.float64) * 0.5
    sigma = A @ A.T + 0.05 * torch.eye(D, dtype=torch.float64)
    mu = torch.tensor([1.0, -0.5, 2.0, 0.3], dtype=torch.float64)
    return mu, sigma


def _schedule(N: int) -> Schedule:
    s = Schedule.cosine(N)
    return Schedule(*(getattr(s, f).double() for f in ("betas", "alphas", "alpha_bars", "sigmas_flex", "sigmas_inflex")))


def _sample(name: str, sch: Schedule, steps: int | None, seed: int = 1, x0_dtype: torch.dtype | None = None):
    """``x0_dtype`` bfloat16: the network's input and its x0 prediction are rounded to bf16, as
    when the DiT runs under bf16 autocast (engine.device.select_motion_precision)."""
    mu, sigma = _problem()
    eye = torch.eye(D, dtype=torch.float64)

    def x0_fn(x: torch.Tensor, t: int) -> torch.Tensor:
        ab = sch.alpha_bar(t)
        a = math.sqrt(ab)
        K = a * sigma @ torch.linalg.inv(ab * sigma + (1 - ab) * eye)     # (D,D)
        if x0_dtype is not None:
            x = x.to(x0_dtype).double()
            return (mu + (x - a * mu) @ K.T).to(x0_dtype).double()
        return mu + (x - a * mu) @ K.T

    gen = torch.Generator().manual_seed(seed)
    x_T = torch.randn(M, D, generator=gen, dtype=torch.float64)
    x = run_sampler(make_sampler(name, sch, steps), x0_fn, x_T,
                    lambda i, t: torch.randn(M, D, generator=gen, dtype=torch.float64))
    assert torch.isfinite(x).all()
    mean_err = float((x.mean(0) - mu).abs().max())
    cov_err = float(torch.linalg.norm(torch.cov(x.T) - sigma) / torch.linalg.norm(sigma))
    mean_tol = 5 * math.sqrt(float(sigma.diag().max()) / M)   # 5 standard errors
    return mean_err, cov_err, mean_tol


@pytest.mark.parametrize("name,steps", [("ancestral", None), ("ddim", 200), ("dpmpp_2m", 50)])
def test_fine_discretisation_reproduces_mean_and_covariance(name, steps):
    mean_err, cov_err, mean_tol = _sample(name, _schedule(500), steps)
    assert mean_err < mean_tol
    assert cov_err < 0.04   # sampling error of a covariance from 8000 samples is ~0.02


@pytest.mark.parametrize("name,cov_tol", [("ancestral", 0.15), ("ddim", 0.2), ("dpmpp_2m", 0.12)])
def test_default_steps_on_the_trained_schedule(name, cov_tol):
    """N = 50 (official schedule) at the default step counts."""
    mean_err, cov_err, mean_tol = _sample(name, _schedule(50), DEFAULT_STEPS[name])
    assert mean_err < mean_tol
    assert cov_err < cov_tol


@pytest.mark.parametrize("name", ["ancestral", "ddim", "dpmpp_2m"])
def test_fewer_steps_degrade_gracefully(name):
    sch = _schedule(50)
    errs = []
    for steps in (50, 25, 10, 5, 2):
        mean_err, cov_err, mean_tol = _sample(name, sch, steps)
        assert mean_err < mean_tol, f"{name} {steps} steps moved the mean"
        assert cov_err < 0.9, f"{name} {steps} steps: covariance error {cov_err:.2f}"
        errs.append(cov_err)
    assert errs[-1] > errs[0]                                    # fewer steps are worse ...
    assert all(b >= a - 0.02 for a, b in zip(errs, errs[1:]))    # ... monotonically (within noise)


def test_dpmpp_beats_ddim_at_equal_steps():
    sch = _schedule(50)
    for steps in (10, 15, 20):
        assert _sample("dpmpp_2m", sch, steps)[1] < _sample("ddim", sch, steps)[1]


def test_strided_ancestral_formula_reduces_to_exact_at_every_step():
    sch = Schedule.cosine(50)
    exact = AncestralSampler(sch)
    general = AncestralSampler(sch)
    general.exact = False
    g = torch.Generator().manual_seed(0)
    x, x0, z = (torch.randn(3, 5, generator=g) for _ in range(3))
    for i in range(len(exact.timesteps())):
        torch.testing.assert_close(exact.step(i, x, x0, z), general.step(i, x, x0, z), rtol=1e-5, atol=1e-5)


def test_timesteps_subset_of_trained_schedule():
    sch = Schedule.cosine(50)
    assert sch.timesteps(50) == list(range(50, -1, -1))
    ts = sch.timesteps(15)
    assert ts[0] == 50 and ts[-1] == 0 and len(ts) == 16 and all(a > b for a, b in zip(ts, ts[1:]))
    with pytest.raises(ValueError):
        sch.timesteps(51)


def test_fast_default_as_accurate_as_exact_sampler():
    """The fast default (DPM-Solver++(2M), 10 steps) is no further from the true distribution than
    upstream's exact 50-step ancestral sampler (whose posterior variance under-disperses)."""
    sch = _schedule(50)
    fast = _sample("dpmpp_2m", sch, DEFAULT_STEPS["dpmpp_2m"])[1]
    exact = _sample("ancestral", sch, None)[1]
    assert fast <= exact + 0.02


@pytest.mark.parametrize("name", ["ddim", "dpmpp_2m"])
def test_bf16_network_keeps_the_fast_samplers_on_the_distribution(name):
    """The fast samplers fed by a bfloat16 network (the default motion precision on native-bf16
    CPUs) stay as close to the true mean and covariance as with a float32 network."""
    sch = _schedule(50)
    mean32, cov32, mean_tol = _sample(name, sch, DEFAULT_STEPS[name])
    mean16, cov16, _ = _sample(name, sch, DEFAULT_STEPS[name], x0_dtype=torch.bfloat16)
    assert mean16 < mean_tol
    assert abs(cov16 - cov32) < 0.02, (cov16, cov32)
