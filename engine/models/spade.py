"""G, SPADE decoder (LivePortrait §3.1): warped 256×64² features → 512² RGB.

Weights: liveportrait/base_models/spade_generator.pth; upstream:
src/modules/spade_generator.py + util.py (SPADE, SPADEResnetBlock) @1986663. Spec §1.5.

Spectral norm is folded at load: the checkpoint stores ``weight_orig/weight_u/weight_v``; in
eval mode torch's spectral_norm uses ``W = weight_orig / σ`` with ``σ = u·(W_mat v)`` from the
stored vectors (no power iteration), so dividing once at load gives the same kernel the
upstream forward computes on every call (:func:`fold_spectral_norm`, exact up to one division).
"""
from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from engine.models.config import SpadeConfig

SPADE_HIDDEN = 128  # hard-coded upstream
SPECTRAL_SUFFIXES = ("weight_orig", "weight_u", "weight_v")


class SPADE(nn.Module):
    """out = InstanceNorm(x)·(1 + γ(seg)) + β(seg); seg resized (nearest) to x's size."""

    def __init__(self, norm_nc: int, label_nc: int) -> None:
        super().__init__()
        self.mlp_shared = nn.Sequential(nn.Conv2d(label_nc, SPADE_HIDDEN, 3, padding=1), nn.ReLU())
        self.mlp_gamma = nn.Conv2d(SPADE_HIDDEN, norm_nc, 3, padding=1)
        self.mlp_beta = nn.Conv2d(SPADE_HIDDEN, norm_nc, 3, padding=1)

        self.fast = False  # see StageOne.load(fast=...)

    def forward(self, x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        seg = F.interpolate(seg, size=x.shape[2:], mode="nearest")  # (B, label_nc, H, W)
        actv = self.mlp_shared(seg)  # (B, 128, H, W)
        if not self.fast:
            normalized = F.instance_norm(x, eps=1e-5)  # no affine, biased variance
            return normalized * (1 + self.mlp_gamma(actv)) + self.mlp_beta(actv)
        # fast path: mlp_gamma's bias carries the +1 (folded at load), one fused multiply-add;
        # under bf16 everything stays bf16 (the statistics accumulate in float32 inside the
        # kernel) so no full-size dtype/layout copies are made
        gamma1, beta = self.mlp_gamma(actv), self.mlp_beta(actv)
        with torch.autocast(device_type=x.device.type, enabled=False):
            x = x.to(gamma1.dtype)
            normalized = F.instance_norm(x, eps=1e-5)
            return torch.addcmul(beta, normalized, gamma1)


class SPADEResnetBlock(nn.Module):
    def __init__(self, fin: int, fout: int, label_nc: int) -> None:
        super().__init__()
        self.learned_shortcut = fin != fout
        fmid = min(fin, fout)
        self.conv_0 = nn.Conv2d(fin, fmid, 3, padding=1)
        self.conv_1 = nn.Conv2d(fmid, fout, 3, padding=1)
        if self.learned_shortcut:
            self.conv_s = nn.Conv2d(fin, fout, 1, bias=False)  # 1×1, no bias
        self.norm_0 = SPADE(fin, label_nc)
        self.norm_1 = SPADE(fmid, label_nc)
        if self.learned_shortcut:
            self.norm_s = SPADE(fin, label_nc)

    def forward(self, x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        x_s = self.conv_s(self.norm_s(x, seg)) if self.learned_shortcut else x
        dx = self.conv_0(F.leaky_relu(self.norm_0(x, seg), 0.2))  # (B, fmid, H, W)
        dx = self.conv_1(F.leaky_relu(self.norm_1(dx, seg), 0.2))  # (B, fout, H, W)
        return x_s + dx

    def spectral_convs(self) -> list[str]:
        return ["conv_0", "conv_1"] + (["conv_s"] if self.learned_shortcut else [])


class SPADEDecoder(nn.Module):
    def __init__(self, cfg: SpadeConfig = SpadeConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        ic = min(cfg.max_features, cfg.block_expansion * 2 ** cfg.num_down_blocks)
        self.fc = nn.Conv2d(ic, 2 * ic, 3, padding=1)
        for i in range(6):
            self.add_module(f"G_middle_{i}", SPADEResnetBlock(2 * ic, 2 * ic, ic))
        self.up_0 = SPADEResnetBlock(2 * ic, ic, ic)
        self.up_1 = SPADEResnetBlock(ic, cfg.out_channels, ic)
        if cfg.upscale is None or cfg.upscale <= 1:
            self.conv_img = nn.Conv2d(cfg.out_channels, 3, 3, padding=1)
        else:
            self.conv_img = nn.Sequential(nn.Conv2d(cfg.out_channels, 3 * 4, 3, padding=1), nn.PixelShuffle(2))

    def res_blocks(self) -> list[tuple[str, SPADEResnetBlock]]:
        return [(f"G_middle_{i}", getattr(self, f"G_middle_{i}")) for i in range(6)] + \
            [("up_0", self.up_0), ("up_1", self.up_1)]

    def forward(self, feature: torch.Tensor) -> torch.Tensor:
        seg = feature  # (B, ic, 64, 64) label map of every SPADE
        x = self.fc(feature)  # (B, 2ic, 64, 64)
        for i in range(6):
            x = getattr(self, f"G_middle_{i}")(x, seg)
        x = self.up_0(F.interpolate(x, scale_factor=2), seg)  # (B, ic, 128, 128)
        x = self.up_1(F.interpolate(x, scale_factor=2), seg)  # (B, out_channels, 256, 256)
        x = self.conv_img(F.leaky_relu(x, 0.2))  # (B, 3, 512, 512) after PixelShuffle
        return torch.sigmoid(x)

    # ------------------------------------------------------------ official checkpoint naming
    def official_key_shapes(self) -> dict[str, tuple[int, ...]]:
        """Keys/shapes as the official file stores them (spectral convs as weight_orig/u/v)."""
        ours = {k: tuple(v.shape) for k, v in self.state_dict().items()}
        out: dict[str, tuple[int, ...]] = {}
        spectral = {f"{name}.{conv}.weight" for name, blk in self.res_blocks() for conv in blk.spectral_convs()}
        for key, shape in ours.items():
            if key in spectral:
                stem = key[: -len("weight")]
                out[stem + "weight_orig"] = shape
                out[stem + "weight_u"] = (shape[0],)
                out[stem + "weight_v"] = (int(torch.tensor(shape[1:]).prod()),)
            else:
                out[key] = shape
        return out


@torch.no_grad()
def fold_spectral_norm(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Replace every ``X.weight_orig/_u/_v`` triple by ``X.weight = weight_orig / (u · (W_mat v))``."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.endswith(".weight_u") or key.endswith(".weight_v"):
            continue
        if key.endswith(".weight_orig"):
            stem = key[: -len("weight_orig")]
            w = value
            u, v = state[stem + "weight_u"], state[stem + "weight_v"]
            sigma = torch.dot(u, torch.mv(w.reshape(w.shape[0], -1), v))
            out[stem + "weight"] = w / sigma
        else:
            out[key] = value
    return out
