"""X-Pose (UniPose, config ``UniPose_SwinT``) in plain PyTorch: the network that finds animal faces.

Why our own: upstream's X-Pose imports a compiled CUDA deformable-attention op at import time
and moves everything to ``cuda``; here the multi-scale deformable attention is bilinear
``grid_sample`` (zero padding, ``align_corners=False``, what upstream's own pure-PyTorch
reference computes), so it runs on CPU, CUDA and MPS. Module and parameter names mirror the
official state dict (``liveportrait_animals/xpose.pth``, 863 tensors) so it loads strictly.

What is computed is upstream's inference path (batch 1, no denoising queries):
Swin-T (levels 1-3) + one strided conv level → 256-wide input projections → deformable encoder
with text layers and image↔text fusion → two-stage selection of ``num_queries`` proposals →
decoder: ``num_box_layers`` box layers over all queries, then the ``num_group`` = 50 best
queries each grow into a group (box + 68 keypoint queries) for the remaining layers.

Work that cannot change the kept result is skipped, exactly:
* the text side has ``n_valid`` instance prompts (1 here) and 350 - n_valid identical zero rows;
  one representative zero row stands for all of them (each text token only attends to itself);
* group self-attention is block-diagonal (upstream's ``attn_mask2``): computed per group;
* with ``full_keypoints=False`` the keypoint slots without a prompt are dropped: inside a group
  the box and the prompted slots only attend to each other (the mask is "same visibility"), so
  boxes, logits and the prompted points are unchanged; only the unprompted slots (which upstream
  discards) are not produced.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

#: upstream pads the instance-prompt embeddings to this many text rows
MAX_TEXT = 350
#: decoder groups after the box layers (hard-wired upstream)
NUM_GROUP = 50


@dataclass(frozen=True)
class XPoseConfig:
    """Sizes of one X-Pose network; :meth:`official` is ``UniPose_SwinT.py``."""

    embed_dim: int = 96
    depths: tuple[int, ...] = (2, 2, 6, 2)
    num_heads: tuple[int, ...] = (3, 6, 12, 24)
    window: int = 7
    d_model: int = 256
    nheads: int = 8
    n_levels: int = 4
    n_points: int = 4
    enc_layers: int = 6
    dec_layers: int = 6
    dim_feedforward: int = 2048
    num_queries: int = 900
    num_body_points: int = 68
    num_box_layers: int = 2
    label_book: int = 2001
    prompt_dim: int = 512

    @classmethod
    def official(cls) -> "XPoseConfig":
        return cls()

    @classmethod
    def tiny(cls) -> "XPoseConfig":
        """The shrunken set of the reference fixture (everything else official)."""
        return cls(embed_dim=32, depths=(1, 1, 1, 1), num_heads=(1, 2, 4, 8), enc_layers=1, dec_layers=3,
                   dim_feedforward=128, num_queries=100)

    @classmethod
    def from_state_dict(cls, sd: dict[str, torch.Tensor]) -> "XPoseConfig":
        """Sizes read off the tensor shapes (raises KeyError naming a missing key)."""
        def count(prefix: str) -> int:
            n = 0
            while any(k.startswith(f"{prefix}{n}.") for k in sd):
                n += 1
            return n

        def get(key: str) -> torch.Tensor:
            if key not in sd:
                raise KeyError(key)
            return sd[key]

        embed = int(get("backbone.0.patch_embed.proj.weight").shape[0])
        n_stages = count("backbone.0.layers.")
        depths = tuple(count(f"backbone.0.layers.{i}.blocks.") for i in range(n_stages))
        heads = tuple(int(get(f"backbone.0.layers.{i}.blocks.0.attn.relative_position_bias_table").shape[1])
                      for i in range(n_stages))
        table = int(get("backbone.0.layers.0.blocks.0.attn.relative_position_bias_table").shape[0])
        window = (int(round(math.sqrt(table))) + 1) // 2
        hw = int(get("transformer.decoder.hw.weight").shape[0]) + int(get("transformer.decoder.hw_append.weight").shape[0])
        return cls(embed_dim=embed, depths=depths, num_heads=heads, window=window,
                   d_model=int(get("transformer.level_embed").shape[1]),
                   n_levels=int(get("transformer.level_embed").shape[0]),
                   enc_layers=count("transformer.encoder.layers."), dec_layers=count("transformer.decoder.layers."),
                   dim_feedforward=int(get("transformer.encoder.layers.0.linear1.weight").shape[0]),
                   num_queries=int(get("transformer.tgt_embed.weight").shape[0]), num_body_points=hw,
                   label_book=int(get("label_enc.weight").shape[0]),
                   prompt_dim=int(get("projection.layers.0.weight").shape[1]))


# -- small pieces -------------------------------------------------------------------------------

class MLP(nn.Module):
    """``layers.i`` Linear stack with ReLU between (upstream ``MLP``)."""

    def __init__(self, d_in: int, hidden: int, d_out: int, n: int) -> None:
        super().__init__()
        dims = [d_in] + [hidden] * (n - 1)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims, [hidden] * (n - 1) + [d_out]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < last:
                x = F.relu(x)
        return x


def inverse_sigmoid(x: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    x = x.clamp(min=0, max=1)
    return torch.log(x.clamp(min=eps) / (1 - x).clamp(min=eps))


class Attention(nn.Module):
    """``nn.MultiheadAttention``'s parameters (``in_proj_*``, ``out_proj``), batch-first maths."""

    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * d, d))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * d))
        self.out_proj = nn.Linear(d, d)

    def project(self, x: torch.Tensor, which: int) -> torch.Tensor:
        d = self.out_proj.in_features
        return F.linear(x, self.in_proj_weight[which * d:(which + 1) * d], self.in_proj_bias[which * d:(which + 1) * d])

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                allowed: torch.Tensor | None = None) -> torch.Tensor:
        """q (..., Lq, d), k/v (..., Lk, d); ``allowed`` (Lq, Lk) bool, True = may attend."""
        d = self.out_proj.in_features
        hd = d // self.heads
        qh = self.project(q, 0).unflatten(-1, (self.heads, hd)).transpose(-2, -3)
        kh = self.project(k, 1).unflatten(-1, (self.heads, hd)).transpose(-2, -3)
        vh = self.project(v, 2).unflatten(-1, (self.heads, hd)).transpose(-2, -3)
        w = (qh * (1.0 / math.sqrt(hd))) @ kh.transpose(-1, -2)
        if allowed is not None:
            w = w.masked_fill(~allowed, float("-inf"))
        out = torch.softmax(w, -1) @ vh
        return self.out_proj(out.transpose(-2, -3).flatten(-2))


