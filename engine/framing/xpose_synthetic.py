"""Random X-Pose weights in upstream's container (``{"model": state_dict}``) for tests and benchmarks.

Why: the official ``liveportrait_animals/xpose.pth`` cannot be downloaded here (and its licence is
non-commercial); the loader, the strict key check and the timing still have to run at full size.
The folder is marked synthetic (engine/weights.py) before the file is written. Never commit the output.
"""
from __future__ import annotations

from pathlib import Path

from engine.framing.xpose import XPOSE_FILE


def random_state_dict(config: str = "official", seed: int = 0) -> dict:
    """A full state dict of the ``official`` or ``tiny`` X-Pose with seeded random values."""
    import torch
    from torch import nn

    from engine.framing.xpose_model import Attention, XPose, XPoseConfig

    cfg = XPoseConfig.official() if config == "official" else XPoseConfig.tiny()
    torch.manual_seed(seed)
    model = XPose(cfg)
    for m in model.modules():
        if isinstance(m, Attention):
            nn.init.xavier_uniform_(m.in_proj_weight)
            nn.init.zeros_(m.in_proj_bias)
    with torch.no_grad():
        nn.init.normal_(model.transformer.level_embed)
        nn.init.normal_(model.transformer.tgt_embed.weight)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def write_xpose_weights(root: Path, config: str = "official", seed: int = 0) -> Path:
    """Write ``root/liveportrait_animals/xpose.pth`` (atomic); returns its path."""
    import torch

    from engine.fileio import atomic_path
    from engine.weights import mark_synthetic

    root = Path(root)
    mark_synthetic(root, "xpose", config, seed)
    out = root / XPOSE_FILE
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out, suffix=".pth") as tmp:
        torch.save({"model": random_state_dict(config, seed)}, tmp)
    return out
