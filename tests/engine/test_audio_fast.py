"""The librosa-free audio reader returns exactly what ``librosa.load(sr=16000, mono=True)`` returns."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from engine.audio import SAMPLE_RATE, _load_soundfile, load_audio

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("sr,channels,fmt", [(16000, 1, "WAV"), (44100, 2, "WAV"), (22050, 1, "FLAC"),
                                             (48000, 2, "OGG"), (8000, 1, "WAV")])
def test_identical_to_librosa(tmp_path: Path, sr: int, channels: int, fmt: str) -> None:
    import librosa

    speech, speech_sr = sf.read(str(REPO / "examples" / "speech.wav"), dtype="float32")
    n = int(1.3 * sr)
    t = np.arange(n) / sr
    base = np.interp(t, np.arange(len(speech)) / speech_sr, speech).astype(np.float32)
    data = np.stack([base, 0.5 * np.roll(base, 17)], 1)[:, :channels] if channels > 1 else base
    path = tmp_path / f"a.{fmt.lower()}"
    sf.write(str(path), data, sr, format=fmt)
    expect, _ = librosa.load(str(path), sr=SAMPLE_RATE, mono=True)
    got = _load_soundfile(path)
    assert got is not None and got.dtype == expect.dtype
    np.testing.assert_array_equal(got, expect)
    np.testing.assert_array_equal(load_audio(path), expect)


def test_unreadable_by_libsndfile_falls_back(tmp_path: Path) -> None:
    path = tmp_path / "noise.wav"
    path.write_bytes(b"RIFF not really a wave file" * 10)
    assert _load_soundfile(path) is None
