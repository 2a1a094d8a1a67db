"""Pipeline: a live session -> ``live_*`` events, network outputs, and a take (WAV + motion .npz).

Used by ``engine live`` (file or microphone) and by the worker's ``live_start`` (any source, with
``push_pcm`` feeding a ``pcm`` session). Steps (each one line of :func:`run_live`):
  1. runtime: pick the device and precision, send ``hello``;
  2. validate cheap things first: the source, weights, both output paths, controls, outputs;
  3. networks: the motion generator from the model cache (the worker keeps it warm);
  4. the streaming sampler (engine/live/stream.py) for (hop, lookahead, schedule, seed, ...);
  5. open the source and the network outputs, run the session until its audio ends;
  6. write the captured WAV and the motion file atomically (both or neither).
A cancel writes nothing; a source error (a lost microphone) writes nothing and says so.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from engine.audio import as_wave
from engine.errors import BadRequest
from engine.fileio import check_output_file
from engine.jobs import LiveJob, parse_host_port
from engine.motion.edit import load_run_controls
from engine.pipeline.context import Context
from engine.pipeline.motion import import_heavy, motion_model
from engine.runner import Done, Reporter
from engine.weights import resolve_weights_dir

if TYPE_CHECKING:   # annotations only: building and dispatching a live job must not import torch
    from engine.contract.npz_reader import MotionData
    from engine.device import Precision
    from engine.live.session import LiveSession
    from engine.live.sources import AudioSource, PcmSource
    from engine.live.stream import MotionStream
    from engine.motion.controls import Controls
    from engine.motion.generate import MotionModel
    from engine.weights import WeightsLayout

#: how the pipeline builds its stream; tests swap it for a scripted double (never shipped)
StreamFactory = Callable[..., Any]


def open_stream(model: MotionModel, layout: WeightsLayout, job: LiveJob, precision: Precision,  # noqa: ARG001
                controls: Controls | None) -> MotionStream:
    """Step 4: the streaming sampler for this job (engine/live/stream.py). ``controls`` None = the
    stream's live default (the lips relax in silence)."""
    from engine.live.stream import MotionStream

    return MotionStream(model, job.motion, hop=job.hop, lookahead=job.lookahead, schedule=job.schedule,
                        controls=controls, dtype=precision.compute)


def warm_up(model: MotionModel, layout: WeightsLayout, job: LiveJob, precision: Precision,
            controls: Controls | None) -> float:
    """One throw-away window before the source opens (kernels, allocator, caches warm, so the first
    real window is not the slowest); returns its compute time, the t_win of the predicted delay."""
    stream = open_stream(model, layout, job, precision, controls)
    stream.feed(np.zeros(640, np.float32))
    stream.finish()
    return float(sum(w.seconds for w in getattr(stream, "windows", ())))


def default_hop(model: MotionModel, job: LiveJob, window_s: float) -> int:
    """The smallest hop that keeps up on this machine (live-engine's ``hop_for``), for the model's window."""
    from engine.live.stream import DEFAULT_HOP, DEFAULT_LOOKAHEAD, hop_for

    window = int(model.config.n_motions)
    lookahead = job.lookahead if job.lookahead is not None else min(DEFAULT_LOOKAHEAD, window - 1)
    return hop_for(window_s, floor=min(DEFAULT_HOP, window - lookahead), window=window, lookahead=lookahead)


def open_source(job: LiveJob, pcm: PcmSource | None = None) -> AudioSource:
    """Step 5: the audio source the job names (``pcm``: the worker's push_pcm queue)."""
    from engine.live.sources import FileSource, MicSource

    if job.source == "file":
        return FileSource(as_wave(job.audio), job.pace)          # type: ignore[arg-type]
    if job.source == "mic":
        return MicSource(job.mic)
    if pcm is None:
        raise BadRequest("source pcm takes audio from push_pcm requests: start it with live_start in "
                         "`engine serve` (the CLI streams --audio FILE or --mic)")
    return pcm


