"""Audio input: any file librosa/soundfile reads -> 16 kHz mono float32, and upstream windowing.

Upstream (spec §2.3, §2.6): ``librosa.load(path, sr=16000, mono=True)`` (soxr_hq resampling,
channel mean, no amplitude normalisation), 1280 zero samples prepended and 640 appended, then
windows of ``640·L`` samples (L = frames per window at 25 fps), the last one zero-padded.
Windows are produced one at a time (:func:`iter_windows`) so a long file never needs more than
the waveform plus one window's work.
"""
from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from engine.errors import AudioError

SAMPLE_RATE = 16000
PRE_PAD = 1280    # 2 frames of silence at 25 fps (frame k <-> audio time k/25 - 0.08 s)
POST_PAD = 640    # 1 frame
SAMPLES_PER_FRAME = 640  # 16000 / 25


def load_audio(path: str | os.PathLike[str]) -> np.ndarray:
    """Read ``path`` as 16 kHz mono float32 exactly like upstream (no normalisation)."""
    from engine.pathguard import input_problem

    path = Path(path)
    problem = input_problem(path)
    if problem:
        raise AudioError(f"audio file {path} {problem}")
    if path.stat().st_size == 0:
        raise AudioError(f"audio file {path} is empty (0 bytes)")
    import warnings

    try:
        wave = _load_soundfile(path)
        if wave is None:  # a format libsndfile cannot decode: librosa's audioread fallback
            import librosa

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # librosa's audioread fallback warning for mp3 etc.
                wave, _ = librosa.load(str(path), sr=SAMPLE_RATE, mono=True)
    except AudioError:  # our own finding (NaN/inf samples): not a format problem
        raise
    except Exception as exc:  # noqa: BLE001 - decoder errors come in many types
        if "not finite" in str(exc):  # librosa refuses NaN/inf samples while resampling: not a format problem
            raise AudioError(f"audio file {path} contains NaN or infinite samples; export it again from "
                             "your audio editor") from None
        detail = str(exc).strip() or "the file is corrupt or not in a format soundfile/audioread can decode"
        raise AudioError(f"cannot read audio file {path} ({type(exc).__name__}): {detail}. "
                         "Use WAV, FLAC, OGG or MP3") from exc
    wave = np.ascontiguousarray(wave, dtype=np.float32)
    if wave.size == 0:
        raise AudioError(f"audio file {path} contains no samples")
    if not np.all(np.isfinite(wave)):
        raise AudioError(f"audio file {path} contains NaN or infinite samples; export it again from "
                         "your audio editor")
    return wave


def _load_soundfile(path: Path) -> np.ndarray | None:
    """``librosa.load(path, sr=16000, mono=True)`` step for step, without importing librosa.

    Why: importing librosa costs ~1-2 CPU-seconds of a cold start. The same calls in the same
    order (soundfile float32 read, channel mean, soxr_hq resampling, length fixed to
    ceil(n·ratio)) give bit-identical samples (tests/engine/test_audio_fast.py). Returns None
    when libsndfile cannot open the file, so the caller can use librosa's audioread fallback.
    """
    import soundfile as sf

    try:
        with sf.SoundFile(str(path)) as fh:
            sr_native = fh.samplerate
            y = fh.read(frames=-1, dtype="float32", always_2d=False).T
    except sf.SoundFileRuntimeError:
        return None
    if y.ndim > 1:
        y = np.mean(y, axis=tuple(range(y.ndim - 1)))                     # librosa.to_mono
    if not np.all(np.isfinite(y)):
        raise AudioError(f"audio file {path} contains NaN or infinite samples; export it again from "
                         "your audio editor")
    if sr_native != SAMPLE_RATE and y.size:
        import soxr

        n_out = int(np.ceil(y.shape[-1] * float(SAMPLE_RATE) / sr_native))
        y_hat = soxr.resample(y, sr_native, SAMPLE_RATE, quality="soxr_hq")
        if y_hat.shape[-1] > n_out:                                        # librosa.util.fix_length
            y_hat = y_hat[:n_out]
        elif y_hat.shape[-1] < n_out:
            y_hat = np.pad(y_hat, (0, n_out - y_hat.shape[-1]))
        y = np.asarray(y_hat, dtype=y.dtype)
    return y


