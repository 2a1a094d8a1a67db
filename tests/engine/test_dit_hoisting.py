"""The hoisted cross-attention (fast path) equals the plain attention path."""
from __future__ import annotations

import torch

from engine.models.motion_dit import DenoisingNetwork


def _randomised(seed: int = 0) -> DenoisingNetwork:
    torch.manual_seed(seed)
    net = DenoisingNetwork(motion_feat_dim=73, feature_dim=32, n_motions=20, n_prev_motions=5).eval()
    with torch.no_grad():
        for p in net.parameters():  # biases/norms are constant at init: randomise everything
            p.add_(torch.randn_like(p) * 0.2)
    return net


def _inputs(net: DenoisingNetwork, batch: int = 2):
    g = torch.Generator().manual_seed(1)
    L, P = net.n_motions, net.n_prev_motions
    return (torch.randn(batch, L, 73, generator=g), torch.tensor([1, 7])[:batch],
            torch.randn(batch, L, 32, generator=g), torch.randn(batch, P, 73, generator=g),
            torch.randn(batch, P, 32, generator=g))


def test_hoisted_equals_plain_attention():
    net = _randomised()
    x, t, a, mp, ap = _inputs(net)
    assert net.can_hoist
    with torch.no_grad():
        for pe in ("head", "legacy"):
            plain = net(x, t, a, mp, ap, pe_variant=pe, hoist=False)
            fast = net(x, t, a, mp, ap, pe_variant=pe, hoist=True)
            cached = net(x, t, None, mp, None, pe_variant=pe, cross=net.precompute_memory(net.memory(a, ap)))
            assert plain.shape == (2, 25, 73)
            torch.testing.assert_close(fast, plain, rtol=0, atol=2e-6)
            torch.testing.assert_close(cached, fast, rtol=0, atol=0)


def test_hoisted_output_independent_of_query_and_step():
    """Cross-attention output with the diagonal mask does not depend on the query: check in the
    real MultiheadAttention with two different queries."""
    net = _randomised(2)
    layer = net.layers[0]
    mem = torch.randn(1, 25, 32)
    with torch.no_grad():
        q1, q2 = torch.randn(1, 25, 32), torch.randn(1, 25, 32) * 5
        o1 = layer.multihead_attn(q1, mem, mem, attn_mask=net.alignment_mask, need_weights=False)[0]
        o2 = layer.multihead_attn(q2, mem, mem, attn_mask=net.alignment_mask, need_weights=False)[0]
        torch.testing.assert_close(o1, o2, rtol=0, atol=2e-6)
        torch.testing.assert_close(layer.cross_hoisted(mem), o1, rtol=0, atol=2e-6)


def test_non_diagonal_mask_falls_back_to_plain_path():
    net = _randomised(3)
    mask = net.alignment_mask.clone()
    mask[3, 4] = False  # token 3 may also see memory token 4: hoisting would be wrong
    net.alignment_mask = mask
    assert not net.can_hoist
    x, t, a, mp, ap = _inputs(net)
    with torch.no_grad():
        torch.testing.assert_close(net(x, t, a, mp, ap, hoist=True), net(x, t, a, mp, ap, hoist=False),
                                   rtol=0, atol=0)
