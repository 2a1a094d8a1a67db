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
from pathlib import Path
from typing import Any

from engine.errors import (OFFICIAL_WEIGHTS_HINT, BadRequest, EngineError, WeightsCorrupt, WeightsMissing)
from engine.jobs import AnimateJob, RenderConfig
from engine.pipeline.context import Context
from engine.protocol import REGIONS, SAMPLERS


def compose_options(render: RenderConfig) -> Any:
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


def load_stage_one(layout: Any, device: Any, precision: Any, reporter: Any = None, animal: bool = False,
                   animal_models: str = "auto") -> Any:
    """StageOne in ``precision`` from the weights folder; bad files become WeightsMissing/WeightsCorrupt.

    Animals: LivePortrait's v1.1 animal models when present, else v1 (``--animal-models`` overrides)."""
    from engine.models.stage_one import StageOne
    from engine.weights import ANIMAL_MODEL_DIRS, animal_layout, choose_animal_models

    use = layout
    if animal:
        version = choose_animal_models(layout.root, animal_models)
        if version is not None:
            use = animal_layout(layout, version)
            if reporter is not None:
                reporter.log(f"animal models: {version} ({ANIMAL_MODEL_DIRS[version]})")
        elif reporter is not None:
            reporter.warning("animal_weights_missing", "liveportrait_animals/ not found: using the human "
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


def stage_one(ctx: Context, layout: Any, device: Any, precision: Any, animal: bool,
              animal_models: str = "auto") -> Any:
    """Step 4 through the cache: key (weights folder, device, precision, human/animal and which animal models)."""
    from engine.weights import choose_animal_models

    rep = ctx.reporter
    kind = f"animal-{choose_animal_models(layout.root, animal_models)}" if animal else "human"
    key = ("stage_one", str(layout.root.resolve()), str(device), precision.name, kind)

    def load() -> Any:
        with rep.breakdown.part("load"):
            return load_stage_one(layout, device, precision, rep, animal=animal, animal_models=animal_models)

    return ctx.models.get(key, list(layout.liveportrait_files().values()), load)


def _check_outputs(job: AnimateJob) -> tuple[Path | None, Path | None]:
    from engine.fileio import FramesOutput, check_output_file

    out = Path(job.out) if job.out else None           # names and suffixes: checked by the job type
    frames_dir = Path(job.frames_dir) if job.frames_dir else None
    if out is not None:
        check_output_file(out)
    if frames_dir is not None:
        FramesOutput(frames_dir, job.overwrite).check()
    return out, frames_dir


def run_animate(job: AnimateJob, ctx: Context) -> dict[str, str]:
    """Run the numbered steps above; returns the ``done`` event's ``outputs``."""
    rep = ctx.reporter
    with rep.breakdown.part("import"):
        import torch

        from engine.device import (describe_device, device_peak_mb, select_device, select_motion_precision,
                                   select_precision)
        from engine.motion.npz import MotionFileError, load_motion, save_motion
        from engine.render.compose import DrivingMotion, SourceKeypoints, compose_driving, lip_normalization
        from engine.pipeline.crop import framing_options, report_framing
        from engine.framing.frame import frame_portrait
        from engine.framing.frame import load_picture
        from engine.render.canvas import paste_canvas
        from engine.render.renderer import plan_render, render_frames
        from engine.render.timeline import plan_frames
        from engine.render.writers import Mp4Writer, PngSequenceWriter, pick_video_codec
        from engine.weights import resolve_weights_dir

    render = job.render
    t_start = time.monotonic()
    # 1. runtime: device and the one precision decision; hello is the first event
    try:
        device = select_device(job.runtime.device)
        precision = select_precision(device, job.runtime.dtype)
    except EngineError:
        rep.hello("animate", device="unavailable", dtype=job.runtime.dtype)
        raise
    rep.hello("animate", device=describe_device(device), dtype=precision.name,
              capabilities={"regions": list(REGIONS), "samplers": list(SAMPLERS), "outputs": ["mp4", "png"]})
    # 2. validate cheap things first: options, packages, outputs, image, audio, free space, weights
    from engine import preflight

    preflight.check_animate_request(job)
    opts = compose_options(render)
    from engine.motion.controls import ControlsError
    from engine.motion.edit import direct_motion, load_run_controls

    shorthands = {"pose_strength": render.pose_strength, "exp_strength": render.exp_strength,
                  "region": render.region}
    controls = load_run_controls(job.controls, **shorthands)   # --controls + the region/strength shorthands
    crop_mode = render.crop_mode
    out, frames_dir = _check_outputs(job)
    codec = pick_video_codec(render.codec) if out is not None else None   # --codec, checked before any network
    original = load_picture(job.image)          # the file at full resolution: framing reports its pixels
    image, canvas_fx, canvas_fy = paste_canvas(original)   # ≤1280 px paste-back canvas (upstream)
    wave, audio_duration = None, None
    if job.audio:
        from engine.audio import SAMPLE_RATE, load_audio

        with rep.breakdown.part("audio"):
            wave = load_audio(job.audio)
        audio_duration = wave.size / SAMPLE_RATE
    motion = None
    if job.motion_file:
        try:
            motion = load_motion(job.motion_file)
        except MotionFileError as exc:
            raise BadRequest(str(exc)) from None
    duration = audio_duration if audio_duration is not None else (motion.n_frames / motion.fps if motion else None)
    side = (image.shape[1], image.shape[0]) if render.pasteback and crop_mode != "none" else (512, 512)
    preflight.check_animate_space(out, frames_dir, preflight.AnimateSize(
        preflight.estimate_frames(duration, render.fps) or 0, *side))
    layout = resolve_weights_dir(job.weights, rep)
    if motion is None:  # fail before any heavy work if the motion generator is absent
        layout.require(layout.motion_generator)
        layout.require(layout.motion_template)

    # 3. framing (NoFaceError before loading any network)
    rep.stage_begin("load")
    rep.progress("load", 0, 2, "file")
    crop = frame_portrait(original, framing_options(render, layout.root))
    report_framing(rep, crop)                       # the `framing` event: the same object as `engine crop`
    # 4. networks in the job's precision
    s1 = stage_one(ctx, layout, device, precision, render.animal, render.animal_models)
    # 5. source portrait
    with torch.inference_mode():
        info = s1.extract(crop.image)
    rep.progress("load", 2, 2, "file")
    rep.stage_end("load")

    # 6. motion
    if motion is None:
        from engine.motion.generate import generate_motion
        from engine.pipeline.motion import audio_features, motion_model

        model = motion_model(ctx, layout, device)
        mp = select_motion_precision(device, job.runtime.dtype, job.motion.sampler)
        motion = generate_motion(layout, wave, job.motion, reporter=rep, device=str(device), model=model,
                                 features=audio_features(ctx, model, wave, mp), dtype=mp.compute)
        motion = direct_motion(motion, controls, wave)                                  # 6b
        if job.save_motion:
            path = save_motion(job.save_motion, motion)
            rep.artifact("motion_npz", str(path))
    elif wave is not None and motion.meta.get("audio_sha256"):
        from engine.audio import audio_sha256
        if motion.meta["audio_sha256"] != audio_sha256(wave):
            rep.warning("motion_audio_mismatch", f"{job.motion_file} was generated from different audio than "
                                                 f"{job.audio}; lips will not match the soundtrack")
    if job.motion_file:                            # 6b: a given file's controls apply to its raw motion
        if not job.controls and motion.controls:   # no --controls: keep the file's own edits
            controls = load_run_controls(None, **shorthands, recorded=motion.controls)
        try:
            motion = direct_motion(motion, controls, wave)
        except ControlsError as exc:
            raise BadRequest(f"{job.motion_file}: {exc}") from None
    if audio_duration is None:
        audio_duration = float(motion.meta.get("audio_duration_s", 0.0) or 0.0) or None
    # 7. timeline
    plan = plan_frames(motion, audio_duration_s=audio_duration, fps=render.fps,
                       upstream_timing=render.upstream_timing, max_frames=render.max_frames)
    for note in plan.notes:
        rep.warning("timeline", note)

    # 8. driving keypoints for every frame (small: N x 21 x 3)
    src = SourceKeypoints.from_info(info)
    with torch.inference_mode():
        lip_delta, lip_note = lip_normalization(opts, crop.lip_open, s1.S["lip"], src.x_s)
        rep.log(lip_note)
        x_d = compose_driving(src, DrivingMotion.from_motion(plan.frames, device=src.x_s.device), opts,
                              stitch=s1.stitch if opts.stitching else None,
                              reference=DrivingMotion.from_motion(plan.reference, device=src.x_s.device),
                              lip_delta=lip_delta)

    # 9. render, streaming to the writers (preview: a sparse subset of the same plan, engine/render/preview.py)
    stride = 1
    if job.preview:
        from engine.render.preview import ContactSheetWriter, contact_sheet_path, preview_stride
        stride = preview_stride(int(x_d.shape[0]))
        rep.log(f"preview: every {stride}th frame ({len(range(0, int(x_d.shape[0]), stride))} of {x_d.shape[0]})")
        x_d = x_d[::stride]
    out_fps = plan.fps / stride
    pasting = render.pasteback and crop.method != "none"
    setup = plan_render(image if pasting else None, crop.M_c2o_scaled(canvas_fx, canvas_fy) if pasting else None,
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
            f"{setup.describe()}" + (f", {codec}" if codec else ""))
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
    if out is not None:
        outputs["video"] = str(out)
        rep.artifact("video", str(out))
    if frames_dir is not None:
        outputs["frames_dir"] = str(frames_dir)
        rep.artifact("frames_dir", str(frames_dir))
    if stride > 1:
        outputs["contact_sheet"] = str(writers[-1].path)
        rep.artifact("contact_sheet", str(writers[-1].path))
    if job.save_driving:                           # what the renderer drove the portrait with, frame by frame
        import numpy as np

        from engine.fileio import atomic_path
        with atomic_path(Path(job.save_driving)) as tmp, open(tmp, "wb") as fh:
            np.save(fh, x_d.detach().float().cpu().numpy())
        outputs["driving_keypoints"] = str(job.save_driving)
        rep.artifact("driving_keypoints", str(job.save_driving))
    if job.save_motion and job.motion_file is None:
        outputs["motion_npz"] = str(job.save_motion)
    total = time.monotonic() - t_start
    video_s = stats.frames / out_fps if out_fps else 0.0
    rep.log(f"{stats.frames} frames in {total:.1f}s ({total / max(video_s, 1e-9):.2f} s per second of video)")
    dev_mb = device_peak_mb(device)
    if dev_mb is not None:
        from engine.device import device_peak_reserved_mb
        budget = setup.batch.budget_mb
        rep.log(f"peak device memory {dev_mb:.0f} MiB allocated, {device_peak_reserved_mb(device):.0f} MiB reserved"
                + (f" (batch budget {budget:.0f} MiB)" if budget else ""))
    return outputs
