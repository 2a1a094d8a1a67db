"""Driving keypoints per frame: JoyVASA's animation loop, vectorised over frames.

Why a separate module: this is the only place where the generated motion meets the source
portrait, and it must match upstream ``live_portrait_wmg_pipeline(_animal).py`` to float32
precision (spec §3). Upstream loops frame by frame; every term except the convex-hull
multiplier (which needs frame 0 only) is independent per frame, so we compute all frames in
one batched expression. Row-vector convention: ``x · R``.

Recipe (human pipeline, upstream's region 'all'). Gains, regions and every other art-direction
control are NOT applied here: they edit the motion before it arrives (engine/motion/edit.py),
so the rig and the video read the same edited motion. The reference frame (``reference``) is
the raw motion's frame 0, so constant offsets of the controls stay visible.
  1. R_new = (R_di · R_d0ᵀ) · R_s
  2. δ_new = exp_s + (exp_di − exp_d0); lip rows {6,12,14,17,19,20} = exp_di (absolute)
  3. scale_new = scale_s · scale_di / scale_d0      (animal: scale_s)
  4. t_new = t_s + (t_di − t_d0); t_new.z = 0
  5. x_d = scale_new · (x_c · R_new + δ_new) + t_new
  6. relative + expression-friendly (animal: always): x_d = (x_d − x_d0)·m + x_s,
     m = sqrt(V(x_s)) / sqrt(V(x_d0)), V = 3-D convex-hull volume (float64, Qhull)
  7. stitching: x_d = S(x_s, x_d)
  7b. lip normalisation (human, relative, source lip-open ratio c ≥ 0.03 from the face mesh):
     x_d += lip_MLP([x_s, c, 0]) — upstream's ``lip_delta_before_animation`` (spec §3 step 2)
  8. x_d = x_s + (x_d − x_s) · driving_multiplier
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch

#: lip keypoints (used absolutely, upstream human pipeline) and eye keypoints (shared/spec/semantic_basis.md
#: §5), and upstream's ``lip_normalize_threshold``: below this source lip-open ratio no normalisation
from engine.contract.schema import EYE_ROWS, LIP_NORMALIZE_THRESHOLD, LIP_ROWS  # noqa: F401

if TYPE_CHECKING:
    from engine.contract.npz_reader import MotionData
    from engine.models.stage_one import SourceInfo

StitchFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class ComposeOptions:
    """How generated motion drives the portrait. Defaults = upstream gradio (docs/engine-cli.md, animate)."""

    relative: bool = True               # upstream flag_relative_motion (gates the hull multiplier)
    expression_friendly: bool = True    # driving_option 'expression-friendly' (else 'pose-friendly')
    stitching: bool = True
    driving_multiplier: float = 1.0
    animal: bool = False                # animal pipeline variant
    normalize_lip: bool = True          # upstream flag_normalize_lip (gradio: on; needs the lip-open ratio)

    def __post_init__(self) -> None:
        value = self.driving_multiplier
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"driving_multiplier must be a finite number >= 0, got {value}")

    @classmethod
    def upstream_cli(cls, animal: bool = False) -> "ComposeOptions":
        """``inference.py`` defaults: relative off, stitching off, multiplier 1.10."""
        return cls(relative=False, stitching=False, driving_multiplier=1.10, animal=animal, normalize_lip=False)

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
    def from_info(cls, info: SourceInfo) -> "SourceKeypoints":
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
    def from_motion(cls, m: MotionData, device: torch.device | str = "cpu") -> "DrivingMotion":
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


def concat_motion(a: DrivingMotion, b: DrivingMotion) -> DrivingMotion:
    return DrivingMotion(exp=torch.cat([a.exp, b.exp]), scale=torch.cat([a.scale, b.scale]),
                         t=torch.cat([a.t, b.t]), R=torch.cat([a.R, b.R]))


def lip_normalization(opts: ComposeOptions, lip_open: float | None, lip_net: Callable[[torch.Tensor], torch.Tensor],
                      x_s: torch.Tensor) -> tuple[torch.Tensor | None, str]:
    """Upstream's ``lip_delta_before_animation`` (1,21,3), or None, with the reason in words.

    Why: a source photographed with the mouth open would otherwise keep that opening as the rest
    pose; upstream closes it once (lip MLP with target ratio 0) when ``flag_normalize_lip`` and
    relative motion are on and the source lip-open ratio is at least 0.03. Human pipeline only.
    """
    if opts.animal:
        return None, "lip normalisation: off (animal pipeline)"
    if not opts.normalize_lip:
        return None, "lip normalisation: off (--no-normalize-lip)"
    if not opts.relative:
        return None, "lip normalisation: off (needs relative motion)"
    if lip_open is None:
        return None, "lip normalisation: off (no lip-open ratio: the framing has no face-mesh landmarks)"
    if lip_open < LIP_NORMALIZE_THRESHOLD:
        return None, f"lip normalisation: not needed (source lip-open ratio {lip_open:.3f} < {LIP_NORMALIZE_THRESHOLD})"
    b = x_s.shape[0]
    ratio = torch.tensor([[float(lip_open), 0.0]], dtype=x_s.dtype, device=x_s.device).expand(b, 2)
    delta = lip_net(torch.cat([x_s.reshape(b, -1), ratio], dim=1)).reshape(b, -1, 3)
    return delta, f"lip normalisation: on (source lip-open ratio {lip_open:.3f})"


def compose_driving(src: SourceKeypoints, motion: DrivingMotion, opts: ComposeOptions,
                    stitch: StitchFn | None = None, reference: DrivingMotion | None = None,
                    lip_delta: torch.Tensor | None = None) -> torch.Tensor:
    """Driving keypoints ``x_d`` (N,21,3) for every frame, exactly as upstream's loop.

    ``reference`` (1 frame): the frame relative motion is measured against when ``motion`` is a
    window of the generated sequence that no longer starts at generated frame 0 (e.g. after
    dropping the lead-in silence frames); default: ``motion``'s own frame 0 (upstream).
    ``lip_delta`` (1,21,3): from :func:`lip_normalization`, added after stitching (step 7b).
    """
    if reference is not None:
        return compose_driving(src, concat_motion(reference, motion), opts, stitch, lip_delta=lip_delta)[1:]
    if opts.stitching and stitch is None:
        raise ValueError("stitching is on but no stitch function was given")
    n = motion.n_frames
    x_c, x_s = src.x_c, src.x_s                        # (1,21,3)
    R_d0 = motion.R[:1]                                # (1,3,3)
    exp_d0 = motion.exp[:1]                            # (1,21,3)

    # 1. rotation
    R_new = (motion.R @ R_d0.permute(0, 2, 1)) @ src.R  # (N,3,3)

    # 2. expression (human: lip rows absolute, as upstream)
    delta = src.exp + (motion.exp - exp_d0)            # (N,21,3)
    if not opts.animal:
        rows = list(LIP_ROWS)
        delta[:, rows] = motion.exp[:, rows]

    # 3. scale, 4. translation (t_z dropped)
    if opts.animal:
        scale_new = src.scale.expand(n, 1)             # (N,1)
    else:
        scale_new = src.scale * (motion.scale / motion.scale[:1])   # (N,1)
    t_new = (src.t + (motion.t - motion.t[:1])).clone()  # (N,3)
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

    # 7b. lip normalisation (upstream adds it with or without stitching, before the multiplier)
    if lip_delta is not None:
        x_d = x_d + lip_delta

    # 8. driving multiplier
    return x_s + (x_d - x_s) * opts.driving_multiplier