def sine_embed(pos: torch.Tensor, num_feats: int = 128, temperature: float = 10000.0) -> torch.Tensor:
    """Upstream ``gen_sineembed_for_position``: (..., 2|4) in [0, 1] → (..., 2|4 · num_feats), order y, x, w, h."""
    dim_t = torch.arange(num_feats, dtype=torch.float32, device=pos.device)
    dim_t = temperature ** (2 * (dim_t // 2) / num_feats)

    def one(x: torch.Tensor) -> torch.Tensor:
        p = (x * (2 * math.pi))[..., None] / dim_t
        return torch.stack((p[..., 0::2].sin(), p[..., 1::2].cos()), dim=-1).flatten(-2)

    parts = [one(pos[..., 1]), one(pos[..., 0])]
    if pos.shape[-1] == 4:
        parts += [one(pos[..., 2]), one(pos[..., 3])]
    return torch.cat(parts, dim=-1)


def image_position_embed(h: int, w: int, num_feats: int, temperature: float, device: torch.device) -> torch.Tensor:
    """Upstream ``PositionEmbeddingSineHW`` (normalised, no padding) → (1, 2·num_feats, h, w)."""
    scale, eps = 2 * math.pi, 1e-6
    y = torch.ones((h, w), dtype=torch.float32, device=device).cumsum(0)
    x = torch.ones((h, w), dtype=torch.float32, device=device).cumsum(1)
    y = y / (y[-1:, :] + eps) * scale
    x = x / (x[:, -1:] + eps) * scale
    dim_t = torch.arange(num_feats, dtype=torch.float32, device=device)
    dim_t = temperature ** (2 * (dim_t // 2) / num_feats)
    px, py = x[..., None] / dim_t, y[..., None] / dim_t
    px = torch.stack((px[..., 0::2].sin(), px[..., 1::2].cos()), dim=-1).flatten(-2)
    py = torch.stack((py[..., 0::2].sin(), py[..., 1::2].cos()), dim=-1).flatten(-2)
    return torch.cat((py, px), dim=-1).permute(2, 0, 1)[None]


# -- Swin-T ----------------------------------------------------------------------------------

class WindowAttention(nn.Module):
    def __init__(self, dim: int, window: int, heads: int) -> None:
        super().__init__()
        self.heads, self.window = heads, window
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        c = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
        rel = (c[:, :, None] - c[:, None, :]).permute(1, 2, 0) + (window - 1)
        self.register_buffer("relative_position_index", rel[..., 0] * (2 * window - 1) + rel[..., 1])
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        B, N, C = x.shape
        hd = C // self.heads
        q, k, v = self.qkv(x).reshape(B, N, 3, self.heads, hd).permute(2, 0, 3, 1, 4)
        bias = self.relative_position_bias_table[self.relative_position_index.reshape(-1)]
        bias = bias.reshape(N, N, -1).permute(2, 0, 1)[None]
        attn = (q * hd ** -0.5) @ k.transpose(-2, -1) + bias
        if mask is not None:
            nw = mask.shape[0]
            attn = (attn.view(B // nw, nw, self.heads, N, N) + mask[None, :, None]).view(B, self.heads, N, N)
        out = torch.softmax(attn, -1) @ v
        return self.proj(out.transpose(1, 2).reshape(B, N, C))


class SwinMlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


def _windows(x: torch.Tensor, w: int) -> torch.Tensor:
    B, H, W, C = x.shape
    return x.view(B, H // w, w, W // w, w, C).permute(0, 1, 3, 2, 4, 5).reshape(-1, w * w, C)


def _unwindows(x: torch.Tensor, w: int, H: int, W: int) -> torch.Tensor:
    B = x.shape[0] // ((H // w) * (W // w))
    return x.view(B, H // w, W // w, w, w, -1).permute(0, 1, 3, 2, 4, 5).reshape(B, H, W, -1)


class SwinBlock(nn.Module):
    def __init__(self, dim: int, heads: int, window: int, shift: int) -> None:
        super().__init__()
        self.window, self.shift = window, shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = SwinMlp(dim, 4 * dim)

    def forward(self, x: torch.Tensor, H: int, W: int, mask: torch.Tensor) -> torch.Tensor:
        B, L, C = x.shape
        w = self.window
        y = self.norm1(x).view(B, H, W, C)
        pr, pb = (w - W % w) % w, (w - H % w) % w
        y = F.pad(y, (0, 0, 0, pr, 0, pb))
        Hp, Wp = y.shape[1:3]
        if self.shift:
            y = torch.roll(y, shifts=(-self.shift, -self.shift), dims=(1, 2))
        y = _unwindows(self.attn(_windows(y, w), mask if self.shift else None), w, Hp, Wp)
        if self.shift:
            y = torch.roll(y, shifts=(self.shift, self.shift), dims=(1, 2))
        y = y[:, :H, :W].reshape(B, H * W, C)
        x = x + y
        return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x: torch.Tensor, H: int, W: int) -> torch.Tensor:
        B, _, C = x.shape
        x = x.view(B, H, W, C)
        if H % 2 or W % 2:
            x = F.pad(x, (0, 0, 0, W % 2, 0, H % 2))
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
        return self.reduction(self.norm(x.view(B, -1, 4 * C)))


class SwinStage(nn.Module):
    def __init__(self, dim: int, depth: int, heads: int, window: int, downsample: bool) -> None:
        super().__init__()
        self.window = window
        self.blocks = nn.ModuleList(SwinBlock(dim, heads, window, 0 if i % 2 == 0 else window // 2)
                                    for i in range(depth))
        self.downsample = PatchMerging(dim) if downsample else None

    def shift_mask(self, H: int, W: int, device: torch.device) -> torch.Tensor:
        """Upstream's cyclic-shift mask: 0 within a region, -100 across (nW, w², w²)."""
        w, s = self.window, self.window // 2
        Hp, Wp = -(-H // w) * w, -(-W // w) * w
        img = torch.zeros((1, Hp, Wp, 1), device=device)
        cnt = 0
        for hs in (slice(0, -w), slice(-w, -s), slice(-s, None)):
            for ws in (slice(0, -w), slice(-w, -s), slice(-s, None)):
                img[:, hs, ws, :] = cnt
                cnt += 1
        mw = _windows(img, w).squeeze(-1)
        m = mw[:, None, :] - mw[:, :, None]
        return m.masked_fill(m != 0, -100.0).masked_fill(m == 0, 0.0)

    def forward(self, x: torch.Tensor, H: int, W: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        mask = self.shift_mask(H, W, x.device) if len(self.blocks) > 1 else None
        for blk in self.blocks:
            x = blk(x, H, W, mask)
        return x, (self.downsample(x, H, W) if self.downsample is not None else None)


class PatchEmbed(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, 4, 4)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        H, W = x.shape[-2:]
        if W % 4:
            x = F.pad(x, (0, 4 - W % 4))
        if H % 4:
            x = F.pad(x, (0, 0, 0, 4 - H % 4))
        x = self.proj(x)
        B, C, h, w = x.shape
        return self.norm(x.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(B, C, h, w)


class SwinTransformer(nn.Module):
    """Swin backbone returning stages 1..3 (strides 8, 16, 32), each layer-normed."""

    def __init__(self, cfg: XPoseConfig) -> None:
        super().__init__()
        n = len(cfg.depths)
        self.dims = [cfg.embed_dim * 2 ** i for i in range(n)]
        self.patch_embed = PatchEmbed(cfg.embed_dim)
        self.layers = nn.ModuleList(SwinStage(self.dims[i], cfg.depths[i], cfg.num_heads[i], cfg.window, i < n - 1)
                                    for i in range(n))
        self.out_indices = tuple(range(1, n))
        for i in self.out_indices:
            self.add_module(f"norm{i}", nn.LayerNorm(self.dims[i]))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.patch_embed(x)
        H, W = x.shape[-2:]
        x = x.flatten(2).transpose(1, 2)
        outs = []
        for i, layer in enumerate(self.layers):
            y, down = layer(x, H, W)
            if i in self.out_indices:
                y = getattr(self, f"norm{i}")(y)
                outs.append(y.view(-1, H, W, self.dims[i]).permute(0, 3, 1, 2).contiguous())
            if down is not None:
                x, H, W = down, (H + 1) // 2, (W + 1) // 2
        return outs


# -- deformable attention ---------------------------------------------------------------------

def ms_deform_attn(value: torch.Tensor, shapes: list[tuple[int, int]], loc: torch.Tensor,
                   weights: torch.Tensor) -> torch.Tensor:
    """value (N, S, M, D), loc (N, Lq, M, L, P, 2) in [0, 1], weights (N, Lq, M, L, P) → (N, Lq, M·D).

    What the compiled op computes: each sample is the bilinear ``grid_sample`` value (zeros outside
    the map, ``align_corners=False``), weighted and summed. On the CPU the same weights go into one
    sparse (queries × pixels) matrix (:func:`_sampling_matrix`), ~2× faster than sampling every
    point and summing afterwards; elsewhere ``grid_sample`` itself (CUDA, MPS: no compiled op)."""
    if value.device.type == "cpu":  # float32 sums also under bf16 autocast (CPU sparse ops are float)
        return _sparse_sample(value.float(), shapes, loc.float(), weights.float()).to(value.dtype)
    return _grid_sample(value, shapes, loc, weights)


def _grid_sample(value: torch.Tensor, shapes: list[tuple[int, int]], loc: torch.Tensor,
                 weights: torch.Tensor) -> torch.Tensor:
    N, _, M, D = value.shape
    _, Lq, _, L, P, _ = loc.shape
    grids = 2 * loc - 1
    w_ = weights.transpose(1, 2).reshape(N * M, 1, Lq, L, P)
    out = None
    start = 0
    for lid, (h, w) in enumerate(shapes):
        v = value[:, start:start + h * w].flatten(2).transpose(1, 2).reshape(N * M, D, h, w)
        start += h * w
        g = grids[:, :, :, lid].transpose(1, 2).flatten(0, 1).to(v.dtype)  # (N·M, Lq, P, 2)
        s = F.grid_sample(v, g, mode="bilinear", padding_mode="zeros", align_corners=False)  # (N·M, D, Lq, P)
        part = (s * w_[:, :, :, lid].to(s.dtype)).sum(-1)                # accumulated per level: no big stack
        out = part if out is None else out + part
    return out.view(N, M * D, Lq).transpose(1, 2)


def _sampling_matrix(shapes: list[tuple[int, int]], loc: torch.Tensor, weights: torch.Tensor,
                     S: int) -> torch.Tensor:
    """Sparse CSR (N·M·Lq, N·M·S): row (n, m, q) holds, for each level/point/corner, the attention
    weight × grid_sample's bilinear weight at that corner's pixel (0 where the corner is outside)."""
    N, Lq, M, L, P, _ = loc.shape
    dev = loc.device
    loc = loc.permute(5, 3, 0, 2, 1, 4).contiguous()                                  # 2, L, N, M, Lq, P
    weights = weights.permute(3, 0, 2, 1, 4).contiguous()                             # L, N, M, Lq, P
    head = (torch.arange(N * M, device=dev, dtype=torch.int64) * S).view(N, M, 1, 1)
    col = torch.empty((N, M, Lq, L, P, 4), dtype=torch.int64, device=dev)   # written in place: no stacking
    val = torch.empty((N, M, Lq, L, P, 4), dtype=loc.dtype, device=dev)
    start = 0
    for lid, (h, w) in enumerate(shapes):
        # grid_sample's unnormalisation of the grid 2·loc − 1 (align_corners=False)
        px = ((2 * loc[0, lid] - 1 + 1) * w - 1) / 2
        py = ((2 * loc[1, lid] - 1 + 1) * h - 1) / 2
        x0f, y0f = torch.floor(px), torch.floor(py)
        fx, fy = px - x0f, py - y0f
        x0, y0 = x0f.to(torch.int64), y0f.to(torch.int64)
        aw = weights[lid]
        c = 0
        for dy, wy in ((0, 1 - fy), (1, fy)):
            yy = y0 + dy
            wy = aw * wy * ((yy >= 0) & (yy < h))
            row = head + start + yy.clamp(0, h - 1) * w
            for dx, wx in ((0, 1 - fx), (1, fx)):
                xx = x0 + dx
                torch.add(row, xx.clamp(0, w - 1), out=col[:, :, :, lid, :, c])
                torch.mul(wy, wx * ((xx >= 0) & (xx < w)), out=val[:, :, :, lid, :, c])
                c += 1
        start += h * w
    k = L * P * 4
    col, val = col.view(-1), val.view(-1)
    rows = torch.arange(0, N * M * Lq * k + 1, k, device=dev)
    with warnings.catch_warnings():  # "sparse CSR support is in beta": the one op used here is stable
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(rows, col, val, size=(N * M * Lq, N * M * S), check_invariants=False)


def _sparse_sample(value: torch.Tensor, shapes: list[tuple[int, int]], loc: torch.Tensor,
                   weights: torch.Tensor) -> torch.Tensor:
    N, S, M, D = value.shape
    Lq = loc.shape[1]
    with torch.autocast("cpu", enabled=False), warnings.catch_warnings():  # sparse CPU matmul: float only
        warnings.simplefilter("ignore", UserWarning)
        A = _sampling_matrix(shapes, loc, weights, S)
        out = A @ value.permute(0, 2, 1, 3).reshape(N * M * S, D)
    return out.view(N, M, Lq, D).permute(0, 2, 1, 3).reshape(N, Lq, M * D)


class MSDeformAttn(nn.Module):
    def __init__(self, d: int, levels: int, heads: int, points: int) -> None:
        super().__init__()
        self.levels, self.heads, self.points = levels, heads, points
        self.sampling_offsets = nn.Linear(d, heads * levels * points * 2)
        self.attention_weights = nn.Linear(d, heads * levels * points)
        self.value_proj = nn.Linear(d, d)
        self.output_proj = nn.Linear(d, d)

    def forward(self, query: torch.Tensor, ref: torch.Tensor, value_in: torch.Tensor,
                shapes: list[tuple[int, int]]) -> torch.Tensor:
        """query (N, Lq, d); ref (N, Lq, L, 2|4); value_in (N, S, d)."""
        N, Lq, d = query.shape
        M, L, P = self.heads, self.levels, self.points
        value = self.value_proj(value_in).view(N, value_in.shape[1], M, d // M)
        off = self.sampling_offsets(query).view(N, Lq, M, L, P, 2)
        aw = torch.softmax(self.attention_weights(query).view(N, Lq, M, L * P), -1).view(N, Lq, M, L, P)
        if ref.shape[-1] == 2:
            norm = torch.tensor([[w, h] for h, w in shapes], dtype=query.dtype, device=query.device)
            loc = ref[:, :, None, :, None, :] + off / norm[None, None, None, :, None, :]
        else:
            loc = ref[:, :, None, :, None, :2] + off / P * ref[:, :, None, :, None, 2:] * 0.5
        return self.output_proj(ms_deform_attn(value, shapes, loc, aw))


# -- encoder ------------------------------------------------------------------------------------

class EncoderLayer(nn.Module):
    def __init__(self, cfg: XPoseConfig) -> None:
        super().__init__()
        d = cfg.d_model
        self.self_attn = MSDeformAttn(d, cfg.n_levels, cfg.nheads, cfg.n_points)
        self.norm1 = nn.LayerNorm(d)
        self.linear1, self.linear2 = nn.Linear(d, cfg.dim_feedforward), nn.Linear(cfg.dim_feedforward, d)
        self.norm2 = nn.LayerNorm(d)

    def forward(self, src: torch.Tensor, pos: torch.Tensor, ref: torch.Tensor,
                shapes: list[tuple[int, int]]) -> torch.Tensor:
        src = self.norm1(src + self.self_attn(src + pos, ref, src, shapes))
        return self.norm2(src + self.linear2(F.relu(self.linear1(src))))


class TextLayer(nn.Module):
    """Upstream's text enhancer layer. Its self-attention mask is the identity (each prompt token
    sees only itself), so the attention is exactly ``out_proj(v_proj(x))``: softmax over one key."""

    def __init__(self, cfg: XPoseConfig) -> None:
        super().__init__()
        d, ff = cfg.d_model, cfg.dim_feedforward // 2
        self.self_attn = Attention(d, cfg.nheads // 2)
        self.linear1, self.linear2 = nn.Linear(d, ff), nn.Linear(ff, d)
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.self_attn.out_proj(self.self_attn.project(x, 2)))
        return self.norm2(x + self.linear2(F.relu(self.linear1(x))))


class BiAttention(nn.Module):
    def __init__(self, d: int, embed: int, heads: int) -> None:
        super().__init__()
        self.heads, self.embed = heads, embed
        self.v_proj, self.l_proj = nn.Linear(d, embed), nn.Linear(d, embed)
        self.values_v_proj, self.values_l_proj = nn.Linear(d, embed), nn.Linear(d, embed)
        self.out_v_proj, self.out_l_proj = nn.Linear(embed, d), nn.Linear(embed, d)

    def forward(self, v: torch.Tensor, l: torch.Tensor, l_valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """v (1, Nv, d) image tokens, l (1, Nl, d) text tokens (a few), ``l_valid`` (Nl,) bool.

        Upstream's maths with the products reordered so that nothing costs Nv × embed: the image
        tokens meet the text only through Nl scores per head, so v_proj, values_v_proj and
        out_v_proj are folded into (d × H·Nl) matrices (the same sums, in another order)."""
        H, hd = self.heads, self.embed // self.heads
        x, t = v[0], l[0]
        nl, d = t.shape[0], x.shape[1]
        scale = hd ** -0.5
        k = self.l_proj(t).view(nl, H, hd).transpose(0, 1)                          # H, Nl, hd
        vl = self.values_l_proj(t).view(nl, H, hd).transpose(0, 1)                   # H, Nl, hd
        wq = self.v_proj.weight.view(H, hd, d)
        fold = (wq.transpose(1, 2) @ k.transpose(1, 2)).permute(1, 0, 2).reshape(d, H * nl)   # d, H·Nl
        bias = (k @ self.v_proj.bias.view(H, hd, 1)).reshape(H * nl)
        a = ((x @ fold + bias) * scale).view(-1, H, nl).permute(1, 0, 2)              # H, Nv, Nl
        a = (a - a.max()).clamp(min=-50000, max=50000)
        at = a.transpose(1, 2)
        al = (at - at.max(dim=-1, keepdim=True)[0]).clamp(min=-50000, max=50000).softmax(-1)   # H, Nl, Nv
        av = a.masked_fill(~l_valid[None, None, :], float("-inf")).softmax(-1)                 # H, Nv, Nl
        # text side: al @ (x Wvv^T + b) = (al @ x) Wvv^T + rowsum(al) b
        wvv = self.values_v_proj.weight.view(H, hd, d)
        out_l = (al @ x) @ wvv.transpose(1, 2) + al.sum(-1, keepdim=True) * self.values_v_proj.bias.view(H, 1, hd)
        delta_l = self.out_l_proj(out_l.transpose(0, 1).reshape(1, nl, self.embed))
        # image side: out_v_proj(concat_h av_h @ vl_h) = sum_h av_h @ (vl_h Wout_h^T) + b
        wout = self.out_v_proj.weight.view(d, H, hd).permute(1, 2, 0)                # H, hd, d
        per_head = vl @ wout                                                         # H, Nl, d
        delta_v = torch.einsum("hst,htd->sd", av, per_head) + self.out_v_proj.bias
        return delta_v[None], delta_l


class FusionLayer(nn.Module):
    def __init__(self, cfg: XPoseConfig) -> None:
        super().__init__()
        d = cfg.d_model
        self.layer_norm_v, self.layer_norm_l = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = BiAttention(d, cfg.dim_feedforward // 2, cfg.nheads // 2)
        self.gamma_v = nn.Parameter(torch.full((d,), 1e-4), requires_grad=False)
        self.gamma_l = nn.Parameter(torch.full((d,), 1e-4), requires_grad=False)

    def forward(self, v: torch.Tensor, l: torch.Tensor, l_valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        v, l = self.layer_norm_v(v), self.layer_norm_l(l)
        dv, dl = self.attn(v, l, l_valid)
        return v + self.gamma_v * dv, l + self.gamma_l * dl


class Encoder(nn.Module):
    def __init__(self, cfg: XPoseConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.enc_layers))
        self.text_layers = nn.ModuleList(TextLayer(cfg) for _ in range(cfg.enc_layers))
        self.fusion_layers = nn.ModuleList(FusionLayer(cfg) for _ in range(cfg.enc_layers))

    def forward(self, src: torch.Tensor, pos: torch.Tensor, shapes: list[tuple[int, int]], text: torch.Tensor,
                text_valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ref = []
        for h, w in shapes:
            ry, rx = torch.meshgrid(torch.linspace(0.5, h - 0.5, h, dtype=torch.float32, device=src.device),
                                    torch.linspace(0.5, w - 0.5, w, dtype=torch.float32, device=src.device),
                                    indexing="ij")
            ref.append(torch.stack((rx.reshape(-1) / w, ry.reshape(-1) / h), -1))
        refs = torch.cat(ref, 0)[None, :, None].expand(-1, -1, len(shapes), -1).to(src.dtype)
        for layer, text_layer, fusion in zip(self.layers, self.text_layers, self.fusion_layers):
            src, text = fusion(src, text, text_valid)
            text = text_layer(text)
            src = layer(src, pos, refs, shapes)
        return src, text


# -- decoder ------------------------------------------------------------------------------------

class DecoderLayer(nn.Module):
    def __init__(self, cfg: XPoseConfig) -> None:
        super().__init__()
        d = cfg.d_model
        self.cross_attn = MSDeformAttn(d, cfg.n_levels, cfg.nheads, cfg.n_points)
        self.norm1 = nn.LayerNorm(d)
        self.ca_text = Attention(d, cfg.nheads)
        self.catext_norm = nn.LayerNorm(d)
        self.self_attn = Attention(d, cfg.nheads)
        self.norm2 = nn.LayerNorm(d)
        self.linear1, self.linear2 = nn.Linear(d, cfg.dim_feedforward), nn.Linear(cfg.dim_feedforward, d)
        self.norm3 = nn.LayerNorm(d)

    def forward(self, tgt: torch.Tensor, query_pos: torch.Tensor, ref: torch.Tensor, memory: torch.Tensor,
                shapes: list[tuple[int, int]], text: torch.Tensor, group: int | None,
                allowed: torch.Tensor | None) -> torch.Tensor:
        """tgt/query_pos (1, Q, d); ref (1, Q, L, 4); text (1, T, d) valid prompt tokens only.

        ``group``: None = all queries attend to each other; else queries form consecutive groups
        of that size that attend only inside their group (``allowed``: within-group mask)."""
        qk = tgt + query_pos
        if group is None:
            sa = self.self_attn(qk, qk, tgt)
        else:
            G = tgt.shape[1] // group
            shape = (G, group, tgt.shape[-1])
            sa = self.self_attn(qk.reshape(shape), qk.reshape(shape), tgt.reshape(shape), allowed).reshape(tgt.shape)
        tgt = self.norm2(tgt + sa)
        tgt = self.catext_norm(tgt + self.ca_text(tgt + query_pos, text, text))
        tgt = self.norm1(tgt + self.cross_attn(tgt + query_pos, ref, memory, shapes))
        return self.norm3(tgt + self.linear2(F.relu(self.linear1(tgt))))


class Decoder(nn.Module):
    def __init__(self, cfg: XPoseConfig) -> None:
        super().__init__()
        d = cfg.d_model
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.dec_layers))
        self.norm = nn.LayerNorm(d)
        self.ref_point_head = MLP(2 * d, d, d, 2)
        self.hw = nn.Embedding(17, 2)
        self.hw_append = nn.Embedding(cfg.num_body_points - 17, 2)
        # shared with the top-level heads (assigned by XPose)
        self.bbox_embed: nn.ModuleList
        self.pose_embed: nn.ModuleList
        self.pose_hw_embed: nn.ModuleList


class Transformer(nn.Module):
    def __init__(self, cfg: XPoseConfig) -> None:
        super().__init__()
        d = cfg.d_model
        self.level_embed = nn.Parameter(torch.zeros(cfg.n_levels, d))
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.tgt_embed = nn.Embedding(cfg.num_queries, d)
        self.enc_output = nn.Linear(d, d)
        self.enc_output_norm = nn.LayerNorm(d)
        self.enc_out_bbox_embed = MLP(d, d, 4, 3)


# -- the network --------------------------------------------------------------------------------

class XPose(nn.Module):
    """X-Pose with the official state-dict layout; :meth:`forward` returns upstream's three outputs."""

    def __init__(self, cfg: XPoseConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.transformer = Transformer(cfg)
        self.label_enc = nn.Embedding(cfg.label_book, d)
        self.projection = MLP(cfg.prompt_dim, d, d, 3)
        self.projection_kpt = MLP(cfg.prompt_dim, d, d, 3)
        self.pos_proj = nn.Linear(d, 768)
        self.padding = nn.Embedding(1, 768)
        self.backbone = nn.ModuleList([SwinTransformer(cfg)])
        chans = self.backbone[0].dims[1:]
        proj = [nn.Sequential(nn.Conv2d(c, d, 1), nn.GroupNorm(32, d)) for c in chans]
        for i in range(cfg.n_levels - len(chans)):
            proj.append(nn.Sequential(nn.Conv2d(chans[-1] if i == 0 else d, d, 3, 2, 1), nn.GroupNorm(32, d)))
        self.input_proj = nn.ModuleList(proj)
        L, nb = cfg.dec_layers, cfg.num_box_layers
        bbox, pose, pose_hw = MLP(d, d, 4, 3), MLP(d, d, 2, 3), MLP(d, d, 2, 3)
        self.bbox_embed = nn.ModuleList([bbox] * L)
        self.pose_embed = nn.ModuleList([pose] * (L - nb + 1))
        self.pose_hw_embed = nn.ModuleList([pose_hw] * (L - nb))
        dec = self.transformer.decoder
        dec.bbox_embed, dec.pose_embed, dec.pose_hw_embed = self.bbox_embed, self.pose_embed, self.pose_hw_embed

    # the image side ---------------------------------------------------------------------------
    def features(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, int]]]:
        """Backbone + input projections → (flattened src (1, S, d), pos + level embed, level shapes)."""
        feats = self.backbone[0](image)
        srcs = [self.input_proj[i](f) for i, f in enumerate(feats)]
        for i in range(len(feats), self.cfg.n_levels):
            srcs.append(self.input_proj[i](feats[-1] if i == len(feats) else srcs[-1]))
        half = self.cfg.d_model // 2
        flat, pos, shapes = [], [], []
        for lvl, s in enumerate(srcs):
            h, w = s.shape[-2:]
            shapes.append((int(h), int(w)))
            flat.append(s.flatten(2).transpose(1, 2))
            p = image_position_embed(h, w, half, 20.0, s.device).to(s.dtype)
            pos.append(p.flatten(2).transpose(1, 2) + self.transformer.level_embed[lvl].view(1, 1, -1))
        return torch.cat(flat, 1), torch.cat(pos, 1), shapes

    def forward(self, image: torch.Tensor, instance: torch.Tensor, keypoints: torch.Tensor,
                keypoint_visible: torch.Tensor, full_keypoints: bool = True) -> dict[str, torch.Tensor]:
        """image (1, 3, H, W) normalised; instance (T, 512) prompt rows; keypoints (100, 512) padded
        keypoint prompts; keypoint_visible (100,) 1/0. Returns ``pred_logits`` (1, 50, 350),
        ``pred_boxes`` (1, 50, 4) cxcywh in [0, 1], ``pred_keypoints`` (1, 50, 3·K) as upstream
        (x0, y0, x1, y1, ..., v0, v1, ...) with K = 68, or the prompted slots only."""
        cfg, tr = self.cfg, self.transformer
        dec = tr.decoder
        dev, dt = image.device, image.dtype
        nb_pts = cfg.num_body_points
        n_valid = instance.shape[0]
        # text rows: the valid instance prompts, then one zero row standing for all padding rows
        rows = torch.cat([instance, instance.new_zeros(1 if n_valid < MAX_TEXT else 0, instance.shape[1])], 0)
        text = self.projection(rows.to(dt))[None]
        text_valid = torch.arange(rows.shape[0], device=dev) < n_valid
        kpt_embed = self.projection_kpt(keypoints[:nb_pts].to(dt))                    # (68, d)
        vis = keypoint_visible[:nb_pts] > 0

        src, pos, shapes = self.features(image)
        # encoder (the text layers' positions only enter q/k, which a one-key softmax ignores)
        memory, text = tr.encoder(src, pos, shapes, text, text_valid)
        text_valid_rows = text[:, :n_valid]

        # two-stage proposals
        props = []
        for lvl, (h, w) in enumerate(shapes):
            gy, gx = torch.meshgrid(torch.linspace(0, h - 1, h, dtype=torch.float32, device=dev),
                                    torch.linspace(0, w - 1, w, dtype=torch.float32, device=dev), indexing="ij")
            grid = (torch.stack([gx, gy], -1) + 0.5) / torch.tensor([float(w), float(h)], device=dev)
            wh = torch.ones_like(grid) * 0.05 * (2.0 ** lvl)
            props.append(torch.cat((grid, wh), -1).view(-1, 4))
        proposals = torch.cat(props, 0)[None].to(dt)
        valid = ((proposals > 0.01) & (proposals < 0.99)).all(-1, keepdim=True)
        proposals = torch.log(proposals / (1 - proposals)).masked_fill(~valid, float("inf"))
        out_mem = tr.enc_output_norm(tr.enc_output(memory.masked_fill(~valid, 0.0)))
        enc_logits = (out_mem @ text_valid_rows.transpose(1, 2)).max(-1)[0]              # (1, S)
        enc_coord = tr.enc_out_bbox_embed(out_mem) + proposals
        # a very wide strip (6000×80 → 1350×18) has fewer tokens than queries (upstream's topk fails)
        n_query = min(cfg.num_queries, enc_logits.shape[1])
        n_group = min(NUM_GROUP, n_query)
        top = torch.topk(enc_logits, n_query, dim=1)[1]
        ref_unsig = torch.gather(enc_coord, 1, top[..., None].expand(-1, -1, 4))
        tgt = tr.tgt_embed.weight[None, :n_query].to(dt)
        ref = ref_unsig.sigmoid()

        group: int | None = None
        allowed: torch.Tensor | None = None
        slots = torch.arange(nb_pts, device=dev) if full_keypoints else torch.nonzero(vis).flatten()
        n_slots = int(slots.numel())
        for lid, layer in enumerate(dec.layers):
            sine = sine_embed(ref)
            query_pos = dec.ref_point_head(sine)
            out = layer(tgt, query_pos, ref[:, :, None].expand(-1, -1, cfg.n_levels, -1), memory, shapes,
                        text_valid_rows, group, allowed)
            last = lid == len(dec.layers) - 1
            if last:
                hs = dec.norm(out)
                break
            if lid < cfg.num_box_layers:
                new_ref = (self.bbox_embed[lid](out) + inverse_sigmoid(ref)).sigmoid()
                if lid == cfg.num_box_layers - 1:
                    cls = (out @ text_valid_rows.transpose(1, 2)).max(-1)[0]              # (1, Q)
                    sel = torch.topk(cls, n_group, dim=1)[1]
                    box_ref = torch.gather(new_ref, 1, sel[..., None].expand(-1, -1, 4))    # (1, G, 4)
                    box_out = torch.gather(out, 1, sel[..., None].expand(-1, -1, out.shape[-1]))
                    k_emb = kpt_embed[slots]                                                 # (S, d)
                    dxy = self.pose_embed[-1](k_emb)[..., :2]
                    kxy = (inverse_sigmoid(box_ref[..., :2])[:, :, None] + dxy[None, None]).sigmoid()
                    hw = torch.cat((dec.hw.weight, dec.hw_append.weight), 0)[slots].sigmoid()
                    kwh = hw[None, None] * box_ref[..., 2:][:, :, None]
                    kref = torch.cat((kxy, kwh), -1)                                         # (1, G, S, 4)
                    new_ref = torch.cat((box_ref[:, :, None], kref), 2).flatten(1, 2)
                    kout = k_emb[None, None].expand(1, n_group, -1, -1)
                    out = torch.cat((box_out[:, :, None], kout), 2).flatten(1, 2)
                    group = 1 + n_slots
                    mask = torch.cat([torch.ones(1, dtype=torch.bool, device=dev), vis[slots]])
                    allowed = mask[:, None] == mask[None, :]
            else:
                g = out.view(1, n_group, group, -1)
                r = inverse_sigmoid(ref).view(1, n_group, group, 4)
                nbox = (self.bbox_embed[lid](g[:, :, 0]) + r[:, :, 0]).sigmoid()
                k = lid - cfg.num_box_layers
                kr = r[:, :, 1:].clone()
                kr[..., :2] += self.pose_embed[k](g[:, :, 1:])
                kr[..., 2:] += self.pose_hw_embed[k](g[:, :, 1:])
                new_ref = torch.cat((nbox[:, :, None], kr.sigmoid()), 2).flatten(1, 2)
            ref = new_ref.detach()
            tgt = out

        # heads on the last layer (reference = that layer's input)
        if group is None:
            raise RuntimeError("X-Pose needs more decoder layers than box layers")
        g = hs.view(1, n_group, group, -1)
        r = ref.view(1, n_group, group, 4)
        boxes = (self.bbox_embed[len(dec.layers) - 1](g[:, :, 0]) + inverse_sigmoid(r[:, :, 0])).sigmoid()
        logits_valid = g[:, :, 0] @ text_valid_rows.transpose(1, 2)
        logits = logits_valid.new_full((1, n_group, MAX_TEXT), float("-inf"))
        logits[..., :n_valid] = logits_valid
        k = len(dec.layers) - 1 - cfg.num_box_layers
        kxy = (self.pose_embed[k](g[:, :, 1:]) + inverse_sigmoid(r[:, :, 1:, :2])).sigmoid()   # (1, G, S, 2)
        kv = torch.full_like(kxy[..., :1], 1.0).sigmoid()
        keypoints = torch.cat((kxy.flatten(2), kv.flatten(2)), -1)
        return {"pred_logits": logits, "pred_boxes": boxes, "pred_keypoints": keypoints}
