"""Synthetic JoyVASA weights in the official containers (for tests and benchmarks; no real weights).

Writes, under ``root`` (the upstream ``pretrained_weights/`` layout):
  JoyVASA/motion_generator/motion_generator_hubert_chinese.pt
      {'args': argparse.Namespace (every train.py option, ``data_root`` a pathlib path),
       'model': OrderedDict (DiT incl. denoising_net.TE.pe + full audio encoder under
       ``audio_encoder.`` with parametrizations weight-norm names), 'iter': 20000}
  JoyVASA/motion_template/motion_template.pkl   35 float32 arrays, pickle protocol 4
  TencentGameMate:chinese-hubert-base/{config.json, preprocessor_config.json, pytorch_model.bin}
      (legacy ``weight_g``/``weight_v`` names and *different* values: the checkpoint must win)

``config``: "official" (HuBERT-base, D=73, L=100, P=10, F=256, N=50) or "tiny" (the fixture's
tiny sizes: HuBERT hidden 64 / 2 layers, D=73, L=20, P=5, F=32, N=10). Random values are seeded
and every tensor that default init leaves constant (norms, biases) is randomised, so parity-style
tests cannot pass by accident.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import pickle
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

from engine.weights import mark_synthetic

CONFIGS = {
    "official": {"mg": dict(motion_feat_dim=73, n_motions=100, n_prev_motions=10, feature_dim=256, n_diff_steps=50),
                 "hubert": {}},
    "tiny": {"mg": dict(motion_feat_dim=73, n_motions=20, n_prev_motions=5, feature_dim=32, n_diff_steps=10),
             "hubert": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                            conv_dim=[16] * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4)},
}

PREPROCESSOR_CONFIG = {"do_normalize": True, "feature_extractor_type": "Wav2Vec2FeatureExtractor",
                       "feature_size": 1, "padding_side": "right", "padding_value": 0,
                       "return_attention_mask": False, "sampling_rate": 16000}


def _train_args(mg: dict[str, int]) -> argparse.Namespace:
    """Every option train.py stores (values as the official run would have them)."""
    return argparse.Namespace(
        mode="train", iter=1, exp_name="synthetic", data_root=pathlib.Path("data"), motion_filename="motions.pkl",
        motion_templete_filename="motion_templete.pkl", batch_size=16, num_workers=4, crop_strategy="random",
        normalize_type="mix", target="sample", guiding_conditions="audio,", cfg_mode="incremental",
        n_diff_steps=mg["n_diff_steps"], diff_schedule="cosine", no_head_pose=False, rot_repr="aa",
        audio_model="hubert_zh", architecture="decoder", align_mask_width=1, no_use_learnable_pe=False,
        use_indicator=True, feature_dim=mg["feature_dim"], n_heads=8, n_layers=6, mlp_ratio=4,
        n_motions=mg["n_motions"], n_prev_motions=mg["n_prev_motions"], motion_feat_dim=mg["motion_feat_dim"],
        fps=25, pad_mode="zero", max_iter=50000, lr=0.0001, gradient_accumulation_steps=1, scheduler="None",
        criterion="l2", clip_grad=True, l_exp=0.1, l_exp_vel=0.0001, l_exp_smooth=0.0001, l_head_angle=0.01,
        l_head_vel=0.01, l_head_smooth=0.01, l_head_trans=0.01, no_constrain_prev=False,
        use_context_audio_feat=False, trunc_prob1=0.3, trunc_prob2=0.4, save_iter=1000, val_iter=50,
        log_iter=50, log_smooth_win=50, warm_iter=2000, cos_max_iter=12000, min_lr_ratio=0.02,
    )


def _randomise_constants(sd: dict[str, torch.Tensor], gen: torch.Generator) -> None:
    """Norm weights ~ 1 + U(-0.2, 0.2), biases ~ U(-0.1, 0.1) (default init makes them constant)."""
    for k, v in sd.items():
        if not v.is_floating_point() or v.dim() != 1:
            continue
        if k.endswith("bias"):
            sd[k] = (torch.rand(v.shape, generator=gen) - 0.5) * 0.2
        elif "norm" in k and k.endswith("weight"):
            sd[k] = 1 + (torch.rand(v.shape, generator=gen) - 0.5) * 0.4


def _template(gen: np.random.Generator) -> dict[str, np.ndarray]:
    """Plausible statistics of LivePortrait motion (degrees for angles), float32."""
    out: dict[str, np.ndarray] = {}
    specs = {  # name: (mean, spread, shape)
        "scale": (1.5, 0.15, 1), "t": (0.0, 0.03, 3), "exp": (0.0, 0.02, 63),
        "pitch": (2.0, 8.0, 1), "yaw": (0.0, 12.0, 1), "roll": (0.0, 5.0, 1),
    }
    for name, (mean, spread, n) in specs.items():
        m = (mean + gen.normal(0, spread * 0.2, n)).astype(np.float32)
        s = (spread * (0.5 + gen.random(n))).astype(np.float32)
        out[f"mean_{name}"], out[f"std_{name}"] = m, s
        out[f"max_{name}"] = (m + 3 * s).astype(np.float32)
        out[f"min_{name}"] = (m - 3 * s).astype(np.float32)
        out[f"abs_max_{name}"] = np.maximum(np.abs(out[f"max_{name}"]), np.abs(out[f"min_{name}"])).astype(np.float32)
    R_mean = np.eye(3, dtype=np.float32).reshape(9) + gen.normal(0, 0.01, 9).astype(np.float32)
    R_std = (0.05 + 0.05 * gen.random(9)).astype(np.float32)
    out.update(mean_R=R_mean, std_R=R_std, max_R=np.minimum(R_mean + 3 * R_std, 1).astype(np.float32),
               min_R=np.maximum(R_mean - 3 * R_std, -1).astype(np.float32))
    out["abs_max_R"] = np.maximum(np.abs(out["max_R"]), np.abs(out["min_R"])).astype(np.float32)
    order = [f"{stat}_{q}" for stat in ("mean", "std", "max", "min", "abs_max")
             for q in ("scale", "R", "t", "exp", "pitch", "yaw", "roll")]
    return {k: out[k] for k in order}


def write_joyvasa_weights(root: Path, config: str = "tiny", seed: int = 0,
                          overrides: dict[str, int] | None = None) -> None:
    """Write the three JoyVASA pieces under ``root`` (see module docstring). ``overrides`` changes
    motion-generator sizes, e.g. ``{"motion_feat_dim": 70, "n_prev_motions": 25}`` (first upload)."""
    from transformers import HubertConfig, HubertModel

    from engine.models.motion_dit import DenoisingNetwork, sinusoid_table
    from engine.sampling.schedule import Schedule

    if config not in CONFIGS:
        raise ValueError(f"config must be one of {sorted(CONFIGS)}, got {config!r}")
    mg, hub = {**CONFIGS[config]["mg"], **(overrides or {})}, CONFIGS[config]["hubert"]
    root = Path(root)
    mark_synthetic(root, "joyvasa", config, seed)
    D, L, P, Fd, N = (mg[k] for k in ("motion_feat_dim", "n_motions", "n_prev_motions", "feature_dim", "n_diff_steps"))
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        hcfg = HubertConfig(**hub)
        hubert = HubertModel(hcfg).eval()
        dit = DenoisingNetwork(D, Fd, L, P)
    enc_sd = {k: v.detach().clone() for k, v in hubert.state_dict().items()}
    _randomise_constants(enc_sd, gen)
    dit_sd = {k: v.detach().clone() for k, v in dit.state_dict().items()}
    _randomise_constants(dit_sd, gen)

    model: "OrderedDict[str, torch.Tensor]" = OrderedDict()
    model["start_audio_feat"] = torch.randn(1, P, Fd, generator=gen)
    model["start_motion_feat"] = torch.randn(1, P, D, generator=gen) * 0.5 + 0.5
    model["null_audio_feat"] = torch.randn(1, 1, Fd, generator=gen)
    for k, v in enc_sd.items():
        model[f"audio_encoder.{k}"] = v
    audio_map = torch.nn.Linear(hcfg.hidden_size, Fd)
    model["audio_feature_map.weight"] = audio_map.weight.detach().clone().normal_(0, hcfg.hidden_size ** -0.5, generator=gen)
    model["audio_feature_map.bias"] = (torch.rand(Fd, generator=gen) - 0.5) * 0.2
    model["denoising_net.alignment_mask"] = ~torch.eye(P + L, dtype=torch.bool)
    model["denoising_net.TE.pe"] = sinusoid_table(501, Fd).unsqueeze(0)
    for k, v in dit_sd.items():
        key = "transformer.layers." + k[len("layers."):] if k.startswith("layers.") else k
        model[f"denoising_net.{key}"] = v
        if k == "diff_step_map.2.bias":
            model["denoising_net.PE.pe"] = sinusoid_table(600, Fd).unsqueeze(0)
    sched = Schedule.cosine(N)
    for name in ("betas", "alphas", "alpha_bars", "sigmas_flex", "sigmas_inflex"):
        model[f"diffusion_sched.{name}"] = getattr(sched, name).clone()

    mg_dir = root / "JoyVASA/motion_generator"
    mg_dir.mkdir(parents=True, exist_ok=True)
    torch.save({"args": _train_args(mg), "model": model, "iter": 20000}, mg_dir / "motion_generator_hubert_chinese.pt")

    tpl_dir = root / "JoyVASA/motion_template"
    tpl_dir.mkdir(parents=True, exist_ok=True)
    with open(tpl_dir / "motion_template.pkl", "wb") as fh:
        pickle.dump(_template(np.random.default_rng(seed)), fh, protocol=4)

    hub_dir = root / "TencentGameMate:chinese-hubert-base"
    hub_dir.mkdir(parents=True, exist_ok=True)
    hcfg.to_json_file(str(hub_dir / "config.json"))
    (hub_dir / "preprocessor_config.json").write_text(json.dumps(PREPROCESSOR_CONFIG, indent=2) + "\n")
    legacy: "OrderedDict[str, torch.Tensor]" = OrderedDict()
    for k, v in enc_sd.items():  # the "pre-fine-tuning" folder weights: different values, legacy names
        k = k.replace("parametrizations.weight.original0", "weight_g").replace("parametrizations.weight.original1", "weight_v")
        legacy[k] = v + 0.05 * torch.randn(v.shape, generator=gen) if v.is_floating_point() else v
    torch.save(legacy, hub_dir / "pytorch_model.bin")
