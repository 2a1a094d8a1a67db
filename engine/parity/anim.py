"""Parity group for the animation loop (``ANIM_*``): driving keypoints and rendered frames.

Recomputes, for the three reference configs of ``meta.json → harness_config.anim_configs``
(A: CLI human, B: relative + expression-friendly + stitching, C: animal CLI), the driving
keypoints of every frame from the reference motion (``MG_final_*``) and the source info that
the engine's own stage one extracts from the recorded network input ``I_s``; then renders
only the listed frame indices through W+G (uint8 with truncation, as upstream).
"""
from __future__ import annotations

import json

import numpy as np
import torch

PREFIXES = ("ANIM_",)


def _options(cfg: dict):
    from engine.render.compose import ComposeOptions

    return ComposeOptions(relative=bool(cfg.get("flag_relative_motion", False)),
                          expression_friendly=cfg.get("driving_option", "expression-friendly") == "expression-friendly",
                          stitching=bool(cfg.get("flag_stitching", False)),
                          driving_multiplier=float(cfg.get("driving_multiplier", 1.0)),
                          animal=cfg.get("pipeline", "human") == "animal")


def _anim_configs(ctx) -> dict[str, dict]:
    meta = ctx.ref_dir / "meta.json"
    if meta.is_file():
        cfgs = json.loads(meta.read_text()).get("harness_config", {}).get("anim_configs")
        if cfgs:
            return cfgs
    # documented in shared/fixtures/README.md
    return {"A": {"pipeline": "human", "driving_multiplier": 1.1},
            "B": {"pipeline": "human", "flag_relative_motion": True, "flag_stitching": True,
                  "driving_multiplier": 1.0},
            "C": {"pipeline": "animal", "driving_multiplier": 1.1}}


@torch.no_grad()
def compute(ctx, wanted: set[str]) -> dict[str, np.ndarray]:
    from engine.models.stage_one import frames_to_uint8
    from engine.parity.stage_one import get_stage_one
    from engine.render.compose import DrivingMotion, SourceKeypoints, compose_driving

    s1 = get_stage_one(ctx)
    x = torch.from_numpy(ctx.array("I_s")).float()  # (1,3,256,256) recorded network input
    info = s1.extract(x)
    src = SourceKeypoints.from_info(info)
    motion = DrivingMotion.from_arrays(ctx.array("MG_final_exp"), ctx.array("MG_final_scale"),
                                       ctx.array("MG_final_t"), ctx.array("MG_final_R"))
    out: dict[str, np.ndarray] = {}
    for key, cfg in _anim_configs(ctx).items():
        prefix = f"ANIM_{key}_"
        if not any(n.startswith(prefix) for n in wanted):
            continue
        opts = _options(cfg)
        x_d = compose_driving(src, motion, opts, stitch=s1.stitch if opts.stitching else None)  # (N,21,3)
        out[prefix + "kp_driving"] = x_d.numpy()
        need_frames = {prefix + s for s in ("frame_mean", "frames", "rendered_index", "frame_index")} & wanted
        if not need_frames:
            continue
        rendered = ctx.array(prefix + "rendered_index") if prefix + "rendered_index" in ctx.ref.files \
            else np.array([0, 1, 2, x_d.shape[0] // 2, x_d.shape[0] - 1])
        stored = ctx.array(prefix + "frame_index") if prefix + "frame_index" in ctx.ref.files else rendered[[0, -1]]
        frames = {}
        for i in rendered.tolist():
            frames[i] = frames_to_uint8(s1.warp_decode(info.f_s, info.x_s, x_d[i:i + 1]))[0]  # (512,512,3)
        out[prefix + "rendered_index"] = rendered
        out[prefix + "frame_mean"] = np.stack([frames[i].reshape(-1, 3).mean(0) for i in rendered.tolist()])
        out[prefix + "frame_index"] = stored
        out[prefix + "frames"] = np.stack([frames[int(i)] for i in stored.tolist()])
    return out
