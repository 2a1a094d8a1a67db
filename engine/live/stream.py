"""The streaming motion sampler: 16 kHz samples in, committed 25 fps motion frames out.

JoyVASA's 100-frame window slides along the incoming audio (docs/live.md, "Choosing H and F"):

* **Window placement.** When audio up to frame ``e = c + H + F`` exists (``c`` = frames already
  committed), the window covers frames ``[e - L, e)`` (right-aligned). It holds ``C = L - H - F``
  committed frames, ``H`` new frames that this window commits and ``F`` look-ahead frames that the
  next window computes again. Before ``L`` frames exist the window is ``[0, L)`` with the audio
  that has not arrived yet zero-padded, exactly as upstream pads a clip shorter than 4 s; the
  learned start tokens are its context, as upstream's first window.
* **Audio features.** The audio encoder runs on each window's own 4 s (640·L samples, upstream's
  ``pad_audio``), so GroupNorm and attention see the distribution they were trained on. The
  window never reads audio past frame ``e`` (even when more has arrived), so a take does not
  depend on how the audio was cut into :meth:`MotionStream.feed` blocks.
* **Context.** ``m_prev``/``a_prev`` are the P frames before the window: committed motion rows and
  the audio features of the window that committed them (upstream's rule between windows); the
  learned start tokens stand for frames before 0.
* **Known-frame clamping.** The window's committed rows are held fixed at every sampler step
  (engine/sampling/known.py), so the new frames continue them.
* **Noise by absolute frame.** x_N (and the ancestral sampler's step noise) of frame k come from
  a generator seeded by (seed, k): a frame gets the same noise in every window that holds it, and
  a seed reproduces a take.
* **Pose and controls.** The pose EMA is upstream's causal one (engine/motion/smooth.py), carried
  across hops; the art-direction controls are engine/motion/edit.py's, applied per hop with
  :class:`engine.motion.edit.Anchors` fixed by the stream (what differs from the offline edit is
  listed in docs/live.md and in :meth:`MotionStream._direct`).

``schedule="offline"`` (H = L, F = 0) is upstream's own schedule: non-overlapping windows,
previous-window context, upstream's noise order (one torch generator, x_N reused), no clamping.
With the same seed, sampler and dtype the stream then equals ``engine motion`` frame for frame
(tests/engine/test_live_stream.py) - the check that windowing, context and padding are right.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from engine.audio import PRE_PAD, SAMPLE_RATE, SAMPLES_PER_FRAME, plan_windows
from engine.errors import BadRequest
from engine.motion.controls import Controls, Silence
from engine.motion.edit import (Anchors, RawMotion, edit_motion, is_neutral, level_db, silence_gate,
                                window_rms)
from engine.motion.generate import AUDIO_OFFSET_S, MotionModel, MotionOptions, TorchNoise, motion_meta
from engine.motion.npz import MotionData, motion_arrays
from engine.motion.smooth import CausalEma, pose_vector, with_pose
from engine.motion.template import denormalize
from engine.sampling import make_sampler
from engine.sampling.known import KnownPrefix

#: frames committed per window call (H): chosen so the stream keeps up on 2 CPU cores with margin
#: and the frame latency p95 stays under 1.5 s (docs/live.md, "Choosing H and F")
DEFAULT_HOP = 20
#: look-ahead frames (F): audio after the newest committed frame that its window still sees
DEFAULT_LOOKAHEAD = 5
#: sampler steps per window in live mode (DPM-Solver++(2M)); None = the sampler's default
DEFAULT_LIVE_STEPS: int | None = None
SCHEDULES = ("live", "offline")
#: frames over which a new hop's first frames are blended with the previous window's look-ahead
#: prediction of them (0 = off: the seams measured no worse than inside hops, docs/live.md)
DEFAULT_CROSSFADE = 0

#: a stream keeps up when a window's compute fits in the audio of one hop with this margin
KEEP_UP_MARGIN = 1.5

FPS = 25.0


def hop_for(t_win_s: float, floor: int = DEFAULT_HOP, window: int = 100, lookahead: int = DEFAULT_LOOKAHEAD,
            margin: float = KEEP_UP_MARGIN) -> int:
    """The smallest hop H >= ``floor`` whose audio (H x 40 ms) covers ``margin`` x a window's
    compute ``t_win_s`` (e.g. a warm-up window's): the default hop on a machine slower than the
    one :data:`DEFAULT_HOP` was chosen for (docs/live.md, "Choosing H and F"). At most
    ``window - lookahead``; a machine that cannot keep up even then gets that (its lag grows)."""
    need = math.ceil(margin * max(0.0, float(t_win_s)) * FPS - 1e-9)
    return int(min(max(floor, need), window - lookahead))
#: live voice level: the loud level is the running 95th percentile of the 10 ms RMS, but never
#: below this (dBFS), so room tone before the first word reads as silence
LIVE_LOUD_FLOOR_DBFS = -30.0
_HIST_LO, _HIST_STEP, _HIST_N = -140.0, 0.1, 1500        # 10 ms RMS histogram, -140 .. +10 dBFS
#: frames of raw motion before a hop that the hop's edit sees (calm head's 1 s average, silence gate)
_EDIT_CONTEXT = 32
#: frames over which the running median of the expression (blink detection) is taken
_EYE_MEDIAN_FRAMES = 250
#: window statistics kept (the newest)
_STATS_KEPT = 4096


@dataclass(frozen=True)
class LiveFrame:
    """One committed frame after the pose EMA and the controls: the row the take's file holds."""

    frame: int              # 25 fps, from 0
    t: float                # audio time it shows (s): audio_offset_s + frame / 25
    sample: int             # audio samples received when it was committed
    pitch: float            # degrees
    yaw: float
    roll: float
    scale: float
    trans: tuple[float, float, float]
    exp: np.ndarray         # (21, 3)

    def motion(self) -> dict[str, Any]:
        """The ``live_frame`` event's ``motion`` object (exp row-major, 63 numbers)."""
        return {"pitch": self.pitch, "yaw": self.yaw, "roll": self.roll, "scale": self.scale,
                "trans": list(self.trans), "exp": [float(v) for v in np.asarray(self.exp).reshape(-1)]}


@dataclass(frozen=True)
class WindowStat:
    """One window call: which frames it held and committed, and what it cost."""

    start: int              # first frame of the window
    commit: tuple[int, int]  # [lo, hi) committed by it
    encode_s: float         # audio encoder (wall clock)
    sample_s: float         # DiT sampler (wall clock)
    wall: float             # perf_counter when it finished
    cpu_s: float = 0.0      # process CPU time of the whole window (what it costs an idle machine)

    @property
    def seconds(self) -> float:
        return self.encode_s + self.sample_s


class FrameNoise:
    """Gaussian noise indexed by absolute frame: frame k's x_N row and its step-noise rows come
    from ``default_rng([seed, k])``, whichever window holds the frame."""

    def __init__(self, seed: int, dim: int, n_steps: int) -> None:
        self.seed, self.dim, self.n_steps = int(seed), int(dim), int(n_steps)
        self._cache: dict[int, np.ndarray] = {}

    def rows(self, frames: range) -> np.ndarray:
        """(1 + n_steps, len(frames), D): row 0 is x_N, row 1 + i the noise of step i."""
        out = np.empty((1 + self.n_steps, len(frames), self.dim), np.float32)
        for j, k in enumerate(frames):
            z = self._cache.get(k)
            if z is None:
                z = np.random.default_rng([self.seed, k]).standard_normal((1 + self.n_steps, self.dim),
                                                                         dtype=np.float32)
                self._cache[k] = z
            out[:, j] = z
        return out

    def forget_before(self, frame: int) -> None:
        for k in [k for k in self._cache if k < frame]:
            del self._cache[k]


class _VoiceMeter:
    """Causal voice level (``vad_db``): the offline measure (40 ms RMS around each frame time)
    against a running loud level - the 95th percentile of the 10 ms RMS so far, floored at
    :data:`LIVE_LOUD_FLOOR_DBFS` - instead of the whole clip's."""

    def __init__(self) -> None:
        self.hist = np.zeros(_HIST_N, np.int64)
        self.next_grid = 0                                   # next 10 ms grid point (raw sample index)

    def update(self, audio: np.ndarray, offset: int, known_end: int, n_total: int | None) -> None:
        """Add the grid points whose 40 ms window lies inside [0, known_end) (all when finished)."""
        step = SAMPLE_RATE // 100
        half = SAMPLE_RATE * 2 // 100
        last = (n_total - 1) if n_total is not None else known_end - half
        if last < self.next_grid:
            return
        grid = np.arange(self.next_grid, last + 1, step)
        rms = window_rms(audio, grid, SAMPLE_RATE, offset, n_total if n_total is not None else known_end)
        db = 20 * np.log10(np.maximum(rms, 1e-12))
        idx = np.clip(((db - _HIST_LO) / _HIST_STEP).astype(np.int64), 0, _HIST_N - 1)
        np.add.at(self.hist, idx, 1)
        self.next_grid = int(grid[-1]) + step

    def loud(self) -> float:
        total = int(self.hist.sum())
        floor = 10 ** (LIVE_LOUD_FLOOR_DBFS / 20)
        if total == 0:
            return floor
        i = int(np.searchsorted(np.cumsum(self.hist), 0.95 * total))
        return max(10 ** ((_HIST_LO + (i + 0.5) * _HIST_STEP) / 20), floor)


class MotionStream:
    """Feed 16 kHz mono float32 samples (blocks of any size); get committed :class:`LiveFrame` s.

    ``model``: a loaded :class:`MotionModel` (the warm worker's); ``options``: seed, sampler,
    steps, cfg as for ``engine motion`` (``options.fps`` must be the model's: live frames are
    25 fps). ``hop``/``lookahead``: H and F (defaults :data:`DEFAULT_HOP`,
    :data:`DEFAULT_LOOKAHEAD`; ``schedule="offline"`` needs H = L and F = 0). ``controls``: the
    art direction (None: none); in live mode controls without ``silence`` get the default
    :class:`Silence` (the lips relax in pauses; ``Silence(relax=False)`` turns it off). ``dtype``: the motion networks' precision (engine.device.select_motion_precision).
    ``crossfade``: frames blended at a hop's start with the previous window's look-ahead.
    """

    def __init__(self, model: MotionModel, options: MotionOptions | None = None, *, hop: int | None = None,
                 lookahead: int | None = None, schedule: str = "live", controls: Controls | None = None,
                 dtype: torch.dtype = torch.float32, crossfade: int = DEFAULT_CROSSFADE) -> None:
        cfg = model.config
        self.model, self.dtype = model, dtype
        self.options = options if options is not None else MotionOptions(
            steps=DEFAULT_LIVE_STEPS if schedule == "live" else None)
        self.L, self.P, self.D = cfg.n_motions, cfg.n_prev_motions, cfg.motion_feat_dim
        if schedule not in SCHEDULES:
            raise BadRequest(f"schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
        self.exact = schedule == "offline"
        default_hop = self.L if self.exact else min(DEFAULT_HOP, self.L)
        self.hop = int(default_hop if hop is None else hop)
        self.lookahead = int((0 if self.exact else min(DEFAULT_LOOKAHEAD, self.L - self.hop))
                             if lookahead is None else lookahead)
        if self.exact and (self.hop != self.L or self.lookahead != 0):
            raise BadRequest(f"schedule offline is upstream's: hop {self.L} and lookahead 0 "
                             f"(got hop {self.hop}, lookahead {self.lookahead})")
        if not 1 <= self.hop <= self.L:
            raise BadRequest(f"hop must be between 1 and {self.L} frames, got {self.hop}")
        if not 0 <= self.lookahead <= self.L - self.hop:
            raise BadRequest(f"lookahead must be between 0 and {self.L - self.hop} frames (hop + lookahead "
                             f"<= the {self.L}-frame window), got {self.lookahead}")
        if self.options.fps is not None and abs(self.options.fps - cfg.fps) > 1e-9:
            raise BadRequest(f"a live stream runs at the model's {cfg.fps:g} fps (fps {self.options.fps:g} given)")
        if self.options.steps is not None and self.options.steps > model.schedule.N:
            raise BadRequest(f"--steps {self.options.steps} exceeds the checkpoint's trained schedule "
                             f"(N={model.schedule.N})")
        if crossfade < 0 or crossfade > self.lookahead:
            raise BadRequest(f"crossfade must be between 0 and the lookahead ({self.lookahead}), got {crossfade}")
        self.crossfade = int(crossfade)
        if controls is None:
            controls = Controls()
        if not self.exact and controls.silence is None:   # live: the lips relax in silence by default
            controls = dataclasses.replace(controls, silence=Silence())
        self.controls = controls
        self.sampler = make_sampler(self.options.sampler, model.schedule, self.options.steps)
        n_calls = len(self.sampler.timesteps())
        self._torch_noise = TorchNoise(self.options.seed, model.device) if self.exact else None
        self._x_T: torch.Tensor | None = None
        self._frame_noise = FrameNoise(self.options.seed, self.D, n_calls if self.sampler.stochastic else 0)
        # audio: the padded stream (1280 zeros, then the samples) from padded index self._a0
        self._audio = np.zeros(PRE_PAD, np.float32)
        self._a0 = 0
        self.samples = 0                      # samples received
        self._sha = hashlib.sha256()
        self.finished = False
        # committed frames
        self.committed = 0
        self._coef: list[np.ndarray] = []     # (n, D) per hop
        self._feat: dict[int, np.ndarray] = {}  # frame -> (F,) audio feature of the window that committed it
        self._provisional: np.ndarray | None = None  # look-ahead rows of the last window, from frame self.committed
        self._ema = CausalEma()
        self._frame0: RawMotion | None = None
        self._raw: dict[str, list[np.ndarray]] = {k: [] for k in ("exp", "pitch", "yaw", "roll", "t", "scale", "R")}
        self._out: dict[str, list[np.ndarray]] = {k: [] for k in ("exp", "pitch", "yaw", "roll", "t", "scale", "R")}
        self._vad: list[np.ndarray] = []
        self._voice = _VoiceMeter()
        self._ctx = {k: deque(maxlen=_EDIT_CONTEXT) for k in ("exp", "pitch", "yaw", "roll", "t", "scale", "R")}
        self._eye = deque(maxlen=_EYE_MEDIAN_FRAMES)
        self.windows: deque[WindowStat] = deque(maxlen=_STATS_KEPT)
        self.n_windows = 0
        self.compute_s = 0.0

    # -- public ------------------------------------------------------------------------------
    @property
    def frames_available(self) -> int:
        """Frames whose audio has fully arrived (the 1280-sample pre-pad counts)."""
        return (PRE_PAD + self.samples) // SAMPLES_PER_FRAME

    @property
    def lag_samples(self) -> int:
        """Audio received but not yet committed as frames (samples; look-ahead and queue)."""
        return max(0, PRE_PAD + self.samples - SAMPLES_PER_FRAME * self.committed)

    def feed(self, samples: np.ndarray) -> list[LiveFrame]:
        """Take a block of 16 kHz mono samples; run every window it completes; return the frames
        committed (possibly none)."""
        if self.finished:
            raise BadRequest("the stream has finished; start a new one")
        x = np.asarray(samples, dtype=np.float32).reshape(-1)
        if not np.all(np.isfinite(x)):
            raise BadRequest("audio block contains NaN or infinite samples")
        if x.size:
            self._sha.update(np.ascontiguousarray(x, dtype="<f4").tobytes())
            self._audio = np.concatenate([self._audio, x])
            self.samples += int(x.size)
        out: list[LiveFrame] = []
        while True:
            e = self._next_end()
            if e > self.frames_available:
                break
            out += self._window(e, min(e, self.committed + self.hop))
        return out

    def finish(self) -> list[LiveFrame]:
        """End of stream: commit every remaining frame (as many in all as ``engine motion`` gives
        for the same audio), the audio after the last sample read as upstream's zero padding."""
        if self.finished:
            return []
        self.finished = True
        if self.samples == 0:
            return []
        total = plan_windows(self.samples, self.L, self.model.config.fps).n_frames
        out: list[LiveFrame] = []
        while self.committed < total:
            if self.exact:
                e = self.committed + self.L
                out += self._window(e, min(e, total))
            else:
                e = min(total, self.committed + self.hop + self.lookahead)
                out += self._window(e, e)
        return out

    def take_motion(self) -> MotionData:
        """Every committed frame as a :class:`MotionData` (what ``engine motion`` would write;
        ``raw_*`` and ``controls`` when the controls changed something)."""
        n = self.committed
        if n == 0:
            raise BadRequest("the stream committed no frames (no audio was fed)")
        cat = lambda d, k: np.concatenate(d[k], 0).astype(np.float32)  # noqa: E731
        out = {k: cat(self._out, k) for k in self._out}
        raw = {k: cat(self._raw, k) for k in self._raw}
        neutral = is_neutral(self.controls)
        meta = motion_meta(self.model, self.options, self._sha.hexdigest(), self.samples / SAMPLE_RATE, self.dtype)
        m = MotionData(fps=float(self.model.config.fps), exp=out["exp"].reshape(n, 21, 3),
                       scale=out["scale"].reshape(n), t=out["t"].reshape(n, 3), pitch=out["pitch"].reshape(n),
                       yaw=out["yaw"].reshape(n), roll=out["roll"].reshape(n), R=out["R"].reshape(n, 3, 3),
                       coef=np.concatenate(self._coef, 0).astype(np.float32), smoothed=bool(self.options.smooth),
                       meta=meta, vad_db=np.concatenate(self._vad).astype(np.float32))
        if not neutral:
            m.raw = {"exp": raw["exp"].reshape(n, 21, 3), "pitch": raw["pitch"].reshape(n),
                     "yaw": raw["yaw"].reshape(n), "roll": raw["roll"].reshape(n), "t": raw["t"].reshape(n, 3),
                     "scale": raw["scale"].reshape(n), "R": raw["R"].reshape(n, 3, 3)}
            m.controls = json.dumps(self.controls.to_dict(), sort_keys=True, separators=(",", ":"))
        return m

    def take_arrays(self) -> dict[str, np.ndarray]:
        """The motion-file arrays of every committed frame (the keys and dtypes engine/motion/npz.py
        writes; ``save_motion(path, stream.take_motion())`` writes them atomically)."""
        return motion_arrays(self.take_motion())

    # -- windows -----------------------------------------------------------------------------
    def _next_end(self) -> int:
        """The frame the next window's audio ends at."""
        if self.exact:
            return self.committed + self.L
        return self.committed + self.hop + self.lookahead

    def _window_audio(self, start: int, end: int) -> np.ndarray:
        """Padded-stream samples of frames [start, start + L), zero from frame ``end`` on (audio
        not yet arrived, or upstream's end padding)."""
        W = SAMPLES_PER_FRAME * self.L
        lo, stop = SAMPLES_PER_FRAME * start, SAMPLES_PER_FRAME * min(end, start + self.L)
        out = np.zeros(W, np.float32)
        a, b = max(lo, self._a0), min(stop, self._a0 + self._audio.size)
        if b > a:
            out[a - lo:b - lo] = self._audio[a - self._a0:b - self._a0]
        if (self.finished and self.model.config.pad_mode == "replicate" and self.samples
                and stop > PRE_PAD + self.samples + 640):
            tail = PRE_PAD + self.samples + 640                      # upstream: zeros, then the last sample
            out[max(tail, lo) - lo:stop - lo] = self._audio[PRE_PAD + self.samples - 1 - self._a0]
        return out

    def _context(self, start: int) -> tuple[torch.Tensor, torch.Tensor]:
        """m_prev, a_prev: frames [start - P, start), the start tokens standing for frames < 0."""
        P, dev = self.P, self.model.device
        if start <= 0:
            return self.model.start_motion, self.model.start_audio
        n_tok = max(0, P - start)
        rows = range(max(0, start - P), start)
        coef = self._coef_rows(rows)
        feat = np.stack([self._feat[k] for k in rows])
        m = torch.from_numpy(coef)[None].to(dev)
        a = torch.from_numpy(feat)[None].to(dev)
        if n_tok:
            m = torch.cat([self.model.start_motion[:, P - n_tok:], m], 1)
            a = torch.cat([self.model.start_audio[:, P - n_tok:], a], 1)
        return m, a

    def _coef_rows(self, rows: range) -> np.ndarray:
        """Committed coef rows (frames ``rows``), from the newest hops."""
        need = len(rows)
        if need == 0:
            return np.zeros((0, self.D), np.float32)
        got, k = [], self.committed
        for block in reversed(self._coef):
            k -= len(block)
            got.append(block)
            if k <= rows.start:
                break
        allrows = np.concatenate(got[::-1], 0)
        return allrows[rows.start - k:rows.stop - k]

    @torch.no_grad()
    def _window(self, end: int, hi: int) -> list[LiveFrame]:
        """Run the window whose audio ends at frame ``end``; commit frames [committed, hi)."""
        L, D = self.L, self.D
        lo = self.committed
        start = max(0, end - L)
        t0, c0 = time.perf_counter(), time.process_time()
        audio = self._window_audio(start, end)
        a = self.model.encode(torch.from_numpy(audio)[None], self.dtype)               # (1,L,F)
        t1 = time.perf_counter()
        m_prev, a_prev = self._context(start)
        opts = self.options
        known = None
        if self.exact:
            noise = self._torch_noise
            assert noise is not None
            w = start // L
            noise.layer_draws(self.model.audio_encoder.n_layers, w)
            if self._x_T is None:
                self._x_T = noise.initial((1, L, D))
            x_T = self._x_T

            def noise_fn(i: int, t: int) -> torch.Tensor:  # noqa: ARG001
                return noise.step(w, i, (1, L, D))
        else:
            z = torch.from_numpy(self._frame_noise.rows(range(start, start + L))).to(self.model.device)
            x_T = z[0][None]                                                           # (1,L,D)

            def noise_fn(i: int, t: int) -> torch.Tensor:  # noqa: ARG001
                return z[1 + i][None]
            n_known = lo - start
            if n_known > 0:
                x0_known = torch.from_numpy(self._coef_rows(range(start, lo)))[None].to(self.model.device)
                known = KnownPrefix(x0_known, (lambda i: z[1 + i][None, :n_known]) if self.sampler.stochastic
                                    else None)
        x0 = self.model.sample_window(a, m_prev, a_prev, x_T, self.sampler, opts.cfg_scale, opts.cfg_mode,
                                      opts.pe_variant, noise_fn if self.sampler.stochastic else None,
                                      dtype=self.dtype, known=known)
        t2 = time.perf_counter()
        x0_np = x0[0].float().cpu().numpy()                                           # (L,D)
        feat = a[0].float().cpu().numpy()
        new = x0_np[lo - start:hi - start].copy()
        if self.crossfade and self._provisional is not None:
            k = min(self.crossfade, len(new), len(self._provisional))
            wgt = (np.arange(1, k + 1, dtype=np.float32) / (k + 1))[:, None]         # toward the new window
            new[:k] = (1 - wgt) * self._provisional[:k] + wgt * new[:k]
        self._provisional = x0_np[hi - start:end - start].copy() if end > hi else None
        for k in range(lo, hi):
            self._feat[k] = feat[k - start]
        for k in [k for k in self._feat if k < hi - L - self.P]:
            del self._feat[k]
        self._coef.append(new)
        self.committed = hi
        self._frame_noise.forget_before(max(0, hi + self.hop + self.lookahead - L))
        self._trim_audio(hi)
        self.n_windows += 1
        self.compute_s += t2 - t0
        self.windows.append(WindowStat(start, (lo, hi), t1 - t0, t2 - t1, t2, time.process_time() - c0))
        return self._direct(new, lo, end)

    def _trim_audio(self, committed: int) -> None:
        """Drop audio no later window or voice-level window reads."""
        keep_from = SAMPLES_PER_FRAME * max(0, committed - self.L - _EDIT_CONTEXT - 2)
        if keep_from > self._a0 + 4 * SAMPLE_RATE:
            self._audio = self._audio[keep_from - self._a0:].copy()
            self._a0 = keep_from

    # -- after sampling: de-normalise, causal EMA, controls ------------------------------------
    def _direct(self, coef: np.ndarray, lo: int, end: int) -> list[LiveFrame]:
        """Frames [lo, lo + n) from their coef rows; ``end``: how far the window's audio reached.

        As offline: de-normalise, EMA the pose (causal, state carried across hops), then the
        controls. What is window-global offline is fixed causally here (Anchors): the neutral is
        frame 0 (known when it is committed); the voice level's loud reference is the running
        95th percentile (floored); the silence gate sees the audio up to the window's end (its
        attack and short-pause rules need ``attack_s``/``min_silence_s`` of it: F·40 ms short of
        that, a pause at the edge reads as silence a little early); blinks follow the offline
        schedule (one that would have none in a clip never gets the offline fallback blink);
        eye closure is measured against the running median of the last 10 s; calm head averages
        1 s around each frame with the future held at the newest frame; there is no fade-out
        (the end is unknown; ``engine edit`` on the take applies it)."""
        n = len(coef)
        motion = denormalize(coef, self.model.template)
        if self.options.smooth:
            motion = with_pose(motion, self._ema.push(pose_vector(motion)))
        raw = {"exp": motion["exp"].reshape(n, 21, 3), "pitch": motion["pitch"].reshape(n),
               "yaw": motion["yaw"].reshape(n), "roll": motion["roll"].reshape(n), "t": motion["t"].reshape(n, 3),
               "scale": motion["scale"].reshape(n), "R": motion["R"].reshape(n, 3, 3)}
        if self._frame0 is None:
            self._frame0 = RawMotion(FPS, **{k: v[:1] for k, v in raw.items()})
        # voice level of every frame with its 40 ms window inside the audio the window read
        n_total = self.samples if self.finished else None
        known_end = SAMPLES_PER_FRAME * end - PRE_PAD                  # raw samples the window could read
        raw_audio, raw_off = self._audio, self._a0 - PRE_PAD
        self._voice.update(raw_audio, raw_off, known_end, n_total)
        loud = self._voice.loud()
        ctx_n = len(self._ctx["exp"])
        k0 = lo - ctx_n
        frames = np.arange(k0, max(end, lo + n))   # frame end-1's 40 ms ends 20 ms before known_end
        centres = SAMPLES_PER_FRAME * frames - PRE_PAD
        rms = window_rms(raw_audio, centres, SAMPLE_RATE, raw_off,
                         n_total if n_total is not None else max(known_end, 0))
        vad = level_db(rms, loud)
        self._vad.append(vad[ctx_n:ctx_n + n].astype(np.float32))
        for k in raw:
            self._raw[k].append(raw[k])
        edited = raw
        if not is_neutral(self.controls):
            times = frames / FPS + AUDIO_OFFSET_S
            gate = None
            s = self.controls.silence
            if s is not None and (s.relax or s.calm_head > 0):
                gate = silence_gate(vad, times, s.threshold_db, s.attack_s, s.release_s, s.min_silence_s)
                gate = gate[: ctx_n + n]
            piece = {k: (np.concatenate([np.stack(list(self._ctx[k])), raw[k]], 0) if ctx_n else raw[k])
                     for k in raw}
            self._eye.extend(raw["exp"].reshape(n, -1))
            anchors = Anchors(frame0=self._frame0, gate=gate, blink_until_s=float(times[-1]) + 60.0,
                              eye_median=np.median(np.stack(list(self._eye)), axis=0), fade_out=False)
            rm = RawMotion(FPS, audio_offset_s=AUDIO_OFFSET_S + k0 / FPS, **piece)
            res = edit_motion(rm, self.controls, vad[: ctx_n + n], anchors=anchors)
            edited = {k: np.asarray(v)[ctx_n:].reshape(raw[k].shape) for k, v in res.items()}
        for k in raw:
            self._ctx[k].extend(raw[k])
            self._out[k].append(np.asarray(edited[k], np.float32))
        ex = edited
        return [LiveFrame(frame=lo + j, t=float((lo + j) / FPS + AUDIO_OFFSET_S), sample=self.samples,
                          pitch=float(ex["pitch"][j]), yaw=float(ex["yaw"][j]), roll=float(ex["roll"][j]),
                          scale=float(ex["scale"][j]), trans=tuple(float(v) for v in ex["t"][j]),
                          exp=np.asarray(ex["exp"][j], np.float32).reshape(21, 3))
                for j in range(n)]
