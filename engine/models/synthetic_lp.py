"""Random LivePortrait weights in the official file layout and containers (for tests and benchmarks).

Writes the four base-model state dicts (BN buffers incl. ``num_batches_tracked``; SPADE convs
as ``weight_orig/weight_u/weight_v``), the stitching dict (``module.``-prefixed keys, as the
DDP-trained official file) and ``models.yaml``. Random init follows shared/fixtures/README.md so
outputs are not degenerate: default PyTorch init, then every tensor that init leaves constant
(norm affine, BN running stats, GRN γ/β) is randomised, spectral-norm u/v are settled with power
iterations (σ ≈ the top singular value), and the dense-motion mask / occlusion convs are ×8 so
their softmax / sigmoid are not flat. Never commit the output.
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

from engine.models.appearance import AppearanceFeatureExtractor
from engine.models.config import LivePortraitConfig
from engine.models.motion_extractor import MotionExtractor
from engine.models.spade import SPADEDecoder
from engine.models.stitching import CHECKPOINT_ENTRIES, StitchingRetargetingNetwork
from engine.models.warping import WarpingNetwork
from engine.weights import WeightsLayout, mark_synthetic

#: models.yaml ``motion_generator_params`` (upstream load_model requires the block; it is not used)
MOTION_GENERATOR_PARAMS = {
    "official": {"motion_feat_dim": 256, "n_motions": 100, "n_prev_motions": 25, "feature_dim": 256},
    "tiny": {"motion_feat_dim": 73, "n_motions": 20, "n_prev_motions": 5, "feature_dim": 32},
}
POWER_ITERATIONS = 30


@torch.no_grad()
def _randomise_constants(module: nn.Module, gen: torch.Generator) -> None:
    for sub in module.modules():
        if isinstance(sub, nn.modules.batchnorm._BatchNorm):
            c = sub.num_features
            sub.weight.copy_(0.5 + torch.rand(c, generator=gen))
            sub.bias.copy_(0.1 * torch.randn(c, generator=gen))
            sub.running_mean.copy_(0.1 * torch.randn(c, generator=gen))
            sub.running_var.copy_(0.5 + torch.rand(c, generator=gen))
            sub.num_batches_tracked.fill_(int(torch.randint(1, 100000, (1,), generator=gen)))
        elif isinstance(sub, nn.LayerNorm) or type(sub).__name__ == "LayerNormChannelsFirst":
            n = sub.weight.shape[0]
            sub.weight.copy_(0.5 + torch.rand(n, generator=gen))
            sub.bias.copy_(0.1 * torch.randn(n, generator=gen))
        elif type(sub).__name__ == "GRN":
            sub.gamma.copy_(0.1 * torch.randn(sub.gamma.shape, generator=gen))
            sub.beta.copy_(0.1 * torch.randn(sub.beta.shape, generator=gen))


@torch.no_grad()
def _spectral_state(gen_net: SPADEDecoder, gen: torch.Generator) -> "OrderedDict[str, torch.Tensor]":
    """Our plain-weight state dict → official naming; weight_orig = W, u/v from power iteration."""
    spectral = {f"{name}.{conv}.weight" for name, blk in gen_net.res_blocks() for conv in blk.spectral_convs()}
    state = gen_net.state_dict()
    out: "OrderedDict[str, torch.Tensor]" = OrderedDict()
    pending: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        if key in spectral:
            stem = key[: -len("weight")]
            w = value.clone()
            mat = w.reshape(w.shape[0], -1)  # (out, in·k·k)
            u = nn.functional.normalize(torch.randn(mat.shape[0], generator=gen), dim=0, eps=1e-12)
            v = nn.functional.normalize(torch.randn(mat.shape[1], generator=gen), dim=0, eps=1e-12)
            for _ in range(POWER_ITERATIONS):
                v = nn.functional.normalize(torch.mv(mat.t(), u), dim=0, eps=1e-12)
                u = nn.functional.normalize(torch.mv(mat, v), dim=0, eps=1e-12)
            triple = {stem + "weight_orig": w, stem + "weight_u": u, stem + "weight_v": v}
            if stem + "bias" in state:
                pending[stem + "bias"] = triple  # official order: bias, weight_orig, weight_u, weight_v
            else:
                out.update(triple)
        else:
            out[key] = value
            if key in pending:
                out.update(pending.pop(key))
    return out


def build_random_networks(cfg: LivePortraitConfig, seed: int) -> dict[str, nn.Module]:
    """Randomly initialised networks (exact, unfolded layout) for ``cfg``; deterministic in ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        nets: dict[str, nn.Module] = {
            "appearance": AppearanceFeatureExtractor(cfg.appearance),
            "motion": MotionExtractor(cfg.motion),
            "warping": WarpingNetwork(cfg.warping),
            "spade": SPADEDecoder(cfg.spade),
        }
        for name in CHECKPOINT_ENTRIES:
            nets[name] = StitchingRetargetingNetwork(cfg.stitching[name])
    for net in nets.values():
        _randomise_constants(net, gen)
    with torch.no_grad():
        dm = nets["warping"].dense_motion_network
        dm.mask.weight.mul_(8.0)
        if dm.occlusion is not None:
            dm.occlusion.weight.mul_(8.0)
    return nets


def write_liveportrait_weights(root: Path, config: str, seed: int) -> None:
    """Write random LivePortrait weights of ``config`` ('official' | 'tiny') under ``root``."""
    import yaml

    cfg = LivePortraitConfig.named(config)
    layout = WeightsLayout(Path(root))
    mark_synthetic(layout.root, "liveportrait", config, seed)
    nets = build_random_networks(cfg, seed)
    gen = torch.Generator().manual_seed(seed + 1)
    files = {
        layout.appearance_feature_extractor: nets["appearance"].state_dict(),
        layout.motion_extractor: nets["motion"].state_dict(),
        layout.warping_module: nets["warping"].state_dict(),
        layout.spade_generator: _spectral_state(nets["spade"], gen),
        layout.stitching_retargeting: {
            entry: OrderedDict((f"module.{k}", v) for k, v in nets[name].state_dict().items())
            for name, entry in CHECKPOINT_ENTRIES.items()
        },
    }
    for path, obj in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".partial")
        torch.save(obj, tmp)
        tmp.replace(path)
    params = cfg.to_model_params()
    params["motion_generator_params"] = dict(MOTION_GENERATOR_PARAMS[config])
    layout.models_yaml.parent.mkdir(parents=True, exist_ok=True)
    with open(layout.models_yaml, "w", encoding="utf-8") as fh:
        yaml.safe_dump({"model_params": params}, fh, sort_keys=False)
