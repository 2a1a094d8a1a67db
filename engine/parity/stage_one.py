"""Parity group for the LivePortrait stage-one networks (F, M, keypoints, W, G, S).

Recomputes the reference arrays from the folder's own checkpoints (``models.yaml`` sizes) and the
recorded inputs (``I_s``, ``WG_kp_source``, ``WG_kp_driving``, ``S_*_in``). ``I_s`` and
``source_image`` are rebuilt from ``<DIR>/source.png`` so the image path is checked too. The
loaded :class:`StageOne` is left in ``ctx.cache["stage_one"]`` for the animation group.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from engine.models.stage_one import StageOne

PREFIXES = ("F_", "M_", "x_s", "W_", "G_", "S_", "I_s", "source_image")


def get_stage_one(ctx) -> "StageOne":
    """The StageOne of this reference folder (default engine path), loaded once per parity run."""
    if "stage_one" not in ctx.cache:
        from engine.models.stage_one import StageOne
        from engine.weights import WeightsLayout

        ctx.cache["stage_one"] = StageOne.load(WeightsLayout(ctx.ref_dir), "cpu")
    return ctx.cache["stage_one"]


@torch.no_grad()
def compute(ctx, wanted: set[str]) -> dict[str, np.ndarray]:
    from engine.models.keypoints import rotation_matrix, transform_keypoint
    from engine.models.stage_one import preprocess_image, read_image_rgb

    s1 = get_stage_one(ctx)
    out: dict[str, np.ndarray] = {}
    png = ctx.ref_dir / "source.png"
    if wanted & {"source_image", "I_s"} and png.is_file():
        rgb = read_image_rgb(png)  # (H, W, 3) uint8
        out["source_image"] = rgb
        out["I_s"] = preprocess_image(rgb).numpy()
    if any(n.startswith(("F_", "M_", "x_s")) for n in wanted):
        x = torch.from_numpy(ctx.array("I_s")).float()  # (1, 3, 256, 256) recorded network input
        out["F_feature_3d"] = s1.F(x).numpy()
        raw = s1.M(x)
        for key, value in raw.items():
            out[f"M_raw_{key}"] = value.numpy()
        info = s1.M.kp_info(x)
        for key in ("kp", "exp", "scale", "t", "pitch", "yaw", "roll"):
            out[f"M_{key}"] = info[key].numpy()
        R = rotation_matrix(info["pitch"], info["yaw"], info["roll"])
        out["M_R"] = R.numpy()
        out["x_s"] = transform_keypoint(info["kp"], R, info["exp"], info["scale"], info["t"]).numpy()
    if any(n.startswith(("W_", "G_")) for n in wanted):
        # per-network gates: W gets the recorded F output, G the recorded W output, so one
        # network's rounding does not eat the next one's tolerance
        f_s = torch.from_numpy(ctx.array("F_feature_3d")).float()
        kp_s = torch.from_numpy(ctx.array("WG_kp_source")).float()
        kp_d = torch.from_numpy(ctx.array("WG_kp_driving")).float()
        w = s1.warp(f_s, kp_s, kp_d)
        out["W_out"] = w["out"].numpy()
        out["W_deformation"] = w["deformation"].numpy()
        out["W_dense_mask"] = w["mask"].numpy()
        if "occlusion_map" in w:
            out["W_occlusion_map"] = w["occlusion_map"].numpy()
        out["G_out"] = s1.decode(torch.from_numpy(ctx.array("W_out")).float()).numpy()
    if any(n.startswith("S_") for n in wanted):
        for name in ("stitching", "lip", "eye"):
            if f"S_{name}_in" in ctx.ref.files:
                out[f"S_{name}_out"] = s1.S[name](torch.from_numpy(ctx.array(f"S_{name}_in")).float()).numpy()
        if "WG_kp_source" in ctx.ref.files:
            out["S_stitching_kp_out"] = s1.stitch(torch.from_numpy(ctx.array("WG_kp_source")).float(),
                                                  torch.from_numpy(ctx.array("WG_kp_driving")).float()).numpy()
    return {k: v for k, v in out.items() if k in wanted}
