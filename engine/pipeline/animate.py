"""Pipeline: portrait + speech (or a motion file) → mp4 and/or PNG sequence.

Used by ``engine animate``, ``serve`` and ``bench animate``. Steps of :func:`run_animate`:
  1. runtime: device and the ONE precision decision, ``hello``;
  2. validate cheap things first: options, outputs, image, audio, motion file, weights;
  3. framing: crop the portrait (fails with no_face before any network loads);
  4. networks: stage one in the job's precision, from the model cache;
  5. source: F and M on the cropped portrait;
  6. motion: generated from the audio (motion pipeline steps 3-6) or read from ``motion_file``;
  6b. direct: the art-direction controls (engine/motion/edit.py; region/strengths are shorthands);
  7. timeline: which motion frame drives which output frame;
  8. driving keypoints for every frame (engine/render/compose.py);
  9. render: batched W+G streamed to the writers, pasted back into the full portrait.

Where later features plug in: a motion edit goes between 6 and 7 (it changes the MotionData),
a crop option changes step 3 (RenderConfig.crop), a preview is a cheaper step 9 (fewer frames,
smaller writer), preflight checks extend step 2. Keep the logic in its own module and add one
call here.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine import preflight
from engine.audio import audio_sha256
from engine.errors import (OFFICIAL_WEIGHTS_HINT, BadRequest, EngineError, WeightsCorrupt, WeightsMissing)
from engine.fileio import FramesOutput, atomic_path, check_output_file
from engine.framing import frame
from engine.jobs import AnimateJob, RenderConfig
from engine.motion.edit import direct_motion, load_run_controls
from engine.pipeline.context import Context
from engine.pipeline.crop import framing_options, report_framing
from engine.pipeline.edit import read_motion
from engine.pipeline.motion import audio_features, motion_model
from engine.contract.protocol import REGIONS, SAMPLERS
from engine.render.canvas import paste_canvas
from engine.runner import Done, NullReporter, Reporter
from engine.weights import resolve_weights_dir

if TYPE_CHECKING:   # annotations only: building and dispatching an animate job must not import torch
    import numpy as np
    import torch

    from engine.contract.npz_reader import MotionData
    from engine.device import Precision
    from engine.framing.crop import Framing
    from engine.models.stage_one import SourceInfo, StageOne
    from engine.motion.controls import Controls
    from engine.render.compose import ComposeOptions
    from engine.render.renderer import RenderStats
    from engine.render.timeline import FramePlan
    from engine.weights import WeightsLayout


def compose_options(render: RenderConfig) -> ComposeOptions:
    """RenderConfig → ComposeOptions (``upstream_cli`` = upstream inference.py's defaults)."""
    from engine.render.compose import ComposeOptions

    try:  # region and strengths are not here: they are controls, applied to the motion (step 6b)
        if render.upstream_cli:
            return ComposeOptions.upstream_cli(animal=render.animal)
        return ComposeOptions(relative=render.relative, expression_friendly=True, stitching=render.stitching,
                              driving_multiplier=render.driving_multiplier, animal=render.animal,
                              normalize_lip=render.normalize_lip)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None


def load_stage_one(layout: WeightsLayout, device: torch.device | str, precision: Precision,
                   reporter: Reporter | None = None, animal: bool = False, animal_models: str = "auto") -> StageOne:
    """StageOne in ``precision`` from the weights folder; bad files become WeightsMissing/WeightsCorrupt.

    Animals: LivePortrait's v1.1 animal models when present, else v1 (``--animal-models`` overrides)."""
    from engine.models.stage_one import StageOne
    from engine.weights import ANIMAL_MODEL_DIRS, animal_layout, choose_animal_models

    rep = reporter or NullReporter()
    use = layout
    if animal:
        version = choose_animal_models(layout.root, animal_models)
        if version is not None:
            use = animal_layout(layout, version)
            rep.log(f"animal models: {version} ({ANIMAL_MODEL_DIRS[version]})")
        else:
            rep.warning("animal_weights_missing", "liveportrait_animals/ not found: using the human "
                                                  "LivePortrait weights with the animal pipeline")
    for name, path in use.liveportrait_files().items():
        if not Path(path).is_file():
            what = "is a folder, expected a file" if Path(path).is_dir() else "is missing"
            raise WeightsMissing(f"{name}: {path} {what}. {OFFICIAL_WEIGHTS_HINT}")
    try:
        return StageOne.load(use, device, dtype=precision.compute)
    except (WeightsMissing, WeightsCorrupt):
        raise
    except (RuntimeError, KeyError, ValueError, EOFError, OSError) as exc:
        raise WeightsCorrupt(f"cannot load the LivePortrait weights from {layout.root}: {exc}") from exc


def stage_one(ctx: Context, layout: WeightsLayout, device: torch.device, precision: Precision, animal: bool,
              animal_models: str = "auto") -> StageOne:
    """Step 4 through the cache: key (weights folder, device, precision, human/animal and which animal models)."""
    from engine.weights import choose_animal_models

    rep = ctx.reporter
    kind = f"animal-{choose_animal_models(layout.root, animal_models)}" if animal else "human"
    key = ("stage_one", str(layout.root.resolve()), str(device), precision.name, kind)

    def load() -> StageOne:
        with rep.breakdown.part("load"):
            return load_stage_one(layout, device, precision, rep, animal=animal, animal_models=animal_models)

    return ctx.models.get(key, list(layout.liveportrait_files().values()), load)


def _check_outputs(job: AnimateJob) -> tuple[Path | None, Path | None]:
    out = Path(job.out) if job.out else None           # names and suffixes: checked by the job type
    frames_dir = Path(job.frames_dir) if job.frames_dir else None
    if out is not None:
        check_output_file(out)
    if frames_dir is not None:
        FramesOutput(frames_dir, job.overwrite).check()
    return out, frames_dir


@dataclass
class Prepared:
    """What step 2 checked and read, before any network loads."""

    out: Path | None
    frames_dir: Path | None
    codec: str | None                 # the H.264 encoder (None: no mp4)
    original: np.ndarray              # the portrait file at full resolution (RGB uint8)
    canvas: np.ndarray                # ≤1280 px paste-back canvas (upstream) ...
    canvas_scale: tuple[float, float]  # ... canvas pixel = original pixel × (fx, fy)
    wave: np.ndarray | None           # 16 kHz speech, or None
    audio_duration: float | None
    motion: MotionData | None         # the given motion file, or None (generate it)
    layout: WeightsLayout             # the weights folder
    controls: Controls                # --controls + the region/strength shorthands
    opts: ComposeOptions


def import_heavy(rep: Reporter) -> None:
    """Import torch and the render code up front so the breakdown shows the import cost on its own.

    Deliberately deferred in this file (function-local imports below): building and dispatching an
    animate job must not import torch; these modules are loaded here, inside the job."""
    with rep.breakdown.part("import"):
        import torch  # noqa: F401

        import engine.render.compose  # noqa: F401
        import engine.render.renderer  # noqa: F401
        import engine.render.writers  # noqa: F401


def runtime(job: AnimateJob, rep: Reporter) -> tuple[torch.device, Precision]:
    """Step 1: device and the one precision decision; ``hello`` is the first event."""
    from engine.device import describe_device, select_device, select_precision

    try:
        device = select_device(job.runtime.device)
        precision = select_precision(device, job.runtime.dtype)
    except EngineError:
        rep.hello("animate", device="unavailable", dtype=job.runtime.dtype)
        raise
    rep.hello("animate", device=describe_device(device), dtype=precision.name,
              capabilities={"regions": list(REGIONS), "samplers": list(SAMPLERS), "outputs": ["mp4", "png"]})
    return device, precision


def prepare(job: AnimateJob, rep: Reporter) -> Prepared:
    """Step 2: packages, outputs, controls, codec, image, audio, motion file, free space, weights."""
    from engine.audio import SAMPLE_RATE, load_audio
    from engine.render.writers import pick_video_codec

    render = job.render
    preflight.check_animate_request(job)
    opts = compose_options(render)
    controls = load_run_controls(job.controls, **_shorthands(render))
    out, frames_dir = _check_outputs(job)
    codec = pick_video_codec(render.codec) if out is not None else None   # checked before any network
    original = frame.load_picture(job.image)          # the file at full resolution: framing reports its pixels
    canvas, fx, fy = paste_canvas(original)
    wave, audio_duration = None, None
    if job.audio:
        with rep.breakdown.part("audio"):
            wave = load_audio(job.audio)
        audio_duration = wave.size / SAMPLE_RATE
    motion = read_motion(job.motion_file) if job.motion_file else None
    duration = audio_duration if audio_duration is not None else (motion.n_frames / motion.fps if motion else None)
    side = (canvas.shape[1], canvas.shape[0]) if render.pasteback and render.crop_mode != "none" else (512, 512)
    preflight.check_animate_space(out, frames_dir, preflight.AnimateSize(
        preflight.estimate_frames(duration, render.fps) or 0, *side))
    layout = resolve_weights_dir(job.weights, rep)
    if motion is None:  # fail before any heavy work if the motion generator is absent
        layout.require(layout.motion_generator)
        layout.require(layout.motion_template)
    return Prepared(out, frames_dir, codec, original, canvas, (fx, fy), wave, audio_duration, motion, layout,
                    controls, opts)


def _shorthands(render: RenderConfig) -> dict[str, Any]:
    return {"pose_strength": render.pose_strength, "exp_strength": render.exp_strength, "region": render.region}


def source(ctx: Context, job: AnimateJob, p: Prepared, device: torch.device,
           precision: Precision) -> tuple[Framing, StageOne, SourceInfo]:
    """Steps 3-5: framing (no_face before any network loads), stage one, F and M of the crop."""
    import torch

    rep, render = ctx.reporter, job.render
    rep.stage_begin("load")
    rep.progress("load", 0, 2, "file")
    crop = frame.frame_portrait(p.original, framing_options(render, p.layout.root))
    report_framing(rep, crop)                       # the `framing` event: the same object as `engine crop`
    s1 = stage_one(ctx, p.layout, device, precision, render.animal, render.animal_models)
    with torch.inference_mode():
        info = s1.extract(crop.image)
    rep.progress("load", 2, 2, "file")
    rep.stage_end("load")
    return crop, s1, info


def motion_for(ctx: Context, job: AnimateJob, p: Prepared, device: torch.device) -> MotionData:
    """Steps 6-6b: the motion (generated, or the given file) with the art-direction controls applied."""
    from engine.motion.controls import ControlsError
    from engine.motion.generate import generate_motion
    from engine.motion.npz import save_motion

    rep = ctx.reporter
    if p.motion is None:
        from engine.device import select_motion_precision

        model = motion_model(ctx, p.layout, device)
        mp = select_motion_precision(device, job.runtime.dtype, job.motion.sampler)
        motion = generate_motion(model, p.wave, job.motion, reporter=rep,
                                 features=audio_features(ctx, model, p.wave, mp), dtype=mp.compute)
        motion = direct_motion(motion, p.controls, p.wave)
        if job.save_motion:
            rep.artifact("motion_npz", str(save_motion(job.save_motion, motion)))
        return motion
    motion = p.motion
    if p.wave is not None and motion.meta.get("audio_sha256") and motion.meta["audio_sha256"] != audio_sha256(p.wave):
        rep.warning("motion_audio_mismatch", f"{job.motion_file} was generated from different audio than "
                                             f"{job.audio}; lips will not match the soundtrack")
    controls = p.controls                           # a given file's controls apply to its raw motion
    if not job.controls and motion.controls:        # no --controls: keep the file's own edits
        controls = load_run_controls(None, **_shorthands(job.render), recorded=motion.controls)
    try:
        return direct_motion(motion, controls, p.wave)
    except ControlsError as exc:
        raise BadRequest(f"{job.motion_file}: {exc}") from None


def timeline(job: AnimateJob, motion: MotionData, audio_duration: float | None, rep: Reporter) -> FramePlan:
    """Step 7: which motion frame drives which output frame."""
    from engine.render.timeline import plan_frames

    plan = plan_frames(motion, audio_duration_s=audio_duration, fps=job.render.fps,
                       upstream_timing=job.render.upstream_timing, max_frames=job.render.max_frames)
    for note in plan.notes:
        rep.warning("timeline", note)
    return plan


def driving(p: Prepared, crop: Framing, s1: StageOne, info: SourceInfo, plan: FramePlan,
            rep: Reporter) -> torch.Tensor:
    """Step 8: driving keypoints for every frame (small: N x 21 x 3)."""
    import torch

    from engine.render.compose import DrivingMotion, SourceKeypoints, compose_driving, lip_normalization

    src = SourceKeypoints.from_info(info)
    with torch.inference_mode():
        lip_delta, lip_note = lip_normalization(p.opts, crop.lip_open, s1.S["lip"], src.x_s)
        rep.log(lip_note)
        return compose_driving(src, DrivingMotion.from_motion(plan.frames, device=src.x_s.device), p.opts,
                               stitch=s1.stitch if p.opts.stitching else None,
                               reference=DrivingMotion.from_motion(plan.reference, device=src.x_s.device),
                               lip_delta=lip_delta)


def render_video(job: AnimateJob, p: Prepared, crop: Framing, s1: StageOne, info: SourceInfo, x_d: torch.Tensor,
                 plan: FramePlan, device: torch.device, precision: Precision, audio_duration: float | None,
                 rep: Reporter) -> tuple[dict[str, str], RenderStats, float, float | None]:
    """Step 9: batched W+G streamed to the writers, pasted back into the full portrait (preview: a
    sparse subset of the same plan, engine/render/preview.py). Returns (outputs, render stats,
    output fps, the batch's memory budget in MiB or None)."""
    from engine.render.preview import ContactSheetWriter, contact_sheet_path, preview_stride
    from engine.render.renderer import plan_render, render_frames
    from engine.render.writers import Mp4Writer, PngSequenceWriter

    render, out, frames_dir = job.render, p.out, p.frames_dir
    stride = preview_stride(int(x_d.shape[0])) if job.preview else 1
    if stride > 1:
        rep.log(f"preview: every {stride}th frame ({len(range(0, int(x_d.shape[0]), stride))} of {x_d.shape[0]})")
        x_d = x_d[::stride]
    out_fps = plan.fps / stride
    pasting = render.pasteback and crop.method != "none"
    setup = plan_render(p.canvas if pasting else None, crop.M_c2o_scaled(*p.canvas_scale) if pasting else None,
                        device, precision.name, render.batch, sequential=render.sequential)
    width, height = setup.size
    writers: list[Any] = []
    if out is not None:
        writers.append(Mp4Writer(out, out_fps, width, height, Path(job.audio), codec=render.codec,
                                 audio_max_s=None if render.upstream_timing else audio_duration))
    if frames_dir is not None:
        writers.append(PngSequenceWriter(frames_dir, overwrite=job.overwrite))
    if stride > 1:
        writers.append(ContactSheetWriter(contact_sheet_path(out, frames_dir), stride / plan.fps))
    rep.log(f"rendering {int(x_d.shape[0])} frames at {out_fps:g} fps, {width}x{height}, {precision.name}, "
            f"{setup.describe()}" + (f", {p.codec}" if p.codec else ""))
    rep.stage_begin("render")
    with rep.breakdown.part("render"), contextlib.ExitStack() as stack:
        for w in writers:
            stack.enter_context(w)
        stats = render_frames(s1, info.f_s, info.x_s, x_d, writers, batch=setup.batch.batch, device=device,
                              reporter=rep, post=setup.post, device_post=setup.device_post,
                              overlap=setup.overlap, adapt_batch=setup.adapt_batch)
    rep.stage_end("render")
    rep.log(stats.summary())
    outputs: dict[str, str] = {}
    for kind, path in (("video", out), ("frames_dir", frames_dir),
                       ("contact_sheet", writers[-1].path if stride > 1 else None)):
        if path is not None:
            outputs[kind] = str(path)
            rep.artifact(kind, str(path))
    return outputs, stats, out_fps, setup.batch.budget_mb


def save_driving(job: AnimateJob, x_d: torch.Tensor, rep: Reporter) -> dict[str, str]:
    """What the renderer drove the portrait with, frame by frame (``--save-driving``), atomically."""
    import numpy as np

    if not job.save_driving:
        return {}
    with atomic_path(Path(job.save_driving)) as tmp, open(tmp, "wb") as fh:
        np.save(fh, x_d.detach().float().cpu().numpy())
    rep.artifact("driving_keypoints", str(job.save_driving))
    return {"driving_keypoints": str(job.save_driving)}


def report_speed(rep: Reporter, stats: RenderStats, out_fps: float, t_start: float, device: torch.device,
                 budget: float | None) -> None:
    """The closing log lines: seconds per second of video, peak device memory."""
    from engine.device import device_peak_mb, device_peak_reserved_mb

    total = time.monotonic() - t_start
    video_s = stats.frames / out_fps if out_fps else 0.0
    rep.log(f"{stats.frames} frames in {total:.1f}s ({total / max(video_s, 1e-9):.2f} s per second of video)")
    dev_mb = device_peak_mb(device)
    if dev_mb is not None:
        rep.log(f"peak device memory {dev_mb:.0f} MiB allocated, {device_peak_reserved_mb(device):.0f} MiB reserved"
                + (f" (batch budget {budget:.0f} MiB)" if budget else ""))


def run_animate(job: AnimateJob, ctx: Context) -> Done:
    """Run the numbered steps above; returns the ``done`` event's ``outputs``."""
    rep, t_start = ctx.reporter, time.monotonic()
    import_heavy(rep)
    device, precision = runtime(job, rep)                                    # 1
    p = prepare(job, rep)                                                    # 2
    crop, s1, info = source(ctx, job, p, device, precision)                  # 3-5
    motion = motion_for(ctx, job, p, device)                                 # 6-6b
    audio_duration = (p.audio_duration if p.audio_duration is not None
                      else float(motion.meta.get("audio_duration_s", 0.0) or 0.0) or None)
    plan = timeline(job, motion, audio_duration, rep)                        # 7
    x_d = driving(p, crop, s1, info, plan, rep)                              # 8
    outputs, stats, out_fps, budget = render_video(job, p, crop, s1, info, x_d, plan, device,  # 9
                                                   precision, audio_duration, rep)
    outputs.update(save_driving(job, x_d, rep))
    if job.save_motion and job.motion_file is None:
        outputs["motion_npz"] = str(job.save_motion)
    report_speed(rep, stats, out_fps, t_start, device, budget)
    return Done(outputs)
