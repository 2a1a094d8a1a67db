"""``python -m engine motion``: speech audio -> motion ``.npz`` (head pose + expression).

Protocol: JSON-lines v1 (:mod:`engine.protocol`, major 1 / minor 0) on stdout with
``--progress json``; human-readable progress on stderr otherwise. Event sequence:

    hello     {command: "motion", device, dtype, sampler, steps (null = every trained step),
               cfg_scale, pe_variant, seed,
               capabilities: {samplers: [...], pe_variants: [...]}}
    progress  stage "load" (unit file), stage "audio" (unit file),
              stage "motion" (unit window, done/total, eta_s)  - one per window at least
    artifact  {kind: "motion_npz", path}
    done      {outputs: {motion_npz}, timings: {load, audio, motion}, peak_mem}
    (or error {code, message} / cancelled {at})

Defaults: ``--sampler dpmpp_2m`` with 10 steps (fast mode: DPM-Solver++(2M) on the trained
schedule), ``--cfg-scale 2.0`` (upstream README's example), smoothing on, HEAD positional
encoding. ``--sampler ancestral`` (no ``--steps``) is upstream's exact sampler.

Timing: frames are upstream's, unshifted: frame k is at audio time k/25 - 0.08 s (upstream
prepends 1280 silent samples), recorded as ``audio_offset_s = -0.08`` in the motion file.
"""
from __future__ import annotations

import argparse
from pathlib import Path


def add_motion_options(p: argparse.ArgumentParser) -> None:
    """Sampling options shared with ``animate`` (not --fps/--device/--weights: those are per command)."""
    from engine.motion.generate import DEFAULT_SAMPLER

    g = p.add_argument_group("motion sampling")
    g.add_argument("--seed", type=int, default=0, help="seed of the torch generator (default 0)")
    g.add_argument("--sampler", choices=("ancestral", "ddim", "dpmpp_2m"), default=DEFAULT_SAMPLER,
                   help="ancestral = upstream's exact DDPM over every step; ddim / dpmpp_2m = fast "
                        f"deterministic samplers (default {DEFAULT_SAMPLER})")
    g.add_argument("--steps", type=int, default=None,
                   help="denoising steps per window (default: ancestral all N=50, ddim 20, dpmpp_2m 10)")
    g.add_argument("--cfg-scale", type=float, default=2.0, help="classifier-free guidance scale (default 2.0)")
    g.add_argument("--cfg-mode", choices=("incremental", "independent"), default="incremental",
                   help=argparse.SUPPRESS)
    g.add_argument("--smooth", dest="smooth", action="store_true", default=True,
                   help="EMA-smooth head pose as upstream (default)")
    g.add_argument("--no-smooth", dest="smooth", action="store_false", help="keep the raw pose")
    g.add_argument("--pe", dest="pe_variant", choices=("head", "legacy"), default="head",
                   help="positional encoding: head = upstream today (default); legacy = the code the "
                        "official checkpoint was trained with (before JoyVASA commit 74290f6)")


def motion_options_from_args(args: argparse.Namespace):  # -> MotionOptions
    from engine.motion.generate import MotionOptions

    return MotionOptions(seed=args.seed, sampler=args.sampler, steps=args.steps, cfg_scale=args.cfg_scale,
                         cfg_mode=getattr(args, "cfg_mode", "incremental"), smooth=args.smooth,
                         pe_variant=args.pe_variant, fps=getattr(args, "motion_fps", None))


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--audio", required=True, help="speech audio (wav, flac, ogg, mp3, ...)")
    p.add_argument("--out", required=True, help="output motion .npz")
    p.add_argument("--weights", default=None, help="weights folder (default $JOYVASA_WEIGHTS)")
    add_motion_options(p)
    p.add_argument("--fps", dest="motion_fps", type=float, default=None,
                   help="resample to this frame rate (default: the model's 25 fps)")
    p.add_argument("--device", default="auto", help="auto|cpu|cuda|cuda:N|mps (auto: cuda > mps > cpu)")
    p.add_argument("--progress", choices=("text", "json"), default="text",
                   help="json: protocol-v1 events on stdout (for the Blender add-on)")


def run(args: argparse.Namespace) -> int:
    from engine.runner import run_protocol_command

    def body(reporter) -> dict[str, str]:  # type: ignore[no-untyped-def]
        from engine.device import describe_device, select_device
        from engine.motion.generate import MotionOptions, effective_steps, generate_motion  # noqa: F401
        from engine.motion.npz import save_motion
        from engine.sampling import DEFAULT_STEPS, SAMPLERS
        from engine.weights import resolve_weights_dir

        from engine import preflight

        device = select_device(args.device)
        reporter.hello("motion", device=describe_device(device), dtype="float32", sampler=args.sampler,
                       steps=args.steps if args.steps is not None else DEFAULT_STEPS.get(args.sampler),
                       cfg_scale=args.cfg_scale, pe_variant=args.pe_variant,
                       seed=args.seed, capabilities={"samplers": list(SAMPLERS), "pe_variants": ["head", "legacy"]})
        preflight.check_motion_request(args)
        options = motion_options_from_args(args)
        out = Path(args.out)
        layout = resolve_weights_dir(args.weights, reporter)
        motion = generate_motion(layout, args.audio, options, reporter=reporter, device=str(device))
        path = save_motion(out, motion)
        reporter.artifact("motion_npz", str(path))
        reporter.log(f"{motion.n_frames} frames at {motion.fps:g} fps; sampler {motion.meta['sampler']} "
                     f"{int(motion.meta['steps'])} steps, cfg {float(motion.meta['cfg_scale']):g}")
        return {"motion_npz": str(path)}

    return run_protocol_command("motion", args.progress, body)
