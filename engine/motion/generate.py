"""Speech audio -> motion sequence: JoyVASA's sliding-window sampler (spec §2.5-2.8), numbered.

Recipe (engine/pipeline/motion.py loads (1-2, through the worker's cache); :func:`generate_motion` samples):
  1. load the checkpoint (safe), build the audio encoder + DiT from its tensors, read the template;
  2. load audio as 16 kHz mono float32; plan windows of L frames (1280/640 silence pads, zero tail);
  3. per window i (streamed; only one window's features exist at a time):
     a. draw ``n_hubert_layers`` uniform scalars (transformers 4.39's LayerDrop test in eval mode;
        kept so that a seed reproduces upstream's noise stream),
     b. encode the window audio -> a (1, L, F),
     c. window 0 only: draw x_N (1, L, D); later windows reuse the same tensor (upstream),
     d. hoist the cross-attention of [null audio, audio] once (exact, see motion_dit),
     e. run the sampler (CFG batch [uncond, cond], guided x0 = r0 + s (r1 - r0)),
     f. context for the next window: the last P frames of x0 and of a (untrimmed);
  4. trim the last window's padded frames, concatenate -> coef (n, D) in normalised space;
  5. de-normalise with the template, EMA-smooth the pose (optional), R from angles;
  6. optional resampling to another fps; meta fields for reproducibility.

Frame k corresponds to audio time k/25 - 0.08 s (the 1280-sample pre-pad); frames are kept
exactly as upstream and ``audio_offset_s = -0.08`` records the shift.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from engine import __version__
from engine.audio import PRE_PAD, SAMPLE_RATE, as_wave, audio_sha256, iter_windows, plan_windows
from engine.checkpoints import sha256_file
from engine.errors import BadRequest, WeightsCorrupt
from engine.models.audio_encoder import AudioEncoder, build_hf_encoder, load_audio_encoder
from engine.models.motion_dit import DenoisingNetwork
from engine.motion.checkpoint import MotionGenConfig, config_from_checkpoint, load_checkpoint, sub_state_dict
from engine.motion.npz import MotionData
from engine.motion.smooth import smooth_pose
from engine.motion.template import denormalize, load_template
from engine.jobs import MotionConfig
from engine.profiling import Breakdown
from engine.runner import NullReporter, Reporter
from engine.contract.protocol import DEFAULT_SAMPLER as _DEFAULT_SAMPLER
from engine.sampling import DEFAULT_STEPS, Sampler, make_sampler, run_sampler
from engine.sampling.guidance import combine
from engine.sampling.known import KnownPrefix
from engine.sampling.schedule import Schedule
from engine.weights import WeightsLayout

AUDIO_OFFSET_S = -PRE_PAD / SAMPLE_RATE  # -0.08 s
#: windows per audio-encoder call (bench motion; bounded so peak memory stays near one window's)
ENCODE_CHUNK = 2

#: fast-mode default: DPM-Solver++(2M), 10 steps (engine/bench/motion.py; tests/engine/test_samplers_gaussian.py)
DEFAULT_SAMPLER = _DEFAULT_SAMPLER


#: sampling options: the job's frozen config (one definition, see engine/jobs.py)
MotionOptions = MotionConfig


# -- random numbers ------------------------------------------------------------------------------
class TorchNoise:
    """Upstream's draw order on one CPU generator (spec §2.8); tensors moved to ``device``."""

    def __init__(self, seed: int, device: torch.device | str = "cpu") -> None:
        self.gen = torch.Generator(device="cpu")
        self.gen.manual_seed(int(seed))
        self.device = device

    def layer_draws(self, n: int, window: int) -> None:  # noqa: ARG002
        for _ in range(n):
            torch.rand([], generator=self.gen)

    def initial(self, shape: tuple[int, ...]) -> torch.Tensor:
        return torch.randn(shape, generator=self.gen).to(self.device)

    def step(self, window: int, i: int, shape: tuple[int, ...]) -> torch.Tensor:  # noqa: ARG002
        return torch.randn(shape, generator=self.gen).to(self.device)


