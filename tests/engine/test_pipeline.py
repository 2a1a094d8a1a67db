"""The pipeline layer: configs round-trip through JSON, one precision decision reaches stage one,
the model cache loads each network set once, CLI arguments and configs agree."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from engine.errors import BadRequest
from engine.jobs import AnimateJob, MotionConfig, MotionJob, RenderConfig, RuntimeConfig
from engine_testkit import speech_clip

REPO = Path(__file__).resolve().parents[2]
SPEECH = REPO / "examples" / "speech.wav"
PORTRAIT = REPO / "examples" / "portrait.jpg"


def test_configs_round_trip_through_json() -> None:
    motion = MotionConfig(seed=7, sampler="ddim", steps=12, cfg_scale=1.5, smooth=False, pe_variant="legacy", fps=30.0)
    render = RenderConfig(region="lip", pose_strength=0.5, exp_strength=1.25, relative=False, stitching=False,
                          driving_multiplier=1.1, crop="10,20,200,200", pasteback=False, fps=24.0,
                          upstream_timing=True, batch=2, max_frames=5)
    jobs = [MotionJob(audio="a.wav", out="m.npz", weights="/w", motion=motion, runtime=RuntimeConfig("cpu")),
            AnimateJob(image="p.png", audio="a.wav", out="o.mp4", frames_dir="f", save_motion="s.npz",
                       weights="/w", render=render, motion=dataclasses.replace(motion, fps=None),
                       runtime=RuntimeConfig("cpu", "bf16"))]
    for job in jobs:
        text = job.to_json()
        assert json.loads(text)  # plain JSON, no custom types
        again = type(job).from_json(text)
        assert again == job and again.to_json() == text
    assert jobs[1].runtime.dtype == "bfloat16"


def test_configs_are_frozen_and_validated() -> None:
    job = MotionJob(audio="a.wav", out="m.npz")
    with pytest.raises(AttributeError):
        job.audio = "b.wav"  # type: ignore[misc]
    for bad in ({"sampler": "euler"}, {"steps": 0}, {"cfg_scale": float("nan")}, {"pe_variant": "x"}):
        with pytest.raises(BadRequest):
            MotionConfig(**bad)
    # numeric bounds are engine/jobs.py's (the same messages on every entry point)
    for bad in ({"region": "nose"}, {"fps": 500.0}, {"batch": 0}, {"pose_strength": float("inf")}):
        with pytest.raises(BadRequest):
            RenderConfig(**bad)
    with pytest.raises(BadRequest, match="--cfg-scale"):
        MotionConfig(cfg_scale=float("nan"))
    with pytest.raises(BadRequest):
        RuntimeConfig(dtype="int8")
    with pytest.raises(BadRequest):
        MotionJob(audio="a.wav", out="m.mp4")
    with pytest.raises(BadRequest, match="unknown option"):
        MotionJob.from_dict({"audio": "a.wav", "out": "m.npz", "colour": "red"})


@pytest.mark.parametrize("spelling,canonical", [("bf16", "bfloat16"), ("BF16", "bfloat16"), ("fp32", "float32"),
                                                 ("fp16", "float16"), ("bfloat16", "bfloat16"), ("auto", "auto")])
def test_cli_dtype_spellings_reach_the_job(spelling: str, canonical: str) -> None:
    from engine.cli import build_parser

    args = build_parser(["animate"]).parse_args(["animate", "--image", "p.png", "--audio", "a.wav", "--out", "o.mp4",
                                                 "--dtype", spelling])
    assert AnimateJob.from_args(args).runtime.dtype == canonical


def test_cli_defaults_equal_config_defaults() -> None:
    """Parsing no options gives the configs' own defaults: the CLI and the configs cannot drift apart."""
    from engine.cli import build_parser

    a = AnimateJob.from_args(build_parser(["animate"]).parse_args(["animate", "--image", "p.png", "--audio", "a.wav", "--out", "o.mp4"]))
    assert a.render == RenderConfig() and a.motion == MotionConfig() and a.runtime == RuntimeConfig()
    m = MotionJob.from_args(build_parser(["motion"]).parse_args(["motion", "--audio", "a.wav", "--out", "m.npz"]))
    assert m.motion == MotionConfig() and m.runtime == RuntimeConfig()


def _ctx():
    from engine.pipeline.context import Context
    from engine.runner import Reporter

    return Context(Reporter(None, quiet=True))


@pytest.mark.slow
def test_bf16_animate_runs_on_bf16_resident_weights(tiny_weights: Path, tmp_path: Path) -> None:
    """``animate --dtype bf16`` loads stage one in bfloat16 (what ``bench render`` measures), fp32 stays fp32."""
    import torch

    from engine.pipeline.animate import run_animate

    audio = speech_clip(tmp_path, 0.2)
    loaded = {}
    for dtype in ("bf16", "fp32"):
        ctx = _ctx()
        job = AnimateJob(image=str(PORTRAIT), audio=str(audio), frames_dir=str(tmp_path / f"frames_{dtype}"),
                         weights=str(tiny_weights), render=RenderConfig(crop="none", pasteback=False, max_frames=1),
                         motion=MotionConfig(sampler="ddim", steps=2), runtime=RuntimeConfig("cpu", dtype))
        outputs = run_animate(job, ctx).outputs
        assert Path(outputs["frames_dir"]).is_dir()
        (s1,) = ctx.models.loaded("stage_one")
        conv_dtypes = {m.weight.dtype for m in list(s1.W.modules()) + list(s1.G.modules())
                       if isinstance(m, (torch.nn.Conv2d, torch.nn.Conv3d))}
        loaded[dtype] = (s1.dtype, conv_dtypes)
    assert loaded["bf16"][0] == torch.bfloat16 and torch.bfloat16 in loaded["bf16"][1]
    assert loaded["fp32"] == (torch.float32, {torch.float32})


@pytest.mark.slow
def test_one_context_loads_the_motion_model_once_and_reuses_audio_features(tiny_weights: Path,
                                                                           tmp_path: Path) -> None:
    from engine.motion.npz import load_motion
    from engine.pipeline.motion import run_motion

    ctx = _ctx()
    audio = speech_clip(tmp_path, 1.0)
    outs = []
    for seed in (1, 2):
        job = MotionJob(audio=str(audio), out=str(tmp_path / f"m{seed}.npz"), weights=str(tiny_weights),
                        motion=MotionConfig(seed=seed, sampler="ddim", steps=2), runtime=RuntimeConfig("cpu"))
        outs.append(load_motion(run_motion(job, ctx).outputs["motion_npz"]))
    assert ctx.models.loads["motion"] == 1 and ctx.models.feature_hits == 1
    assert not np.allclose(outs[0].exp, outs[1].exp)  # the seed still matters
    # the cached features give exactly what a fresh context computes
    fresh = _ctx()
    job = MotionJob(audio=str(audio), out=str(tmp_path / "fresh.npz"), weights=str(tiny_weights),
                    motion=MotionConfig(seed=2, sampler="ddim", steps=2), runtime=RuntimeConfig("cpu"))
    again = load_motion(run_motion(job, fresh).outputs["motion_npz"])
    np.testing.assert_array_equal(again.exp, outs[1].exp)
    assert ctx.models.release() == 1 and ctx.models.loaded("motion") == []
