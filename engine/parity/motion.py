"""Parity group: schedule, DiT, audio front end, full motion generation (spec §2).

The sampler parity injects the recorded noise (``MG_noise_T``, ``MG_step_noise``); the noise
arrays themselves are recomputed by seeding a torch generator with ``meta.json → sample_seed``
and following upstream's draw order, so they check the RNG stream separately.
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from engine.parity import ParityContext

if TYPE_CHECKING:
    from engine.motion.generate import MotionModel

PREFIXES = ("sched_", "DN_", "AF_", "MG_", "audio")

_SCHED = ("betas", "alphas", "alpha_bars", "sigmas_flex", "sigmas_inflex")
_MOTION_KEYS = ("exp", "scale", "t", "pitch", "yaw", "roll", "R")


def _model(ctx: ParityContext) -> MotionModel:
    from engine.motion.generate import MotionModel
    from engine.weights import WeightsLayout

    if "motion_model" not in ctx.cache:
        ctx.cache["motion_model"] = MotionModel.load(WeightsLayout(ctx.ref_dir), "cpu")
    return ctx.cache["motion_model"]


def _meta(ctx: ParityContext) -> dict[str, Any]:
    path = ctx.ref_dir / "meta.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _wave(ctx: ParityContext) -> np.ndarray:
    from engine.audio import load_audio

    if "motion_wave" not in ctx.cache:
        ctx.cache["motion_wave"] = load_audio(ctx.ref_dir / "audio.wav")
    return ctx.cache["motion_wave"]


def _want(wanted: set[str], *prefixes: str) -> bool:
    return any(n.startswith(prefixes) for n in wanted)


@torch.no_grad()
def compute(ctx: ParityContext, wanted: set[str]) -> dict[str, np.ndarray]:
    from engine.audio import iter_windows, pad_audio, plan_windows
    from engine.motion.generate import (InjectedNoise, MotionOptions, TorchNoise, coef_to_motion,
                                        draw_noise_stream, generate_coef)
    from engine.sampling.schedule import Schedule

    out: dict[str, np.ndarray] = {}
    model = _model(ctx)
    cfg = model.config
    L, P, D = cfg.n_motions, cfg.n_prev_motions, cfg.motion_feat_dim

    if "audio" in wanted:
        out["audio"] = _wave(ctx)

    if _want(wanted, "sched_"):
        sched = Schedule.cosine(model.schedule.N)   # recomputed, not the stored buffers
        for k in _SCHED:
            out[f"sched_{k}"] = getattr(sched, k).numpy()

    if _want(wanted, "DN_"):
        dit = model.dit
        out["DN_TE_pe"] = dit.te.cpu().numpy()
        out["DN_PE_pe"] = dit.pe.cpu().numpy()
        args = [torch.from_numpy(ctx.array(k)) for k in
                ("DN_motion_feat", "DN_step", "DN_audio_feat", "DN_prev_motion_feat", "DN_prev_audio_feat")]
        for variant in ("head", "legacy"):
            out[f"DN_out_{variant}"] = dit(*args, pe_variant=variant).numpy()

    if _want(wanted, "AF_"):
        wave = _wave(ctx)
        audio_np, _ = next(iter_windows(wave, plan_windows(len(wave), L, cfg.fps), cfg.pad_mode))
        audio = torch.from_numpy(audio_np).unsqueeze(0)                         # (1,640L)
        enc = model.audio_encoder
        out["AF_window0_audio"] = audio_np[None]
        out["AF_window0_padded"] = pad_audio(audio).numpy()
        out["AF_window0_conv_features"] = enc.conv_features(audio).numpy()
        out["AF_window0_hubert_hidden"] = enc.hidden(audio).numpy()
        out["AF_window0_audio_feat"] = enc(audio).numpy()

    if _want(wanted, "MG_"):
        meta = _meta(ctx)
        wave = _wave(ctx)
        seed = int(meta.get("sample_seed", 0))
        cfg_scale = float(meta.get("cfg_scale", 2.0))
        plan = plan_windows(len(wave), L, cfg.fps)
        N = model.schedule.N
        # the RNG stream: upstream's draw order on a generator seeded with sample_seed
        out["MG_noise_T"], out["MG_step_noise"] = draw_noise_stream(
            TorchNoise(seed), plan.n_windows, model.audio_encoder.n_layers, N, (1, L, D))
        # the sampler, with the recorded noise injected
        inject = InjectedNoise(ctx.array("MG_noise_T"), ctx.array("MG_step_noise"))
        for variant, tag in (("head", ""), ("legacy", "_legacy")):
            if not any(n.startswith("MG_") and (n.endswith("_legacy") or "_legacy_" in n) == bool(tag)
                       and n not in ("MG_noise_T", "MG_step_noise") for n in wanted):
                continue
            opts = MotionOptions(seed=seed, sampler="ancestral", steps=None, cfg_scale=cfg_scale,
                                 cfg_mode="incremental", smooth=True, pe_variant=variant)
            rec: dict[str, list[np.ndarray]] = {}
            coef = generate_coef(model, wave, opts, noise=inject, record=rec)
            if not tag:
                out["MG_window_audio_in"] = np.stack(rec["window_audio_in"])
                out["MG_window_indicator"] = np.stack(rec["window_indicator"])
                out["MG_window_audio_feat"] = np.stack(rec["window_audio_feat"])
            out[f"MG_window_motion{tag}"] = np.stack(rec["window_motion"])
            out[f"MG_motion_coef{tag}"] = coef
            raw = coef_to_motion(coef, model.template, smooth=False)
            final = coef_to_motion(coef, model.template, smooth=True)
            for k in _MOTION_KEYS:
                out[f"MG_unsmoothed{tag}_{k}"] = raw[k]
                out[f"MG_final{tag}_{k}"] = final[k]
    return {k: v for k, v in out.items() if k in wanted}
