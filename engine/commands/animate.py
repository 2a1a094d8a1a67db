"""``python -m engine animate``: portrait + speech (or a motion file) → mp4 and/or PNG sequence.

Pipeline: validate inputs → load stage one → crop the portrait → source keypoints → motion
(generated from the audio, or ``--motion``) → frame plan (sync or upstream timing) → driving
keypoints for every frame (engine/render/compose.py) → batched W+G streamed to the writers,
with paste-back into the full portrait. Outputs appear atomically; cancel removes them.

Defaults follow upstream's gradio app (what users of JoyVASA/LivePortrait see): relative
motion on, expression-friendly hull multiplier, stitching on, driving multiplier 1.0, face
crop on with paste-back. ``--upstream-cli`` switches to ``inference.py``'s defaults
(relative off, stitching off, multiplier 1.10, no crop).
"""
from __future__ import annotations

import argparse
import contextlib
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from engine.errors import BadRequest, EngineError, WeightsCorrupt, WeightsMissing, OFFICIAL_WEIGHTS_HINT
from engine.runner import Reporter, run_protocol_command


def add_render_options(p: argparse.ArgumentParser) -> None:
    """Options shared by ``animate`` and ``bench animate``."""
    g = p.add_argument_group("animation")
    g.add_argument("--region", choices=("all", "exp", "pose", "lip", "eyes"), default="all",
                   help="which part of the generated motion drives the portrait (default all)")
    g.add_argument("--pose-strength", type=float, default=1.0, help="head-motion strength (1.0 = upstream)")
    g.add_argument("--exp-strength", type=float, default=1.0, help="expression strength (1.0 = upstream)")
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
    g.add_argument("--animal", action="store_true",
                   help="animal pipeline (weights from liveportrait_animals/ if present)")
    g.add_argument("--upstream-cli", action="store_true",
                   help="upstream inference.py defaults: --absolute --no-stitching --driving-multiplier 1.1 --crop none")
    c = p.add_argument_group("framing")
    c.add_argument("--crop", default="auto", metavar="auto|none|X,Y,W,H",
                   help="face crop: auto-detect (default), none (whole image), or a manual face box")
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
    r.add_argument("--device", default="auto", help="auto|cpu|cuda|cuda:N|mps (auto: cuda > mps > cpu)")
    r.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16", "float16"),
                   help="compute precision (auto: float32 on CPU, bf16/fp16 autocast on GPU)")
    r.add_argument("--batch", type=int, default=None, help="frames per W+G batch (auto: 1 on CPU, from free memory on GPU)")
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
    p.add_argument("--max-frames", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--preview", action="store_true",
                   help="cheap look first: every 8th frame (at most 24 frames) as a short clip over the full "
                        "soundtrack + a contact sheet OUT_contact.png")
    add_render_options(p)
    try:
        from engine.commands.motion import add_motion_options
    except ImportError:  # motion command not available in this build
        pass
    else:
        add_motion_options(p)
    p.add_argument("--progress", choices=("text", "json"), default="text",
                   help="json: protocol-v1 events on stdout (for the Blender add-on)")


# -- helpers -------------------------------------------------------------------------------

def compose_options(args: argparse.Namespace):
    from engine.render.compose import ComposeOptions

    try:
        if args.upstream_cli:
            return replace(ComposeOptions.upstream_cli(animal=args.animal), region=args.region,
                           pose_strength=args.pose_strength, exp_strength=args.exp_strength)
        return ComposeOptions(region=args.region, relative=args.relative, expression_friendly=True,
                              stitching=args.stitching, driving_multiplier=args.driving_multiplier,
                              pose_strength=args.pose_strength, exp_strength=args.exp_strength,
                              animal=args.animal)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None


class _AnimalLayout:
    """Stage-one weights from ``liveportrait_animals/`` (stitching stays human, as upstream)."""

    def __init__(self, layout: Any) -> None:
        self._layout = layout
        self.root = layout.root

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._layout, name)
        if isinstance(value, Path) and "liveportrait/base_models" in value.as_posix():
            return Path(str(value).replace("liveportrait/base_models", "liveportrait_animals/base_models"))
        return value

    def liveportrait_files(self) -> dict[str, Path]:
        files = self._layout.liveportrait_files()
        return {k: (getattr(self, k) if k != "stitching_retargeting_module" else v) for k, v in files.items()}


