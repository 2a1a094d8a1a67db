"""Shared conv/norm blocks of the LivePortrait networks (upstream ``src/modules/util.py``).

Attribute names (``conv``, ``norm``) match the official state-dict keys. Blocks whose
BatchNorm directly follows a convolution can fold it (:func:`fold_batchnorm`): in eval mode
``BN(conv(x)) = conv'(x)`` with ``w' = w·γ/√(var+eps)`` and ``b' = (b−μ)·γ/√(var+eps) + β``.
This is exact algebra; in float32 it differs from the two-step path only by rounding
(~1e-7 relative), so the exact path stays selectable (``StageOne.load(..., fold_bn=False)``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ConvNormAct(nn.Module):
    """conv → BatchNorm → activation (``relu`` or ``lrelu``, slope 0.01); BN foldable."""

    def __init__(self, conv: nn.Module, norm: nn.Module, act: str = "relu") -> None:
        super().__init__()
        self.conv = conv
        self.norm = norm
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.conv(x))
        return F.leaky_relu(x, 0.01) if self.act == "lrelu" else F.relu(x)


def same_block_2d(cin: int, cout: int, kernel: int = 3, padding: int = 1, lrelu: bool = False) -> ConvNormAct:
    """Upstream SameBlock2d: conv k×k → BN2d → ReLU (or LeakyReLU 0.01)."""
    return ConvNormAct(nn.Conv2d(cin, cout, kernel, padding=padding), nn.BatchNorm2d(cout),
                       "lrelu" if lrelu else "relu")


class DownBlock2d(ConvNormAct):
    """conv 3×3 → BN2d → ReLU → AvgPool 2×2 (halves H, W)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(super().forward(x), (2, 2))  # (B, cout, H/2, W/2)


class DownBlock3d(ConvNormAct):
    """conv 3×3×3 → BN3d → ReLU → AvgPool (1,2,2) (depth kept)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(nn.Conv3d(cin, cout, 3, padding=1), nn.BatchNorm3d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool3d(super().forward(x), (1, 2, 2))  # (B, cout, D, H/2, W/2)


class UpBlock3d(ConvNormAct):
    """nearest ×(1,2,2) → conv 3×3×3 → BN3d → ReLU."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(nn.Conv3d(cin, cout, 3, padding=1), nn.BatchNorm3d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=(1, 2, 2))  # (B, cin, D, 2H, 2W)
        return super().forward(x)


class ResBlock3d(nn.Module):
    """Pre-activation residual block: x + conv2(relu(BN2(conv1(relu(BN1(x)))))) (not foldable: BN first)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv3d(channels, channels, 3, padding=1)
        self.norm1 = nn.BatchNorm3d(channels)
        self.norm2 = nn.BatchNorm3d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.norm1(x)))
        out = self.conv2(F.relu(self.norm2(out)))
        return out + x


@torch.no_grad()
def fold_conv_bn(conv: nn.Module, norm: nn.Module) -> None:
    """Fold eval-mode ``norm`` (BatchNorm) into ``conv`` in place (conv gets a bias if it had none)."""
    inv = norm.weight / torch.sqrt(norm.running_var + norm.eps)  # (C,)
    shape = (-1,) + (1,) * (conv.weight.dim() - 1)
    conv.weight.mul_(inv.reshape(shape))
    bias = conv.bias if conv.bias is not None else torch.zeros_like(norm.running_mean)
    new_bias = (bias - norm.running_mean) * inv + norm.bias
    if conv.bias is None:
        conv.bias = nn.Parameter(new_bias)
    else:
        conv.bias.copy_(new_bias)


def fold_batchnorm(module: nn.Module) -> int:
    """Fold every conv→BN pair (``ConvNormAct``) inside ``module``; returns how many were folded."""
    count = 0
    for sub in module.modules():
        if isinstance(sub, ConvNormAct) and isinstance(sub.norm, nn.modules.batchnorm._BatchNorm):
            fold_conv_bn(sub.conv, sub.norm)
            sub.norm = nn.Identity()
            count += 1
        elif hasattr(sub, "fold_batchnorm_pairs"):
            count += sub.fold_batchnorm_pairs()
    return count


class ChannelPaddedConv(nn.Module):
    """A conv whose in/out channels are zero-padded to a multiple of ``multiple`` (exact).

    oneDNN's fast convolution kernels want channel counts divisible by 16; LivePortrait's dense
    motion net has 110, 142 and 22 (and 1 for the occlusion map). Zero input channels with zero
    weights add exact zeros, and the padded outputs are sliced away, so only the kernel's
    summation order changes (rounding level).
    """

    def __init__(self, conv: nn.Module, multiple: int = 16) -> None:
        super().__init__()
        w = conv.weight.detach()
        cout, cin = w.shape[:2]
        self.cout = cout
        self.pad_in = (-cin) % multiple
        pad_out = (-cout) % multiple
        pad = [0, 0] * (w.dim() - 2) + [0, self.pad_in, 0, pad_out]
        self.weight = nn.Parameter(F.pad(w, pad), requires_grad=False)
        bias = conv.bias.detach() if conv.bias is not None else torch.zeros(cout)
        self.bias = nn.Parameter(F.pad(bias, (0, pad_out)), requires_grad=False)
        self.padding = conv.padding
        self.stride = conv.stride
        self.conv_fn = F.conv3d if w.dim() == 5 else F.conv2d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad_in:
            x = torch.cat([x, x.new_zeros((x.shape[0], self.pad_in) + tuple(x.shape[2:]))], dim=1)
        out = self.conv_fn(x, self.weight, self.bias, stride=self.stride, padding=self.padding)
        return out[:, : self.cout] if out.shape[1] != self.cout else out


def to_channels_last(module: nn.Module) -> nn.Module:
    """Store 4-D/5-D conv weights channels-last (NHWC / NDHWC): oneDNN's fast layout, bf16 and fp32."""
    for p in module.parameters():
        if p.dim() == 4:
            p.data = p.data.contiguous(memory_format=torch.channels_last)
        elif p.dim() == 5:
            p.data = p.data.contiguous(memory_format=torch.channels_last_3d)
    return module


