"""``python -m engine animate``: portrait + speech (or a motion file) → mp4 and/or PNG sequence.

Parse options → :class:`engine.jobs.AnimateJob` → :func:`engine.pipeline.animate.run_animate`
(whose docstring lists the numbered steps). Outputs appear atomically; cancel removes them.

Defaults follow upstream's gradio app (what users of JoyVASA/LivePortrait see): relative
motion on, expression-friendly hull multiplier, stitching on, lip normalisation on, driving
multiplier 1.0, face crop on with paste-back. ``--upstream-cli`` switches to ``inference.py``'s defaults
(relative off, stitching off, no lip normalisation, multiplier 1.10, no crop).
"""
from __future__ import annotations

import argparse

from engine.pipeline import run_pipeline
from engine.commands.crop import add_framing_arguments
from engine.commands.motion import add_motion_options, add_runtime_options
from engine.jobs import CODECS, AnimateJob
from engine.pipeline.context import Context
from engine.contract.protocol import REGIONS
from engine.runner import run_protocol_command


def add_render_options(p: argparse.ArgumentParser) -> None:
    """Options shared by ``animate`` and ``bench animate``."""
    g = p.add_argument_group("animation")
    g.add_argument("--controls", default=None,
                   help="art-direction controls .json applied to the motion (docs: art direction)")
    g.add_argument("--region", choices=REGIONS, default="all",
                   help="shorthand for controls: which part of the motion drives the portrait (default all)")
    g.add_argument("--pose-strength", type=float, default=1.0,
                   help="shorthand for controls: head-motion gain (1.0 = upstream)")
    g.add_argument("--exp-strength", type=float, default=1.0,
                   help="shorthand for controls: expression gain (1.0 = upstream)")
    rel = g.add_mutually_exclusive_group()
    rel.add_argument("--relative", dest="relative", action="store_true", default=True,
                     help="relative motion + expression-friendly multiplier (default, like gradio)")
    rel.add_argument("--absolute", dest="relative", action="store_false",
                     help="no convex-hull motion multiplier (upstream CLI behaviour)")
    st = g.add_mutually_exclusive_group()
    st.add_argument("--stitching", dest="stitching", action="store_true", default=True,
                    help="stitching MLP keeps the shoulders still (default)")
    st.add_argument("--no-stitching", dest="stitching", action="store_false")
    g.add_argument("--driving-multiplier", type=float, default=1.0, help="scales the motion (gradio 1.0, CLI 1.1)")
    lip = g.add_mutually_exclusive_group()
    lip.add_argument("--normalize-lip", dest="normalize_lip", action="store_true", default=True,
                     help="close a source mouth photographed open before animating (upstream's lip "
                          "normalisation, gradio default; needs the face mesh's lip-open ratio >= 0.03)")
    lip.add_argument("--no-normalize-lip", dest="normalize_lip", action="store_false")
    g.add_argument("--animal", action="store_true",
                   help="animal pipeline (weights from liveportrait_animals/ if present)")
    g.add_argument("--animal-models", choices=("auto", "v1", "v1.1"), default="auto",
                   help="with --animal: LivePortrait's animal models, v1.1 (base_models_v1.1, default when "
                        "present) or v1 (base_models, JoyVASA's)")
    g.add_argument("--upstream-cli", action="store_true",
                   help="upstream inference.py defaults: --absolute --no-stitching --driving-multiplier 1.1 --crop none")
    c = p.add_argument_group("framing")
    add_framing_arguments(c)   # --crop --scale --vx --vy --face-index, exactly as `engine crop`
    pb = c.add_mutually_exclusive_group()
    pb.add_argument("--pasteback", dest="pasteback", action="store_true", default=True,
                    help="blend the animated face back into the full portrait (default when cropping)")
    pb.add_argument("--no-pasteback", dest="pasteback", action="store_false", help="write the 512x512 crop")
    o = p.add_argument_group("output")
    o.add_argument("--fps", type=float, default=None, help="output frame rate (default: the motion's, 25)")
    o.add_argument("--upstream-timing", action="store_true",
                   help="reproduce upstream's timing: keep the 2 lead-in frames (video lags audio by 80 ms "
                        "and runs ~120 ms longer); default: in sync and as long as the audio")
    r = p.add_argument_group("runtime")
    add_runtime_options(r, "precision of every network of the job (bf16, fp16, fp32 also accepted; auto: float32 "
                           "on CPU, bfloat16/float16 on GPU for rendering); bfloat16 loads bf16-resident weights")
    r.add_argument("--batch", type=int, default=None,
                   help="frames per W+G batch (auto: 1 on CPU; on a GPU sized to stay within ~70%% of its memory)")
    r.add_argument("--codec", choices=CODECS, default="auto",
                   help="H.264 encoder (auto: h264_nvenc when FFmpeg and the NVIDIA driver have it, else libx264)")
    r.add_argument("--sequential", action="store_true", help=argparse.SUPPRESS)  # reference path (bench/tests)
    r.add_argument("--weights", default=None, help="weights folder (default $JOYVASA_WEIGHTS)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--image", required=True, help="portrait image (PNG/JPEG)")
    p.add_argument("--audio", default=None, help="speech audio (wav/mp3/...); required unless --motion and no mp4")
    p.add_argument("--out", default=None, help="output .mp4 (optional when --frames-dir is given)")
    p.add_argument("--frames-dir", default=None,
                   help="also/instead write a PNG sequence frame_00000.png ... (a new folder, or one holding "
                        "only frames of an earlier run)")
    p.add_argument("--overwrite", action="store_true",
                   help="allow --frames-dir to be a folder that holds other files (only frame_NNNNN.png "
                        "files are ever replaced or removed there)")
    p.add_argument("--motion", default=None, help="use this motion .npz instead of generating one")
    p.add_argument("--save-motion", default=None, help="also save the generated motion .npz here")
    p.add_argument("--save-driving", default=None,
                   help="also save the driving keypoints of every rendered frame here (.npy, float32 N x 21 x 3)")
    p.add_argument("--max-frames", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--preview", action="store_true",
                   help="cheap look first: every 8th frame (at most 24 frames) as a short clip over the full "
                        "soundtrack + a contact sheet OUT_contact.png")
    add_render_options(p)
    add_motion_options(p)
    p.add_argument("--progress", choices=("text", "json"), default="text",
                   help="json: protocol-v1 events on stdout (for the Blender add-on)")


def run(args: argparse.Namespace) -> int:
    return run_protocol_command("animate", args.progress,
                                lambda rep: run_pipeline(AnimateJob.from_args(args), Context(rep)))
