"""The motion stage's precision: ``engine.device.select_motion_precision`` and the bf16 audio encoder.

Why these tests: ``--dtype auto`` runs the audio encoder in bfloat16 on CPUs with native bf16
for the fast samplers (2.2x faster encoding, issue #8), so the rule, the size of the error it
brings, the exact path staying bit-exact, and the record in the motion file must not drift.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from engine import device as device_mod
from engine.device import select_motion_precision
from engine.errors import BadRequest
from engine.motion.generate import MotionModel
from engine.weights import WeightsLayout

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.mark.parametrize("native", [True, False])
def test_auto_rule(monkeypatch: pytest.MonkeyPatch, native: bool) -> None:
    monkeypatch.setattr(device_mod, "cpu_has_native_bf16", lambda: native)
    fast = torch.bfloat16 if native else torch.float32
    assert select_motion_precision(CPU, "auto", "dpmpp_2m").compute == fast
    assert select_motion_precision(CPU, "auto", "ddim").compute == fast
    # upstream's exact sampler keeps upstream's numbers; so does an explicit fp32
    assert select_motion_precision(CPU, "auto", "ancestral").compute == torch.float32
    assert select_motion_precision(CPU, "fp32", "dpmpp_2m").compute == torch.float32
    # an explicit dtype applies whatever the sampler
    assert select_motion_precision(CPU, "bf16", "ancestral").compute == torch.bfloat16
    assert select_motion_precision(CUDA, "auto", "dpmpp_2m").compute == torch.float32
    with pytest.raises(BadRequest):
        select_motion_precision(CPU, "fp16", "dpmpp_2m")
    with pytest.raises(BadRequest):
        select_motion_precision(CPU, "float64", "dpmpp_2m")


@pytest.fixture(scope="module")
def model(synthetic_tiny_joyvasa: Path) -> MotionModel:
    return MotionModel.load(WeightsLayout(synthetic_tiny_joyvasa))


def _speech(seconds: float) -> np.ndarray:
    rng = np.random.default_rng(1)
    t = np.arange(int(seconds * 16000)) / 16000
    return (0.2 * np.sin(2 * np.pi * 3 * t) * np.sin(2 * np.pi * 170 * t) + rng.normal(0, 0.01, t.size)).astype(np.float32)


def test_bf16_encoder_error_is_small_and_real(model: MotionModel) -> None:
    wave = _speech(3.0)
    ref = torch.cat(model.encode_wave(wave))
    again = torch.cat(model.encode_wave(wave, dtype=torch.float32))
    bf = torch.cat(model.encode_wave(wave, dtype=torch.bfloat16))
    assert torch.equal(ref, again)                       # float32 stays the exact path
    assert bf.dtype == torch.float32 and bf.shape == ref.shape
    rel = float((bf - ref).norm() / ref.norm())
    assert 0 < rel < 0.03, rel                           # bf16 really ran, and stayed close (official size: 1.2 %)


@pytest.mark.slow
def test_motion_command_records_and_honours_the_precision(tiny_weights: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import soundfile as sf

    from engine.motion.npz import load_motion
    from engine.jobs import MotionConfig, MotionJob, RuntimeConfig
    from engine.pipeline.context import Context
    from engine.pipeline.motion import run_motion
    from engine.runner import Reporter

    monkeypatch.setattr(device_mod, "cpu_has_native_bf16", lambda: True)
    audio = tmp_path / "a.wav"
    sf.write(str(audio), _speech(1.5), 16000)
    ctx = Context(Reporter(None, quiet=True))
    out = {}
    for name, dtype, sampler in (("auto", "auto", "ddim"), ("fp32", "fp32", "ddim"), ("exact", "auto", "ancestral")):
        job = MotionJob(audio=str(audio), out=str(tmp_path / f"{name}.npz"), weights=str(tiny_weights),
                        motion=MotionConfig(seed=3, sampler=sampler, steps=2), runtime=RuntimeConfig("cpu", dtype))
        out[name] = load_motion(run_motion(job, ctx).outputs["motion_npz"])
    assert out["auto"].meta["motion_dtype"] == "bfloat16"
    assert out["fp32"].meta["motion_dtype"] == "float32"
    assert out["exact"].meta["motion_dtype"] == "float32"
    # features are cached per precision: the fp32 take did not reuse the bf16 features, the exact
    # (float32) take reused the fp32 take's
    assert ctx.models.feature_hits == 1
    diff = np.abs(out["auto"].coef - out["fp32"].coef).max()
    assert 0 < diff < 0.1 * np.abs(out["fp32"].coef).max()