def draw_noise_stream(noise: TorchNoise, n_windows: int, n_layers: int, n_steps: int,
                      shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Replay the sampler's whole draw order without running it (spec §2.8).

    Returns ``(x_N, z)`` shaped like the reference's ``MG_noise_T`` (1,L,D) and
    ``MG_step_noise`` (W, N-1, 1, L, D): per window the encoder's layer draws, then (window 0
    only) x_N, then z for t = N..2.
    """
    step = np.zeros((n_windows, n_steps - 1, *shape), np.float32)
    first: np.ndarray | None = None
    for w in range(n_windows):
        noise.layer_draws(n_layers, w)
        if first is None:
            first = noise.initial(shape).cpu().numpy()
        for i in range(n_steps - 1):
            step[w, i] = noise.step(w, i, shape).cpu().numpy()
    assert first is not None
    return first, step


class InjectedNoise:
    """Recorded noise (``MG_noise_T`` (1,L,D), ``MG_step_noise`` (W, N-1, 1, L, D)) for parity."""

    def __init__(self, noise_T: np.ndarray, step_noise: np.ndarray, device: torch.device | str = "cpu") -> None:
        self.noise_T, self.step_noise, self.device = noise_T, step_noise, device

    def layer_draws(self, n: int, window: int) -> None:
        pass

    def initial(self, shape: tuple[int, ...]) -> torch.Tensor:
        return torch.from_numpy(np.asarray(self.noise_T, np.float32)).reshape(shape).to(self.device)

    def step(self, window: int, i: int, shape: tuple[int, ...]) -> torch.Tensor:
        return torch.from_numpy(np.asarray(self.step_noise[window, i], np.float32)).reshape(shape).to(self.device)


# -- the loaded model ----------------------------------------------------------------------------
@dataclass
class MotionModel:
    config: MotionGenConfig
    dit: DenoisingNetwork
    audio_encoder: AudioEncoder
    schedule: Schedule
    start_motion: torch.Tensor   # (1,P,D)
    start_audio: torch.Tensor    # (1,P,F)
    null_audio: torch.Tensor     # (1,1,F)
    template: dict[str, np.ndarray]
    checkpoint_path: Path
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @classmethod
    def load(cls, layout: WeightsLayout, device: str | torch.device = "cpu",
             breakdown: Breakdown | None = None) -> "MotionModel":
        """Read the checkpoint once (memory-mapped), build the DiT and the audio encoder (HuBERT
        without random initialisation), fill them from its tensors. ``breakdown`` gets 'load'/'construct'."""
        bd = breakdown or Breakdown()
        ckpt_path = layout.require(layout.motion_generator)
        with bd.part("load"):
            ckpt = load_checkpoint(ckpt_path)
            try:
                cfg = config_from_checkpoint(ckpt)
            except WeightsCorrupt as exc:  # name the file: the user must know which one to replace
                raise WeightsCorrupt(f"{ckpt_path}: {exc}") from None
            template = load_template(layout.motion_template)
        sd = ckpt["model"]
        with bd.part("construct"):
            dit = DenoisingNetwork(cfg.motion_feat_dim, cfg.feature_dim, cfg.n_motions, cfg.n_prev_motions,
                                   cfg.n_layers, cfg.n_heads)
            hf = build_hf_encoder(layout.audio_encoder_dir(cfg.audio_model))
        with bd.part("load"):
            try:
                dit.load_upstream(sub_state_dict(sd, "denoising_net."))
            except RuntimeError as exc:
                raise WeightsCorrupt(f"{ckpt_path}: denoising network tensors do not match: {exc}") from exc
            enc = load_audio_encoder(layout.audio_encoder_dir(cfg.audio_model), sd, cfg.feature_dim,
                                     cfg.n_motions, hf=hf)
            dev = torch.device(device)
            model = cls(cfg, dit.eval().to(dev), enc.eval().to(dev), Schedule.from_state_dict(sd).to(dev),
                        sd["start_motion_feat"].float().to(dev), sd["start_audio_feat"].float().to(dev),
                        sd["null_audio_feat"].float().to(dev), template, Path(ckpt_path), dev)
        return model

    # audio ----------------------------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, window_audio: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """(B, 640·L) window samples -> (B, L, F) float32; windows are independent of each other.

        ``dtype`` bfloat16/float16: autocast (weights stay float32, so one loaded model serves every
        precision; engine.device.select_motion_precision decides which)."""
        audio = window_audio.to(self.device)
        if dtype == torch.float32:
            return self.audio_encoder(audio)
        with torch.autocast(device_type=self.device.type, dtype=dtype):
            return self.audio_encoder(audio).float()

    def encode_wave(self, wave: np.ndarray, *, chunk: int = ENCODE_CHUNK,
                    on_chunk: Callable[[int, int], None] | None = None,
                    dtype: torch.dtype = torch.float32) -> list[torch.Tensor]:
        """Every window of ``wave`` through the audio encoder, ``chunk`` windows per call.

        Why batched: the encoder does not depend on the motion, so all windows can run before
        sampling; batching amortises the transformer's per-call overhead (bench motion). Returns
        one (1, L, F) tensor per window.
        """
        plan = plan_windows(len(wave), self.config.n_motions, self.config.fps)
        audio = [a for a, _ in iter_windows(wave, plan, self.config.pad_mode)]
        feats: list[torch.Tensor] = []
        if on_chunk:
            on_chunk(0, plan.n_windows)
        for lo in range(0, len(audio), max(1, chunk)):
            batch = torch.from_numpy(np.stack(audio[lo:lo + chunk]))               # (b,640L)
            out = self.encode(batch, dtype)                                       # (b,L,F)
            feats.extend(out[i:i + 1] for i in range(out.shape[0]))
            if on_chunk:
                on_chunk(len(feats), plan.n_windows)
        return feats

    # one window ---------------------------------------------------------------------------------

    @torch.no_grad()
    def sample_window(self, audio_feat: torch.Tensor, m_prev: torch.Tensor, a_prev: torch.Tensor,
                      x_T: torch.Tensor, sampler: Sampler, cfg_scale: float, cfg_mode: str, pe_variant: str,
                      noise_fn: Callable[[int, int], torch.Tensor] | None,
                      on_step: Callable[[int, int], None] | None = None, hoist: bool = True,
                      dtype: torch.dtype = torch.float32, known: KnownPrefix | None = None) -> torch.Tensor:
        """One window through the sampler. ``dtype`` bfloat16/float16: the DiT runs under autocast;
        its x0 prediction comes back float32, so the sampler's arithmetic stays float32.
        ``known``: leading rows held fixed at every step (the live stream's committed frames)."""
        L = self.config.n_motions
        autocast = (torch.autocast(device_type=self.device.type, dtype=dtype) if dtype != torch.float32
                    else contextlib.nullcontext())
        null = self.null_audio.expand(1, L, -1)                                   # (1,L,F)
        audio2 = torch.cat([null, audio_feat], 0)                                 # (2,L,F) [uncond, cond]
        m_prev2 = m_prev.expand(2, -1, -1)                                        # (2,P,D)
        a_prev2 = a_prev.expand(2, -1, -1)                                        # (2,P,F)
        cross = None
        if hoist and self.dit.can_hoist:                                          # 3d: once per window
            with autocast:
                cross = self.dit.precompute_memory(self.dit.memory(audio2, a_prev2))  # n_layers x (2,S,F)

        def x0_fn(x: torch.Tensor, t: int) -> torch.Tensor:
            steps = torch.full((2,), t, dtype=torch.long, device=x.device)
            with autocast:
                out = self.dit(x.expand(2, -1, -1), steps, audio2, m_prev2, a_prev2, pe_variant=pe_variant,
                               cross=cross, hoist=hoist)                           # (2,S,D)
            return combine(out[:, -L:].float(), [cfg_scale], cfg_mode)             # (1,L,D)

        return run_sampler(sampler, x0_fn, x_T, noise_fn, on_step, known=known)


def generate_coef(model: MotionModel, wave: np.ndarray, options: MotionOptions, *,
                  noise: TorchNoise | InjectedNoise | None = None,
                  on_window: Callable[[int, int], None] | None = None,
                  check_cancel: Callable[[int], None] | None = None,
                  record: dict[str, list[np.ndarray]] | None = None, hoist: bool = True,
                  features: list[torch.Tensor] | None = None,
                  breakdown: Breakdown | None = None, dtype: torch.dtype = torch.float32) -> np.ndarray:
    """Steps 2-4 of the recipe: waveform -> trimmed coef (n, D) in normalised space.

    ``features``: the audio encoder's output per window (:meth:`MotionModel.encode_wave`), e.g.
    from a cache; computed here (batched) when absent. ``breakdown`` gets 'encode'/'sample'.
    ``dtype``: the motion networks' compute precision (engine.device.select_motion_precision).
    """
    cfg = model.config
    bd = breakdown or Breakdown()
    L, P, D = cfg.n_motions, cfg.n_prev_motions, cfg.motion_feat_dim
    plan = plan_windows(len(wave), L, cfg.fps)
    if features is None:
        with bd.part("encode"):
            features = model.encode_wave(wave, on_chunk=(lambda done, total: check_cancel(0)) if check_cancel else None,
                                         dtype=dtype)
    if len(features) != plan.n_windows:
        raise ValueError(f"{len(features)} feature windows for a {plan.n_windows}-window plan")
    noise = noise if noise is not None else TorchNoise(options.seed, model.device)
    sampler = make_sampler(options.sampler, model.schedule, options.steps)
    m_prev, a_prev = model.start_motion, model.start_audio
    x_T: torch.Tensor | None = None
    chunks: list[np.ndarray] = []
    if on_window:
        on_window(0, plan.n_windows)
    windows = iter_windows(wave, plan, cfg.pad_mode) if record is not None else None
    with bd.part("sample"):
        for w in range(plan.n_windows):
            noise.layer_draws(model.audio_encoder.n_layers, w)                    # 3a
            a = features[w]                                                       # 3b (1,L,F)
            if x_T is None:
                x_T = noise.initial((1, L, D))                                    # 3c
            n_calls = len(sampler.timesteps())

            def noise_fn(i: int, t: int, _w: int = w) -> torch.Tensor:  # noqa: ARG001
                return noise.step(_w, i, (1, L, D))

            def on_step(i: int, n: int, _w: int = w) -> None:  # noqa: ARG001
                if check_cancel:
                    check_cancel(_w)

            x0 = model.sample_window(a, m_prev, a_prev, x_T, sampler, options.cfg_scale, options.cfg_mode,
                                     options.pe_variant, noise_fn, on_step, hoist=hoist, dtype=dtype)  # 3e
            m_prev, a_prev = x0[:, -P:], a[:, -P:]                                # 3f
            x0_np = x0.float().cpu().numpy()
            if windows is not None and record is not None:
                audio_np, indicator = next(windows)
                record.setdefault("window_audio_in", []).append(audio_np[None])
                record.setdefault("window_indicator", []).append(indicator[None])
                record.setdefault("window_audio_feat", []).append(a.float().cpu().numpy())
                record.setdefault("window_motion", []).append(x0_np)
                record.setdefault("n_calls", []).append(np.array(n_calls))
            if w == plan.n_windows - 1 and plan.n_pad_frames > 0:
                x0_np = x0_np[:, :-plan.n_pad_frames]                             # 4: trim padding
            chunks.append(x0_np[0])
            if on_window:
                on_window(w + 1, plan.n_windows)
    return np.concatenate(chunks, 0).astype(np.float32)                           # (n,D)


def coef_to_motion(coef: np.ndarray, template: dict[str, np.ndarray], smooth: bool) -> dict[str, np.ndarray]:
    """Step 5: de-normalise (and smooth); arrays keep upstream's (n,1) shapes."""
    motion = denormalize(coef, template)
    return smooth_pose(motion) if smooth else motion


def effective_steps(options: MotionOptions, N: int) -> int:
    if options.steps is not None:
        return min(int(options.steps), N)
    default = DEFAULT_STEPS.get(options.sampler)
    return N if default is None else min(default, N)


def motion_meta(model: MotionModel, options: MotionOptions, audio_hash: str, duration_s: float,
                dtype: torch.dtype) -> dict[str, Any]:
    """The motion file's reproducibility fields for a take sampled with ``options`` (offline or live)."""
    return {
        "audio_offset_s": np.float32(AUDIO_OFFSET_S),
        "audio_sha256": audio_hash,
        "audio_duration_s": np.float32(duration_s),
        "checkpoint_sha256": sha256_file(model.checkpoint_path),
        "pe_variant": options.pe_variant,
        "sampler": options.sampler,
        "steps": np.int32(effective_steps(options, model.schedule.N)),
        "cfg_scale": np.float32(options.cfg_scale),
        "cfg_mode": options.cfg_mode,
        "seed": np.int64(options.seed),
        "engine_version": __version__,
        "motion_dtype": str(dtype).replace("torch.", ""),
    }


def generate_motion(model: MotionModel, wave: np.ndarray, options: MotionOptions,
                    reporter: Reporter | None = None, features: list[torch.Tensor] | None = None,
                    dtype: torch.dtype = torch.float32) -> MotionData:
    """Sample the motion of 16 kHz mono ``wave`` with a loaded ``model`` -> :class:`MotionData`.

    The one front door is the pipeline (engine/pipeline/motion.py: it loads the model and the
    audio through the worker's cache and reports those stages); this is its sampling step.
    ``features``: already encoded audio (encoded here when absent). ``dtype``: the motion
    networks' precision (audio encoder and DiT; the features' when they are given), recorded in
    the file's ``motion_dtype``.
    """
    rep = reporter or NullReporter()
    wave = as_wave(wave)
    N = model.schedule.N
    if options.steps is not None and options.steps > N:
        raise BadRequest(f"--steps {options.steps} exceeds the checkpoint's trained schedule (N={N})")
    rep.stage_begin("motion")
    coef = generate_coef(model, wave, options,
                         on_window=lambda done, total: rep.progress("motion", done, total, "window", force=True),
                         check_cancel=lambda done: rep.cancel.check("motion", done),
                         features=features, breakdown=rep.breakdown, dtype=dtype)
    motion = coef_to_motion(coef, model.template, options.smooth)
    rep.stage_end("motion")
    n = coef.shape[0]
    meta = motion_meta(model, options, audio_sha256(wave), len(wave) / SAMPLE_RATE, dtype)
    data = MotionData(fps=float(model.config.fps), exp=motion["exp"].reshape(n, 21, 3),
                      scale=motion["scale"].reshape(n), t=motion["t"].reshape(n, 3),
                      pitch=motion["pitch"].reshape(n), yaw=motion["yaw"].reshape(n),
                      roll=motion["roll"].reshape(n), R=motion["R"].reshape(n, 3, 3), coef=coef,
                      smoothed=bool(options.smooth), meta=meta)
    if options.fps is not None and abs(options.fps - data.fps) > 1e-9:
        from engine.motion.resample import resample_motion

        data = resample_motion(data, options.fps)
    return data