def load_stage_one(layout: Any, device: Any, reporter: Reporter | None = None, animal: bool = False) -> Any:
    """StageOne from the weights folder; missing/corrupt files become WeightsMissing/WeightsCorrupt."""
    from engine.models.stage_one import StageOne

    use = layout
    if animal:
        if (layout.root / "liveportrait_animals/base_models").is_dir():
            use = _AnimalLayout(layout)
        elif reporter is not None:
            reporter.warning("animal_weights_missing", "liveportrait_animals/ not found: using the human "
                                                       "LivePortrait weights with the animal pipeline")
    for name, path in use.liveportrait_files().items():
        if not Path(path).is_file():
            what = "is a folder, expected a file" if Path(path).is_dir() else "is missing"
            raise WeightsMissing(f"{name}: {path} {what}. {OFFICIAL_WEIGHTS_HINT}")
    try:
        return StageOne.load(use, device)
    except (WeightsMissing, WeightsCorrupt):
        raise
    except (RuntimeError, KeyError, ValueError, EOFError, OSError) as exc:
        raise WeightsCorrupt(f"cannot load the LivePortrait weights from {layout.root}: {exc}") from exc


def _check_outputs(args: argparse.Namespace) -> tuple[Path | None, Path | None]:
    from engine.fileio import FramesOutput, check_output_file

    out = Path(args.out) if args.out else None
    frames_dir = Path(args.frames_dir) if args.frames_dir else None
    if out is None and frames_dir is None:
        raise BadRequest("nothing to write: pass --out OUT.mp4 and/or --frames-dir DIR")
    if out is not None:
        if out.suffix.lower() not in (".mp4", ".mov", ".mkv"):
            raise BadRequest(f"--out must end in .mp4 (got {out.name})")
        check_output_file(out)
    if frames_dir is not None:
        FramesOutput(frames_dir, bool(getattr(args, "overwrite", False))).check()
    return out, frames_dir


