"""``python -m engine motion``: speech audio -> motion ``.npz`` (head pose + expression).

Parse options -> :class:`engine.jobs.MotionJob` -> :func:`engine.pipeline.motion.run_motion`.

Protocol: JSON-lines v1 (:mod:`engine.contract.protocol`) on stdout with
``--progress json``; human-readable progress on stderr otherwise. Event sequence:

    hello     {command: "motion", device, dtype, sampler, steps (null = every trained step),
               cfg_scale, pe_variant, seed,
               capabilities: {samplers: [...], pe_variants: [...]}}
    progress  stage "load" (unit file), stage "audio" (unit file),
              stage "motion" (unit window, done/total, eta_s)  - one per window at least
    artifact  {kind: "motion_npz", path}
    done      {outputs: {motion_npz}, timings: {load, audio, motion},
               breakdown: {startup, import, load, construct, audio, encode, sample, write}, peak_mem}
    (or error {code, message} / cancelled {at})

Defaults: ``--sampler dpmpp_2m`` with 10 steps (fast mode: DPM-Solver++(2M) on the trained
schedule), ``--cfg-scale 2.0`` (upstream README's example), smoothing on, HEAD positional
encoding. ``--sampler ancestral`` (no ``--steps``) is upstream's exact sampler.

Timing: frames are upstream's, unshifted: frame k is at audio time k/25 - 0.08 s (upstream
prepends 1280 silent samples), recorded as ``audio_offset_s = -0.08`` in the motion file.
"""
from __future__ import annotations

import argparse

from engine.pipeline import run_pipeline
from engine.jobs import MotionJob
from engine.pipeline.context import Context
from engine.contract.protocol import DEFAULT_SAMPLER, DEFAULT_STEPS, DTYPES, PE_VARIANTS, SAMPLERS
from engine.runner import run_protocol_command


def add_motion_options(p: argparse.ArgumentParser) -> None:
    """Sampling options shared with ``animate`` (not --fps/--device/--weights: those are per command)."""
    steps_help = ", ".join(f"{k} {v if v is not None else 'all N=50'}" for k, v in DEFAULT_STEPS.items())
    g = p.add_argument_group("motion sampling")
    g.add_argument("--seed", type=int, default=0, help="seed of the torch generator (default 0)")
    g.add_argument("--sampler", choices=SAMPLERS, default=DEFAULT_SAMPLER,
                   help="ancestral = upstream's exact DDPM over every step; ddim / dpmpp_2m = fast "
                        f"deterministic samplers (default {DEFAULT_SAMPLER})")
    g.add_argument("--steps", type=int, default=None, help=f"denoising steps per window (default: {steps_help})")
    g.add_argument("--cfg-scale", type=float, default=2.0, help="classifier-free guidance scale (default 2.0)")
    g.add_argument("--cfg-mode", choices=("incremental", "independent"), default="incremental",
                   help=argparse.SUPPRESS)
    g.add_argument("--smooth", dest="smooth", action="store_true", default=True,
                   help="EMA-smooth head pose as upstream (default)")
    g.add_argument("--no-smooth", dest="smooth", action="store_false", help="keep the raw pose")
    g.add_argument("--pe", choices=PE_VARIANTS, default="head",
                   help="positional encoding: head = upstream today (default); legacy = the code the "
                        "official checkpoint was trained with (before JoyVASA commit 74290f6)")


def add_runtime_options(p: argparse.ArgumentParser, dtype_help: str) -> None:
    """``--device`` and ``--dtype`` (motion and animate): the job's one precision decision."""
    p.add_argument("--device", default="auto", help="auto|cpu|cuda|cuda:N|mps (auto: cuda > mps > cpu)")
    p.add_argument("--dtype", default="auto", metavar="|".join(DTYPES), help=dtype_help)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--audio", required=True, help="speech audio (wav, flac, ogg, mp3, ...)")
    p.add_argument("--out", required=True, help="output motion .npz")
    p.add_argument("--weights", default=None, help="weights folder (default $JOYVASA_WEIGHTS)")
    add_motion_options(p)
    p.add_argument("--fps", type=float, default=None,
                   help="resample to this frame rate (default: the model's 25 fps)")
    add_runtime_options(p, "precision of the motion networks (bf16, fp16, fp32 also accepted; default auto: "
                           "bfloat16 on CPUs with native bf16 for the fast samplers, float32 for --sampler "
                           "ancestral and elsewhere; fp32 = upstream's numbers)")
    p.add_argument("--controls", default=None,
                   help="art-direction controls .json applied to the sampled motion (docs: art direction)")
    p.add_argument("--progress", choices=("text", "json"), default="text",
                   help="json: protocol-v1 events on stdout (for the Blender add-on)")


def run(args: argparse.Namespace) -> int:
    return run_protocol_command("motion", args.progress,
                                lambda rep: run_pipeline(MotionJob.from_args(args), Context(rep)))
