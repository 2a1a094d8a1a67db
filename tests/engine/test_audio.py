"""Audio input: formats, errors, windowing identical to upstream's whole-array padding."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from engine.audio import (PRE_PAD, POST_PAD, as_wave, audio_sha256, iter_windows, load_audio, pad_audio,
                          plan_windows)
from engine.errors import AudioError


def _tone(seconds: float, sr: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


@pytest.mark.parametrize("fmt,ext", [("WAV", ".wav"), ("FLAC", ".flac"), ("OGG", ".ogg"), ("MP3", ".mp3")])
def test_formats_load_as_16k_mono(tmp_path, fmt, ext):
    path = tmp_path / f"a{ext}"
    stereo = np.stack([_tone(1.0, 22050), _tone(1.0, 22050) * 0.5], 1)
    try:
        sf.write(path, stereo, 22050, format=fmt)
    except (sf.LibsndfileError, TypeError, ValueError) as exc:  # pragma: no cover - libsndfile build without it
        pytest.skip(f"libsndfile cannot write {fmt}: {exc}")
    wave = load_audio(path)
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert abs(len(wave) - 16000) < 1200       # mp3 adds encoder delay/padding
    assert 0.1 < np.abs(wave).max() < 0.5      # channel mean, no normalisation


def test_float_wav_read_bit_exact(tmp_path):
    x = np.random.default_rng(0).uniform(-0.9, 0.9, 4000).astype(np.float32)
    sf.write(tmp_path / "f.wav", x, 16000, subtype="FLOAT")
    assert np.array_equal(load_audio(tmp_path / "f.wav"), x)


def test_errors(tmp_path):
    with pytest.raises(AudioError, match="does not exist"):
        load_audio(tmp_path / "missing.wav")
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(AudioError, match="empty"):
        load_audio(tmp_path / "empty.wav")
    (tmp_path / "junk.wav").write_bytes(b"RIFF\x00\x00garbage" * 10)
    with pytest.raises(AudioError, match="cannot read"):
        load_audio(tmp_path / "junk.wav")
    sf.write(tmp_path / "zero.wav", np.zeros(0, np.float32), 16000)
    with pytest.raises(AudioError):
        load_audio(tmp_path / "zero.wav")
    with pytest.raises(AudioError):
        as_wave(np.array([], np.float32))
    with pytest.raises(AudioError):
        as_wave(np.array([0.0, np.nan], np.float32))
    with pytest.raises(AudioError, match="not a file"):
        load_audio(tmp_path)


@pytest.mark.parametrize("n_raw", [1, 100, 30000, 64000 - 1920, 64000 - 1919, 96000, 200003])
@pytest.mark.parametrize("L", [20, 100])
def test_windows_equal_whole_array_padding(n_raw, L):
    """Streaming windows == upstream's concatenate-then-slice (spec §2.6)."""
    wave = np.random.default_rng(n_raw).normal(0, 0.1, n_raw).astype(np.float32)
    plan = plan_windows(n_raw, L)
    full = np.concatenate([np.zeros(PRE_PAD, np.float32), wave, np.zeros(POST_PAD, np.float32)])
    n = len(full)
    clip_len = int(n / 16000 * 25)
    n_sub = 1 if clip_len <= L else int(np.ceil(clip_len / L))
    pad = 64000 * L // 100 * n_sub - n
    if pad > 0:
        full = np.concatenate([full, np.zeros(pad, np.float32)])
    wins = list(iter_windows(wave, plan))
    assert len(wins) == n_sub == plan.n_windows
    for i, (win, ind) in enumerate(wins):
        assert np.array_equal(win, full[640 * L * i:640 * L * (i + 1)])
        expect_zero = plan.n_pad_frames if (i == n_sub - 1 and pad > 0) else 0
        assert ind.sum() == L - expect_zero
    frames = n_sub * L - (int(np.ceil(pad / 640)) if pad > 0 else 0)
    assert plan.n_frames == frames


def test_six_seconds_example():
    plan = plan_windows(96000, 100)
    assert (plan.n_samples, plan.n_windows, plan.n_pad_frames, plan.n_frames) == (97920, 2, 47, 153)


def test_pad_audio_double_reflect():
    x = torch.arange(64000, dtype=torch.float32).unsqueeze(0)
    y = pad_audio(x)
    assert y.shape == (1, 64080)
    once = torch.nn.functional.pad(x.unsqueeze(1), (20, 20), mode="reflect")
    twice = torch.nn.functional.pad(once, (20, 20), mode="reflect").squeeze(1)
    assert torch.equal(y, twice)
    assert not torch.equal(y, torch.nn.functional.pad(x.unsqueeze(1), (40, 40), mode="reflect").squeeze(1))


def test_sha256_depends_on_samples():
    a = _tone(0.1)
    assert audio_sha256(a) == audio_sha256(a.copy())
    b = a.copy()
    b[5] += 1e-6
    assert audio_sha256(a) != audio_sha256(b) and len(audio_sha256(a)) == 64