class Float32Island(nn.Module):
    """Run ``module`` in float32 even under bf16 autocast: for small, precision-sensitive layers
    (occlusion logits, W's output projection, G's RGB conv) whose bf16 rounding costs PSNR but
    whose FLOPs are negligible."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=x.device.type, enabled=False):
            return self.module(x.float())


class TapSumConv2d(nn.Module):
    """k×k conv with ONE output channel as a 1×1 conv to k² tap maps plus k² shifted adds.

    For W's occlusion conv (2272→1, 7×7) oneDNN has no efficient kernel for a single output
    channel; contracting channels first (one GEMM: (H·W × C) @ (C × k²)) and summing the k² shifted
    tap maps is the same sum in another order (rounding-level difference), ~10× faster.
    """

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        w = conv.weight.detach()  # (1, C, k, k)
        assert w.shape[0] == 1 and w.shape[2] == w.shape[3] and conv.stride == (1, 1)
        self.k = w.shape[2]
        self.pad = conv.padding[0]
        self.taps = nn.Parameter(w[0].permute(1, 2, 0).reshape(self.k * self.k, -1, 1, 1).contiguous(),
                                 requires_grad=False)  # (k², C, 1, 1), tap index = i·k + j
        self.bias = nn.Parameter(conv.bias.detach().clone() if conv.bias is not None else torch.zeros(1),
                                 requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        ho, wo = h + 2 * self.pad - self.k + 1, w + 2 * self.pad - self.k + 1
        maps = F.pad(F.conv2d(x, self.taps), (self.pad,) * 4)  # (B, k², H+2p, W+2p)
        out = torch.zeros(b, 1, ho, wo, dtype=maps.dtype, device=maps.device)
        for i in range(self.k):
            for j in range(self.k):
                t = i * self.k + j
                out += maps[:, t: t + 1, i: i + ho, j: j + wo]
        return out + self.bias.view(1, 1, 1, 1)


def cast_weights(module: nn.Module, dtype: torch.dtype) -> None:
    """Cast conv weights/biases to ``dtype`` in place, leaving :class:`Float32Island` subtrees float32."""
    def visit(m: nn.Module) -> None:
        if isinstance(m, Float32Island):
            return
        if isinstance(m, (nn.Conv2d, nn.Conv3d, ChannelPaddedConv)):
            for p in m.parameters(recurse=False):
                p.data = p.data.to(dtype)
        for child in m.children():
            visit(child)

    visit(module)
