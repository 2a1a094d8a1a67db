"""Pipeline: speech audio → motion .npz. Used by ``engine motion``, ``serve`` and ``bench motion``.

Steps (each one line of :func:`run_motion`; the ``done`` event's ``breakdown`` times them):
  1. runtime: pick the device, send ``hello``;
  2. validate cheap things first: audio file, weights folder and files, output path;
  3. networks: the motion generator from the model cache (loaded once per worker);
  4. audio: decode to 16 kHz mono;
  5. audio features: the audio encoder over all windows in the job's motion precision
     (engine.device.select_motion_precision: bf16 autocast on native-bf16 CPUs for the fast
     samplers, float32 for the exact one or ``--dtype fp32``), cached by the audio's content hash;
  6. sample: the DiT sampler window by window (seeded; the heavy part of a warm take);
  6b. direct: the voice level per frame + the art-direction controls (engine/motion/edit.py);
  7. write the motion .npz atomically.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from engine import preflight
from engine.audio import as_wave, audio_sha256
from engine.fileio import check_output_file
from engine.jobs import MotionJob
from engine.motion.edit import direct_motion, load_run_controls
from engine.motion.npz import save_motion
from engine.pipeline.context import Context
from engine.runner import Done
from engine.contract.protocol import DEFAULT_STEPS, PE_VARIANTS, SAMPLERS
from engine.weights import resolve_weights_dir

if TYPE_CHECKING:   # annotations only: building and dispatching a motion job must not import torch
    import numpy as np
    import torch

    from engine.device import Precision
    from engine.motion.generate import MotionModel
    from engine.weights import WeightsLayout


def import_heavy(ctx: Context) -> None:
    """Import torch and the model code up front so the breakdown shows import cost on its own.

    Deliberately deferred in this file (the function-local imports of engine.device and
    engine.motion.generate): building and dispatching a motion job must not import torch."""
    with ctx.reporter.breakdown.part("import"):
        import torch  # noqa: F401

        import engine.motion.generate  # noqa: F401  (torch, transformers' HuBERT)


def motion_model(ctx: Context, layout: "WeightsLayout", device: "torch.device") -> "MotionModel":
    """The motion generator for (weights folder, device), from the context's cache."""
    from engine.motion.generate import MotionModel

    rep = ctx.reporter
    key = ("motion", str(layout.root.resolve()), str(device), "float32")
    files = [layout.motion_generator, layout.motion_template]

    def load() -> "MotionModel":
        rep.stage_begin("load")
        rep.progress("load", 0, 1, "file")
        model = MotionModel.load(layout, device, breakdown=rep.breakdown)
        rep.progress("load", 1, 1, "file")
        rep.stage_end("load")
        return model

    return ctx.models.get(key, files, load)


def audio_features(ctx: Context, model: "MotionModel", wave: "np.ndarray", precision: "Precision") -> "list[torch.Tensor]":
    """Step 5: per-window audio features in ``precision`` (engine.device.select_motion_precision),
    cached by (model, precision, audio content hash)."""
    rep = ctx.reporter
    key = ("features", str(model.checkpoint_path), str(model.device), precision.name, audio_sha256(wave))

    def compute() -> "list[torch.Tensor]":
        with rep.breakdown.part("encode"):
            rep.stage_begin("audio")
            feats = model.encode_wave(wave, on_chunk=lambda d, n: rep.progress("audio", d, n, "window"),
                                      dtype=precision.compute)
            rep.stage_end("audio")
        return feats

    return ctx.models.features(key, compute)


def run_motion(job: MotionJob, ctx: Context) -> Done:
    """Run the numbered steps above; returns the ``done`` event's ``outputs``."""
    rep = ctx.reporter
    import_heavy(ctx)
    from engine.device import describe_device, select_device, select_motion_precision
    from engine.motion.generate import generate_motion

    opts = job.motion
    device = select_device(job.runtime.device)                                         # 1
    precision = select_motion_precision(device, job.runtime.dtype, opts.sampler)
    rep.hello("motion", device=describe_device(device), dtype=precision.name, sampler=opts.sampler,
              steps=opts.steps if opts.steps is not None else DEFAULT_STEPS.get(opts.sampler),
              cfg_scale=opts.cfg_scale, pe_variant=opts.pe_variant, seed=opts.seed,
              capabilities={"samplers": list(SAMPLERS), "pe_variants": list(PE_VARIANTS)})
    preflight.check_motion_request(job)                                               # 2
    if not Path(job.audio).is_file():
        as_wave(job.audio)  # the AudioError that says why
    layout = resolve_weights_dir(job.weights, rep)
    layout.require(layout.motion_generator)
    layout.require(layout.motion_template)
    out = Path(job.out)
    check_output_file(out)
    controls = load_run_controls(job.controls)  # a bad file fails before any work
    model = motion_model(ctx, layout, device)                                          # 3
    rep.stage_begin("audio")                                                           # 4
    rep.progress("audio", 0, 1, "file")
    with rep.breakdown.part("audio"):
        wave = as_wave(job.audio)
    rep.progress("audio", 1, 1, "file")
    rep.stage_end("audio")
    features = audio_features(ctx, model, wave, precision)                             # 5
    motion = generate_motion(model, wave, opts, reporter=rep, features=features,      # 6
                             dtype=precision.compute)
    motion = direct_motion(motion, controls, wave)                                     # 6b
    with rep.breakdown.part("write"):                                                  # 7
        path = save_motion(out, motion)
    rep.artifact("motion_npz", str(path))
    rep.log(f"{motion.n_frames} frames at {motion.fps:g} fps; sampler {motion.meta['sampler']} "
            f"{int(motion.meta['steps'])} steps, cfg {float(motion.meta['cfg_scale']):g}")
    return Done({"motion_npz": str(path)})