def _body(args: argparse.Namespace, reporter: Reporter) -> dict[str, str]:
    import torch

    from engine.device import auto_batch_size, describe_device, device_peak_mb, select_device, select_precision
    from engine.motion.npz import MotionFileError, load_motion, save_motion
    from engine.render.compose import DrivingMotion, SourceKeypoints, compose_driving
    from engine.render.crop import crop_portrait, load_image_rgb, parse_crop_arg, resize_to_limit
    from engine.render.pasteback import PasteBack
    from engine.render.renderer import render_frames
    from engine.render.timeline import plan_frames
    from engine.render.writers import Mp4Writer, PngSequenceWriter
    from engine.weights import resolve_weights_dir

    t_start = time.monotonic()
    # 0. device first: the hello event (always the first line) names it
    try:
        device = select_device(args.device)
        precision = select_precision(device, args.dtype)
    except EngineError:
        reporter.hello("animate", device="unavailable", dtype=str(args.dtype))
        raise
    reporter.hello("animate", device=describe_device(device), dtype=precision.name,
                   capabilities={"regions": ["all", "exp", "pose", "lip", "eyes"],
                                 "samplers": ["ancestral", "ddim", "dpmpp_2m"],
                                 "outputs": ["mp4", "png"]})
    # 1. validate cheap things first: options, packages, outputs, image, audio, free space, weights
    from engine import preflight

    preflight.check_animate_request(args)
    opts = compose_options(args)
    crop_mode = "none" if args.upstream_cli and args.crop == "auto" else parse_crop_arg(args.crop)
    out, frames_dir = _check_outputs(args)
    image = resize_to_limit(load_image_rgb(args.image))
    wave = None
    if args.audio:
        from engine.audio import SAMPLE_RATE, load_audio
        wave = load_audio(args.audio)
        audio_duration = wave.size / SAMPLE_RATE
    elif args.motion is None:
        raise BadRequest("pass --audio (speech to animate) or --motion (a motion .npz)")
    elif out is not None:
        raise BadRequest("an mp4 needs its soundtrack: pass --audio (or write only --frames-dir)")
    else:
        audio_duration = None
    motion = None
    if args.motion:
        try:
            motion = load_motion(args.motion)
        except MotionFileError as exc:
            raise BadRequest(str(exc)) from None
    duration = audio_duration if audio_duration is not None else (motion.n_frames / motion.fps if motion else None)
    side = (image.shape[1], image.shape[0]) if args.pasteback and crop_mode != "none" else (512, 512)
    preflight.check_animate_space(out, frames_dir, preflight.AnimateSize(
        preflight.estimate_frames(duration, args.fps) or 0, *side))
    layout = resolve_weights_dir(args.weights, reporter)
    if motion is None:  # fail before any heavy work if the motion generator is absent
        layout.require(layout.motion_generator)
        layout.require(layout.motion_template)

    # 2. stage one + source portrait
    reporter.stage_begin("load")
    reporter.progress("load", 0, 2, "file")
    crop = crop_portrait(image, crop_mode, weights_root=layout.root)  # NoFaceError before loading
    reporter.log(f"crop: {crop.method} box={crop.box}")
    stage_one = load_stage_one(layout, device, reporter, animal=opts.animal)
    with torch.inference_mode():
        info = stage_one.extract(crop.image)
    reporter.progress("load", 2, 2, "file")
    reporter.stage_end("load")

    # 3. motion
    if motion is None:
        from engine.commands.motion import motion_options_from_args
        from engine.motion.generate import generate_motion

        motion = generate_motion(layout, wave, motion_options_from_args(args), reporter=reporter,
                                 device=str(device))
        if args.save_motion:
            path = save_motion(args.save_motion, motion)
            reporter.artifact("motion_npz", str(path))
    elif wave is not None and motion.meta.get("audio_sha256"):
        from engine.audio import audio_sha256
        if motion.meta["audio_sha256"] != audio_sha256(wave):
            reporter.warning("motion_audio_mismatch", f"{args.motion} was generated from different audio than "
                                                      f"{args.audio}; lips will not match the soundtrack")
    if audio_duration is None:
        audio_duration = float(motion.meta.get("audio_duration_s", 0.0) or 0.0) or None
    plan = plan_frames(motion, audio_duration_s=audio_duration, fps=args.fps,
                       upstream_timing=args.upstream_timing, max_frames=args.max_frames)
    for note in plan.notes:
        reporter.warning("timeline", note)

    # 4. driving keypoints for every frame (small: N x 21 x 3)
    src = SourceKeypoints.from_info(info)
    with torch.inference_mode():
        x_d = compose_driving(src, DrivingMotion.from_motion(plan.frames, device=src.x_s.device), opts,
                              stitch=stage_one.stitch if opts.stitching else None,
                              reference=DrivingMotion.from_motion(plan.reference, device=src.x_s.device))

    # 5. render, streaming to the writers
    stride = 1
    if getattr(args, "preview", False):  # a sparse subset of the same plan (engine/render/preview.py)
        from engine.render.preview import ContactSheetWriter, contact_sheet_path, preview_stride
        stride = preview_stride(int(x_d.shape[0]))
        reporter.log(f"preview: every {stride}th frame ({len(range(0, int(x_d.shape[0]), stride))} of {x_d.shape[0]})")
        x_d = x_d[::stride]
    out_fps = plan.fps / stride
    paste = PasteBack(image, crop.M_c2o) if (args.pasteback and crop.method != "none") else None
    width, height = paste.size if paste is not None else (512, 512)
    writers: list[Any] = []
    if out is not None:
        writers.append(Mp4Writer(out, out_fps, width, height, Path(args.audio),
                                 audio_max_s=None if args.upstream_timing else audio_duration))
    if frames_dir is not None:
        writers.append(PngSequenceWriter(frames_dir, overwrite=bool(getattr(args, "overwrite", False))))
    if stride > 1:
        writers.append(ContactSheetWriter(contact_sheet_path(out, frames_dir), stride / plan.fps))
    batch = auto_batch_size(device, args.batch)
    reporter.log(f"rendering {int(x_d.shape[0])} frames at {out_fps:g} fps, {width}x{height}, batch {batch}")
    reporter.stage_begin("render")
    with contextlib.ExitStack() as stack:
        for w in writers:
            stack.enter_context(w)
        stats = render_frames(stage_one, info.f_s, info.x_s, x_d, writers, batch=batch, device=device,
                              precision=precision, reporter=reporter, post=paste)
    reporter.stage_end("render")
    outputs: dict[str, str] = {}
    if out is not None:
        outputs["video"] = str(out)
        reporter.artifact("video", str(out))
    if frames_dir is not None:
        outputs["frames_dir"] = str(frames_dir)
        reporter.artifact("frames_dir", str(frames_dir))
    if stride > 1:
        outputs["contact_sheet"] = str(writers[-1].path)
        reporter.artifact("contact_sheet", str(writers[-1].path))
    if args.save_motion and args.motion is None:
        outputs["motion_npz"] = str(args.save_motion)
    total = time.monotonic() - t_start
    video_s = stats.frames / out_fps if out_fps else 0.0
    reporter.log(f"{stats.frames} frames in {total:.1f}s ({total / max(video_s, 1e-9):.2f} s per second of video)")
    dev_mb = device_peak_mb(device)
    if dev_mb is not None:
        reporter.log(f"peak device memory {dev_mb:.0f} MiB")
    return outputs


def run(args: argparse.Namespace) -> int:
    return run_protocol_command("animate", args.progress, lambda rep: _body(args, rep))
