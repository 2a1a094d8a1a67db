"""Motion generator vs the upstream reference arrays (tiny fixture): DiT, audio front end,
schedule, the seeded noise stream and the full multi-window sampler."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from engine.parity import compare


@pytest.fixture(scope="module")
def ref(tiny_reference):
    return np.load(tiny_reference / "reference.npz")


@pytest.fixture(scope="module")
def model(tiny_reference):
    from engine.motion.generate import MotionModel
    from engine.weights import WeightsLayout

    return MotionModel.load(WeightsLayout(tiny_reference))


def _ok(name, ours, ref):
    line = compare(name, ours, ref[name])
    assert line.status == "ok", line.render()


def test_seeded_noise_stream_reproduces_upstream(tiny_reference, ref, model):
    """torch seeded with meta.sample_seed + our draw order == the recorded noise, bit for bit."""
    from engine.audio import load_audio, plan_windows
    from engine.motion.generate import TorchNoise, draw_noise_stream

    seed = json.loads((tiny_reference / "meta.json").read_text())["sample_seed"]
    cfg = model.config
    L, D, N = cfg.n_motions, cfg.motion_feat_dim, model.schedule.N
    plan = plan_windows(len(load_audio(tiny_reference / "audio.wav")), L)
    first, step = draw_noise_stream(TorchNoise(seed), plan.n_windows, model.audio_encoder.n_layers, N, (1, L, D))
    assert np.array_equal(first, ref["MG_noise_T"])
    assert np.array_equal(step, ref["MG_step_noise"])


def test_seeded_run_equals_injected_run(tiny_reference, ref, model):
    """The exact sampler seeded with sample_seed gives the reference motion without injection."""
    from engine.audio import load_audio
    from engine.motion.generate import MotionOptions, generate_coef

    meta = json.loads((tiny_reference / "meta.json").read_text())
    wave = load_audio(tiny_reference / "audio.wav")
    opts = MotionOptions(seed=meta["sample_seed"], sampler="ancestral", cfg_scale=meta["cfg_scale"])
    _ok("MG_motion_coef", generate_coef(model, wave, opts), ref)


@pytest.mark.parametrize("variant", ["head", "legacy"])
def test_denoiser_one_call(ref, model, variant):
    args = [torch.from_numpy(ref[k]) for k in
            ("DN_motion_feat", "DN_step", "DN_audio_feat", "DN_prev_motion_feat", "DN_prev_audio_feat")]
    with torch.no_grad():
        _ok(f"DN_out_{variant}", model.dit(*args, pe_variant=variant).numpy(), ref)
        _ok(f"DN_out_{variant}", model.dit(*args, pe_variant=variant, hoist=False).numpy(), ref)


def test_group_module_all_ok(tiny_reference):
    """``engine.parity.motion`` reproduces every sched_/DN_/AF_/MG_/audio array (injected noise)."""
    from engine.parity import INPUT_NAMES, ParityContext
    from engine.parity import motion as group

    ref = np.load(tiny_reference / "reference.npz")
    ctx = ParityContext(tiny_reference, ref)
    wanted = {n for n in ref.files if n.startswith(group.PREFIXES) and n not in INPUT_NAMES}
    out = group.compute(ctx, wanted)
    assert set(out) == wanted
    for name in sorted(wanted):
        _ok(name, out[name], ref)