def as_wave(audio: str | os.PathLike[str] | np.ndarray) -> np.ndarray:
    """A path is loaded; an array is taken as 16 kHz mono samples (validated)."""
    if isinstance(audio, np.ndarray):
        wave = np.ascontiguousarray(audio, dtype=np.float32).reshape(-1)
        if wave.size == 0:
            raise AudioError("audio contains no samples")
        if not np.all(np.isfinite(wave)):
            raise AudioError("audio contains NaN or infinite samples")
        return wave
    return load_audio(audio)


def audio_sha256(wave: np.ndarray) -> str:
    """SHA-256 of the float32 little-endian PCM actually used."""
    return hashlib.sha256(np.ascontiguousarray(wave, dtype="<f4").tobytes()).hexdigest()


@dataclass(frozen=True)
class WindowPlan:
    """How upstream cuts a padded waveform into model windows (spec §2.6)."""

    n_samples: int       # samples after the 1280/640 silence pads (n')
    window_frames: int   # L
    n_windows: int
    pad: int             # samples appended to fill the last window (may be <= 0: none)
    n_pad_frames: int    # frames trimmed from the last window

    @property
    def window_samples(self) -> int:
        return SAMPLES_PER_FRAME * self.window_frames

    @property
    def n_frames(self) -> int:
        return self.n_windows * self.window_frames - max(0, self.n_pad_frames)


def plan_windows(n_raw: int, window_frames: int, fps: float = 25.0) -> WindowPlan:
    n = n_raw + PRE_PAD + POST_PAD
    clip_len = int(n / SAMPLE_RATE * fps)
    n_sub = 1 if clip_len <= window_frames else math.ceil(clip_len / window_frames)
    pad = SAMPLES_PER_FRAME * window_frames * n_sub - n
    n_pad_frames = math.ceil(pad / SAMPLES_PER_FRAME) if pad > 0 else 0
    return WindowPlan(n, window_frames, n_sub, pad, n_pad_frames)


def iter_windows(wave: np.ndarray, plan: WindowPlan, pad_mode: str = "zero") -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(window_audio (640L,), indicator (L,))`` per window without padding the whole file."""
    W = plan.window_samples
    L = plan.window_frames
    n_body = len(wave)
    fill = float(wave[-1]) if (pad_mode == "replicate" and n_body) else 0.0
    for i in range(plan.n_windows):
        # window covers padded positions [W*i, W*(i+1)); padded = [0]*1280 + wave + [0]*640 + [fill]*pad
        out = np.zeros(W, dtype=np.float32)
        lo, hi = W * i, W * (i + 1)
        a, b = max(lo, PRE_PAD), min(hi, PRE_PAD + n_body)
        if b > a:
            out[a - lo:b - lo] = wave[a - PRE_PAD:b - PRE_PAD]
        tail_start = PRE_PAD + n_body + POST_PAD
        if fill != 0.0 and hi > tail_start:
            out[max(tail_start, lo) - lo:] = fill
        ind = np.ones(L, dtype=np.float32)
        if i == plan.n_windows - 1 and plan.n_pad_frames > 0:
            ind[-plan.n_pad_frames:] = 0
        yield out, ind


def pad_audio(x, unit: int = 320, threshold: int = 80):
    """Upstream ``pad_audio`` on a (B, n) tensor: two successive reflect pads of r samples, then
    one edge-replicated sample per side if needed (spec §2.3). 64,000 -> 64,080 samples."""
    import torch.nn.functional as F

    n = x.shape[-1]
    side = math.ceil((unit * (n // unit) + threshold - n) / 2)
    a = x.unsqueeze(1)                                   # (B,1,n)
    if side >= 0:
        r, rep = side // 2, side % 2
        if r > 0:
            a = F.pad(a, (r, r), mode="reflect")
            a = F.pad(a, (r, r), mode="reflect")         # twice, as upstream
        if rep > 0:
            a = F.pad(a, (1, 1), mode="replicate")
    return a.squeeze(1)                                  # (B,n+4r+2rep)
