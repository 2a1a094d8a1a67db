"""Upstream's lip normalisation (``lip_delta_before_animation``, spec §3 step 2) in the animation loop.

Why: a portrait photographed with the mouth open keeps that opening as its rest pose unless the
lip MLP closes it once; upstream's gradio app does this by default when the source lip-open ratio
is at least 0.03. These tests pin when it applies, what it adds, and that ``animate`` wires the
face mesh's ratio (``Framing.lip_open``) through to the driving keypoints.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.render.compose import (LIP_NORMALIZE_THRESHOLD, ComposeOptions, DrivingMotion, SourceKeypoints,
                                   compose_driving, lip_normalization)

REPO = Path(__file__).resolve().parents[2]


def _lip_net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(65, 16), torch.nn.ReLU(), torch.nn.Linear(16, 63))


def _x_s() -> torch.Tensor:
    return torch.randn(1, 21, 3, generator=torch.Generator().manual_seed(1)) * 0.1


@pytest.mark.parametrize("opts,lip_open,why", [
    (ComposeOptions(animal=True), 0.2, "animal"),
    (ComposeOptions(normalize_lip=False), 0.2, "--no-normalize-lip"),
    (ComposeOptions(relative=False), 0.2, "relative"),
    (ComposeOptions(), None, "no lip-open ratio"),
    (ComposeOptions(), LIP_NORMALIZE_THRESHOLD - 1e-4, "not needed"),
    (ComposeOptions.upstream_cli(), 0.2, "--no-normalize-lip"),
])
def test_when_it_does_not_apply(opts, lip_open, why) -> None:
    delta, note = lip_normalization(opts, lip_open, _lip_net(), _x_s())
    assert delta is None and why in note


def test_delta_is_the_lip_mlp_of_source_and_ratio_to_zero() -> None:
    net, x_s = _lip_net(), _x_s()
    delta, note = lip_normalization(ComposeOptions(), 0.12, net, x_s)
    assert "on" in note and delta.shape == (1, 21, 3)
    expected = net(torch.cat([x_s.reshape(1, -1), torch.tensor([[0.12, 0.0]])], 1)).reshape(1, 21, 3)
    torch.testing.assert_close(delta, expected)
    other, _ = lip_normalization(ComposeOptions(), 0.30, net, x_s)
    assert not torch.allclose(delta, other)        # the ratio reaches the MLP


def _motion(n: int = 5) -> tuple[SourceKeypoints, DrivingMotion]:
    g = torch.Generator().manual_seed(2)
    eye = torch.eye(3)[None]
    src = SourceKeypoints(x_c=torch.randn(1, 21, 3, generator=g) * 0.1, exp=torch.randn(1, 21, 3, generator=g) * 0.01,
                          scale=torch.ones(1, 1), t=torch.zeros(1, 3), R=eye.clone(),
                          x_s=torch.randn(1, 21, 3, generator=g) * 0.1)
    mot = DrivingMotion(exp=torch.randn(n, 21, 3, generator=g) * 0.01, scale=torch.ones(n, 1),
                        t=torch.randn(n, 3, generator=g) * 0.01, R=eye.expand(n, 3, 3).clone())
    return src, mot


@pytest.mark.parametrize("stitching", [True, False])
def test_added_after_stitching_and_scaled_by_the_multiplier(stitching: bool) -> None:
    src, mot = _motion()
    stitch = (lambda x_s, x_d: x_d + 0.01 * x_s) if stitching else None
    opts = ComposeOptions(stitching=stitching, driving_multiplier=1.3)
    delta = torch.randn(1, 21, 3, generator=torch.Generator().manual_seed(3)) * 0.02
    base = compose_driving(src, mot, opts, stitch)
    with_lip = compose_driving(src, mot, opts, stitch, lip_delta=delta)
    torch.testing.assert_close(with_lip - base, (delta * 1.3).expand_as(base))
    ref = DrivingMotion(exp=mot.exp[:1], scale=mot.scale[:1], t=mot.t[:1], R=mot.R[:1])
    tail = compose_driving(src, mot, opts, stitch, reference=ref, lip_delta=delta)
    torch.testing.assert_close(tail - compose_driving(src, mot, opts, stitch, reference=ref), (delta * 1.3).expand_as(tail))


@pytest.mark.slow
def test_animate_applies_the_framings_lip_open(tiny_weights: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """animate: Framing.lip_open ≥ 0.03 moves the driving keypoints by the lip MLP's delta, once
    per portrait; --no-normalize-lip and a small ratio leave them alone."""
    import soundfile as sf

    import engine.framing.frame as frame_mod
    from engine.pipeline.animate import run_animate
    from engine.jobs import AnimateJob, MotionConfig, RenderConfig, RuntimeConfig
    from engine.pipeline.context import Context
    from engine.runner import Reporter

    wave, sr = sf.read(str(REPO / "examples" / "speech.wav"), dtype="float32")
    audio = tmp_path / "a.wav"
    sf.write(str(audio), wave[: int(0.3 * sr)], sr)
    real = frame_mod.frame_portrait
    ratio = {"value": None}

    def framed(picture, opts):
        return dataclasses.replace(real(picture, opts), lip_open=ratio["value"])

    monkeypatch.setattr(frame_mod, "frame_portrait", framed)
    logs: list[str] = []
    runs = {}
    for name, value, normalize in (("open", 0.25, True), ("off", 0.25, False), ("closed", 0.01, True)):
        ratio["value"] = value
        rep = Reporter(None, quiet=True)
        monkeypatch.setattr(rep, "log", lambda msg, *a, **k: logs.append(msg))
        job = AnimateJob(image=str(REPO / "examples" / "portrait.jpg"), audio=str(audio),
                         frames_dir=str(tmp_path / name), save_driving=str(tmp_path / f"{name}.npy"),
                         weights=str(tiny_weights), motion=MotionConfig(sampler="ddim", steps=2),
                         render=RenderConfig(crop="none", pasteback=False, max_frames=2, normalize_lip=normalize),
                         runtime=RuntimeConfig("cpu", "fp32"))
        run_animate(job, Context(rep))
        runs[name] = np.load(tmp_path / f"{name}.npy")
    assert any("lip normalisation: on (source lip-open ratio 0.250)" in m for m in logs)
    assert any("--no-normalize-lip" in m for m in logs) and any("not needed" in m for m in logs)
    np.testing.assert_array_equal(runs["off"], runs["closed"])
    shift = runs["open"] - runs["off"]                        # the same delta on every frame
    assert np.abs(shift).max() > 1e-4
    np.testing.assert_allclose(shift, np.broadcast_to(shift[:1], shift.shape), atol=1e-5)
