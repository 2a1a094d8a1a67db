"""Driving keypoints per frame: JoyVASA's animation loop, vectorised over frames.

Why a separate module: this is the only place where the generated motion meets the source
portrait, and it must match upstream ``live_portrait_wmg_pipeline(_animal).py`` to float32
precision (spec §3). Upstream loops frame by frame; every term except the convex-hull
multiplier (which needs frame 0 only) is independent per frame, so we compute all frames in
one batched expression. Row-vector convention: ``x · R``.

Recipe (human pipeline, region 'all', strengths 1.0 = upstream):
  1. R_new = (R_di · R_d0ᵀ) · R_s
  2. δ_new = exp_s + (exp_di − exp_d0); lip rows {6,12,14,17,19,20} = exp_di (absolute)
  3. scale_new = scale_s · scale_di / scale_d0      (animal: scale_s)
  4. t_new = t_s + (t_di − t_d0); t_new.z = 0
  5. x_d = scale_new · (x_c · R_new + δ_new) + t_new
  6. relative + expression-friendly (animal: always): x_d = (x_d − x_d0)·m + x_s,
     m = sqrt(V(x_s)) / sqrt(V(x_d0)), V = 3-D convex-hull volume (float64, Qhull)
  7. stitching: x_d = S(x_s, x_d)
  8. x_d = x_s + (x_d − x_s) · driving_multiplier
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Literal

import numpy as np
import torch

Region = Literal["all", "exp", "pose", "lip", "eyes"]
from engine.protocol import REGIONS  # noqa: E402  (the one list; re-exported)

#: keypoints whose generated expression is used absolutely (upstream human pipeline)
LIP_ROWS: tuple[int, ...] = (6, 12, 14, 17, 19, 20)
#: eye keypoints of the human pipeline (shared/spec/semantic_basis.md §5)
EYE_ROWS: tuple[int, ...] = (11, 13, 15, 16, 18)

StitchFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class ComposeOptions:
    """How generated motion drives the portrait. Defaults = upstream gradio (see README)."""

    region: Region = "all"
    relative: bool = True               # upstream flag_relative_motion (gates the hull multiplier)
    expression_friendly: bool = True    # driving_option 'expression-friendly' (else 'pose-friendly')
    stitching: bool = True
    driving_multiplier: float = 1.0
    pose_strength: float = 1.0          # 1.0 = upstream; scales head rotation/translation/scale change
    exp_strength: float = 1.0           # 1.0 = upstream; scales expression change
    animal: bool = False                # animal pipeline variant

    def __post_init__(self) -> None:
        if self.region not in REGIONS:
            raise ValueError(f"region must be one of {', '.join(REGIONS)}, got {self.region!r}")
        for name in ("driving_multiplier", "pose_strength", "exp_strength"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")

    @classmethod
    def upstream_cli(cls, animal: bool = False) -> "ComposeOptions":
        """``inference.py`` defaults: relative off, stitching off, multiplier 1.10."""
        return cls(relative=False, stitching=False, driving_multiplier=1.10, animal=animal)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class SourceKeypoints:
    """Source-portrait quantities (torch, batch 1): the fields of stage one's SourceInfo we need."""

    x_c: torch.Tensor    # (1,21,3) canonical keypoints
    exp: torch.Tensor    # (1,21,3)
    scale: torch.Tensor  # (1,1)
    t: torch.Tensor      # (1,3)
    R: torch.Tensor      # (1,3,3)
    x_s: torch.Tensor    # (1,21,3)

    @classmethod
    def from_info(cls, info: Any) -> "SourceKeypoints":
        return cls(x_c=info.x_c, exp=info.exp, scale=info.scale, t=info.t, R=info.R, x_s=info.x_s)


