"""Each graph optimisation of the fast path computes the same function as the layer it replaces."""
from __future__ import annotations

import argparse
import io
from contextlib import redirect_stdout

import torch
from torch import nn

from engine.models.blocks import (ChannelPaddedConv, ConvNormAct, Float32Island, TapSumConv2d, cast_weights,
                                  fold_batchnorm)


def _randomise_bn(bn: nn.modules.batchnorm._BatchNorm, g: torch.Generator) -> None:
    with torch.no_grad():
        c = bn.num_features
        bn.weight.copy_(torch.rand(c, generator=g) + 0.5)
        bn.bias.copy_(torch.randn(c, generator=g))
        bn.running_mean.copy_(torch.randn(c, generator=g))
        bn.running_var.copy_(torch.rand(c, generator=g) + 0.5)


def test_fold_batchnorm_matches_conv_then_bn() -> None:
    g = torch.Generator().manual_seed(0)
    block = ConvNormAct(nn.Conv3d(5, 7, 3, padding=1), nn.BatchNorm3d(7), "lrelu").eval()
    _randomise_bn(block.norm, g)
    x = torch.randn(2, 5, 4, 6, 6, generator=g)
    ref = block(x)
    assert fold_batchnorm(block) == 1 and isinstance(block.norm, nn.Identity)
    torch.testing.assert_close(block(x), ref, rtol=1e-5, atol=1e-5)


def test_channel_padded_conv_is_the_same_conv() -> None:
    g = torch.Generator().manual_seed(1)
    for conv, x in ((nn.Conv3d(22, 13, 3, padding=1), torch.randn(1, 22, 3, 5, 5, generator=g)),
                    (nn.Conv2d(7, 3, 5, padding=2), torch.randn(2, 7, 9, 9, generator=g))):
        padded = ChannelPaddedConv(conv)
        assert padded.weight.shape[0] % 16 == 0 and padded.weight.shape[1] % 16 == 0
        torch.testing.assert_close(padded(x), conv(x), rtol=1e-5, atol=1e-5)


def test_tap_sum_conv_is_the_same_conv() -> None:
    g = torch.Generator().manual_seed(2)
    conv = nn.Conv2d(40, 1, 7, padding=3)
    x = torch.randn(2, 40, 12, 10, generator=g)
    torch.testing.assert_close(TapSumConv2d(conv)(x), conv(x), rtol=1e-5, atol=1e-5)


def test_float32_island_ignores_bf16_autocast() -> None:
    conv = nn.Conv2d(3, 4, 3)
    island = Float32Island(conv)
    x = torch.randn(1, 3, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert conv(x).dtype == torch.bfloat16
        out = island(x)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, conv(x))
    seq = nn.Sequential(nn.Conv2d(3, 3, 1), island)
    cast_weights(seq, torch.bfloat16)
    assert seq[0].weight.dtype == torch.bfloat16 and conv.weight.dtype == torch.float32


def test_render_bench_runs_on_tiny_weights(synthetic_tiny_lp) -> None:
    from engine.bench import render
    from engine.device import cpu_has_native_bf16

    p = argparse.ArgumentParser()
    render.add_arguments(p)

    def bench(*extra: str) -> str:
        args = p.parse_args(["--weights", str(synthetic_tiny_lp), "--warmup", "0", *extra])
        buf = io.StringIO()
        with redirect_stdout(buf):
            assert render.run(args) == 0
        return buf.getvalue()

    text = bench("--frames", "2", "--batch", "1,2")
    assert "W+G float32  batch 2" in text and "upstream" in text
    if not cpu_has_native_bf16():
        # the default leaves emulated bf16 out (~110 s a frame here); asked for, it still runs, warned
        assert "bfloat16 left out" in text and "W+G bfloat16" not in text
        text = bench("--frames", "1", "--batch", "1", "--dtype", "float32,bfloat16")
        assert "bfloat16 is emulated" in text
    assert "W+G bfloat16 batch 1" in text and "PSNR vs float32" in text