def run_live(job: LiveJob, ctx: Context, *, pcm: PcmSource | None = None,
             on_session: Callable[[LiveSession], None] | None = None,
             stream_factory: StreamFactory | None = None, source_factory: Callable[..., Any] | None = None
             ) -> Done:
    """Run the numbered steps above; returns the ``done`` event's outputs (and live totals).
    ``on_session(session)`` hands the running session to the caller (``live_stop``, SIGINT)."""
    rep = ctx.reporter
    import_heavy(ctx)
    from engine.device import describe_device, select_device, select_motion_precision
    from engine.live.outputs import open_outputs
    from engine.live.session import LiveSession, write_take

    device = select_device(job.runtime.device)                                          # 1
    precision = select_motion_precision(device, job.runtime.dtype, job.motion.sampler)
    rep.hello("live", device=describe_device(device), dtype=precision.name, source=job.source,
              hop=job.hop, lookahead=job.lookahead, schedule=job.schedule, seed=job.motion.seed,
              sampler=job.motion.sampler)
    if job.source == "file" and not Path(job.audio or "").is_file():                   # 2
        as_wave(job.audio or "")  # the AudioError that says why
    layout = resolve_weights_dir(job.weights, rep)
    layout.require(layout.motion_generator)
    layout.require(layout.motion_template)
    out, wav = Path(job.out), Path(job.wav_path)
    if out.resolve() == wav.resolve():
        raise BadRequest("--out and --wav must be different files")
    check_output_file(out)
    check_output_file(wav)
    controls = load_run_controls(job.controls) if job.controls else None   # None: the stream's live default
    livelink, vmc = parse_host_port("--livelink", job.livelink), parse_host_port("--vmc", job.vmc)
    source = (source_factory or open_source)(job, pcm)
    probe = getattr(source, "probe", None)
    if probe is not None:
        probe()                                   # the microphone's PortAudio and device, before any work
    model = motion_model(ctx, layout, device)                                           # 3
    window_s = 0.0 if stream_factory else warm_up(model, layout, job, precision, controls)
    if job.hop is None and job.schedule == "live" and stream_factory is None:
        job = dataclasses.replace(job, hop=default_hop(model, job, window_s))
        rep.log(f"live: a window takes {window_s:.2f} s here -> hop {job.hop} frames")
    stream = (stream_factory or open_stream)(model, layout, job, precision, controls)    # 4
    outputs = open_outputs(livelink, vmc)
    hop = int(getattr(stream, "hop", job.hop or 0))
    lookahead = int(getattr(stream, "lookahead", job.lookahead or 0))
    session = LiveSession(stream, source, rep.events.emit, hop=hop, lookahead=lookahead,
                          clock=_clock(rep), outputs=outputs, cancel=rep.cancel,
                          window_s=window_s)
    if on_session is not None:
        on_session(session)
    rep.stage_begin("motion")
    try:
        source.start()
        session.run()
    except BaseException:
        source.close()
        outputs.close()                       # cancel / error: the frames not yet sent are dropped
        raise
    else:
        source.close()
        outputs.close(drain_s=session.playout_delay + 0.5)   # stop: the last frames play out
    finally:
        rep.stage_end("motion")
    stats = session.stats
    totals = {"live": {"frames": stats.frames, "audio_s": round(stats.received / 16000, 3),
                       "window_mean_s": round(sum(stats.windows) / len(stats.windows), 4) if stats.windows else None,
                       "delay_s": None if stats.delay() is None else round(stats.delay() or 0.0, 3)}}
    if not stats.frames:
        rep.warning("live_empty", "the session received no audio: nothing was written")
        return Done({}, totals)
    with rep.breakdown.part("write"):                                                   # 6
        outputs_done = write_take(take_motion(stream), session.audio, out, wav)
    rep.artifact("motion_npz", outputs_done["motion_npz"])
    rep.log(f"live take: {stats.frames} frames, {stats.received / 16000:.1f} s of audio -> {out} + {wav}")
    return Done(outputs_done, totals)


def _clock(rep: Reporter) -> Callable[[], float]:
    """The engine clock of the reporter's events (``wall`` of live_frame = ``t`` of other events)."""
    writer = getattr(rep.events, "_writer", None)
    return writer.clock if writer is not None and hasattr(writer, "clock") else __import__("time").monotonic


def take_motion(stream: MotionStream) -> MotionData:
    """The stream's committed frames as the MotionData the take's file is written from."""
    return stream.take_motion()