@dataclass
class DrivingMotion:
    """Generated motion as float32 tensors over N frames (frame 0 is the reference)."""

    exp: torch.Tensor    # (N,21,3)
    scale: torch.Tensor  # (N,1)
    t: torch.Tensor      # (N,3)
    R: torch.Tensor      # (N,3,3)

    @classmethod
    def from_arrays(cls, exp: np.ndarray, scale: np.ndarray, t: np.ndarray, R: np.ndarray,
                    device: torch.device | str = "cpu") -> "DrivingMotion":
        def f(a: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(np.ascontiguousarray(a, dtype=np.float32), device=device)
        n = int(np.asarray(exp).shape[0])
        return cls(exp=f(exp).reshape(n, 21, 3), scale=f(scale).reshape(n, 1), t=f(t).reshape(n, 3),
                   R=f(R).reshape(n, 3, 3))

    @classmethod
    def from_motion(cls, m: Any, device: torch.device | str = "cpu") -> "DrivingMotion":
        """From an :class:`engine.motion.npz.MotionData`."""
        return cls.from_arrays(m.exp, m.scale, m.t, m.R, device=device)

    @property
    def n_frames(self) -> int:
        return int(self.exp.shape[0])


def hull_volume(points: np.ndarray) -> float:
    """Volume of the 3-D convex hull of (21,3) points, float64 (upstream uses scipy's Qhull)."""
    from scipy.spatial import ConvexHull

    return float(ConvexHull(np.asarray(points, dtype=np.float64)).volume)


def motion_multiplier(x_s: torch.Tensor, x_d0: torch.Tensor) -> float:
    """``sqrt(V(x_s)) / sqrt(V(x_d0))`` of the expression-friendly driving option."""
    src = x_s.detach().float().cpu().numpy()[0]
    drv = x_d0.detach().float().cpu().numpy()[0]
    return float(np.sqrt(hull_volume(src)) / np.sqrt(hull_volume(drv)))


def _scaled_rotation(R_rel: torch.Tensor, strength: float) -> torch.Tensor:
    """R_rel^strength (row-vector rotations) via axis-angle; identity path for strength 1."""
    if strength == 1.0:
        return R_rel
    R64 = R_rel.double()
    cos = (R64.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2  # (N,)
    # skew part of a row-vector rotation is the transpose of the column-vector one
    axis = torch.stack([R64[:, 1, 2] - R64[:, 2, 1], R64[:, 2, 0] - R64[:, 0, 2],
                        R64[:, 0, 1] - R64[:, 1, 0]], dim=-1)  # (N,3)
    norm = axis.norm(dim=-1, keepdim=True)
    angle = torch.atan2(norm[:, 0] / 2, cos)  # accurate for small angles, unlike acos
    axis = torch.where(norm > 1e-12, axis / norm.clamp_min(1e-12), torch.zeros_like(axis))
    a = (angle * strength)[:, None, None]
    k = axis
    K = torch.zeros(R64.shape, dtype=R64.dtype, device=R64.device)
    K[:, 0, 1], K[:, 0, 2] = -k[:, 2], k[:, 1]
    K[:, 1, 0], K[:, 1, 2] = k[:, 2], -k[:, 0]
    K[:, 2, 0], K[:, 2, 1] = -k[:, 1], k[:, 0]
    eye = torch.eye(3, dtype=R64.dtype, device=R64.device).expand_as(R64)
    R_col = eye + torch.sin(a) * K + (1 - torch.cos(a)) * (K @ K)  # column-vector rotation
    return R_col.transpose(1, 2).to(R_rel.dtype)


def concat_motion(a: DrivingMotion, b: DrivingMotion) -> DrivingMotion:
    return DrivingMotion(exp=torch.cat([a.exp, b.exp]), scale=torch.cat([a.scale, b.scale]),
                         t=torch.cat([a.t, b.t]), R=torch.cat([a.R, b.R]))


def compose_driving(src: SourceKeypoints, motion: DrivingMotion, opts: ComposeOptions,
                    stitch: StitchFn | None = None, reference: DrivingMotion | None = None) -> torch.Tensor:
    """Driving keypoints ``x_d`` (N,21,3) for every frame, exactly as upstream's loop.

    ``reference`` (1 frame): the frame relative motion is measured against when ``motion`` is a
    window of the generated sequence that no longer starts at generated frame 0 (e.g. after
    dropping the lead-in silence frames); default: ``motion``'s own frame 0 (upstream).
    """
    if reference is not None:
        return compose_driving(src, concat_motion(reference, motion), opts, stitch)[1:]
    if opts.stitching and stitch is None:
        raise ValueError("stitching is on but no stitch function was given")
    n = motion.n_frames
    x_c, x_s = src.x_c, src.x_s                        # (1,21,3)
    R_d0 = motion.R[:1]                                # (1,3,3)
    exp_d0 = motion.exp[:1]                            # (1,21,3)

    # 1. rotation
    if opts.region in ("all", "pose"):
        R_rel = _scaled_rotation(motion.R @ R_d0.permute(0, 2, 1), opts.pose_strength)  # (N,3,3)
        R_new = R_rel @ src.R                          # (N,3,3)
    else:
        R_new = src.R.expand(n, 3, 3)

    # 2. expression
    d_exp = motion.exp - exp_d0                        # (N,21,3)
    if opts.exp_strength != 1.0:
        d_exp = d_exp * opts.exp_strength
    if opts.region == "pose":
        delta = src.exp.expand(n, 21, 3).clone()
    elif opts.region in ("lip", "eyes"):
        rows = list(LIP_ROWS if opts.region == "lip" else EYE_ROWS)
        delta = src.exp.expand(n, 21, 3).clone()
        delta[:, rows] = src.exp[:, rows] + d_exp[:, rows]
    else:  # all, exp
        delta = src.exp + d_exp                        # (N,21,3)
        if not opts.animal:
            rows = list(LIP_ROWS)
            if opts.exp_strength == 1.0:
                delta[:, rows] = motion.exp[:, rows]
            else:
                delta[:, rows] = src.exp[:, rows] + opts.exp_strength * (motion.exp[:, rows] - src.exp[:, rows])

    # 3. scale, 4. translation (t_z dropped)
    if opts.animal:
        scale_new = src.scale.expand(n, 1)             # (N,1)
    else:
        ratio = motion.scale / motion.scale[:1]
        if opts.pose_strength != 1.0:
            ratio = ratio.sign() * ratio.abs().pow(opts.pose_strength)
        scale_new = src.scale * ratio                  # (N,1)
    d_t = motion.t - motion.t[:1]
    if opts.pose_strength != 1.0:
        d_t = d_t * opts.pose_strength
    t_new = src.t + d_t                                # (N,3)
    t_new = t_new.clone()
    t_new[..., 2] = 0

    # 5. driving keypoints
    x_d = scale_new[:, :, None] * (x_c @ R_new + delta) + t_new[:, None, :]  # (N,21,3)

    # 6. expression-friendly convex-hull multiplier (animal: always)
    if opts.animal or (opts.relative and opts.expression_friendly):
        x_d0 = x_d[:1].clone()
        m = motion_multiplier(x_s, x_d0)
        x_d = (x_d - x_d0) * m + x_s

    # 7. stitching
    if opts.stitching:
        x_d = stitch(x_s.expand(n, 21, 3), x_d)

    # 8. driving multiplier
    return x_s + (x_d - x_s) * opts.driving_multiplier
