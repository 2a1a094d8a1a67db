"""Helpers shared by the engine tests that run real commands (one copy; imported by name:
pytest puts this folder on sys.path for the test modules in it).

Why a module and not conftest.py: these are plain functions called with arguments, and
``from conftest import`` would be ambiguous beside the other test folders' conftest files.
"""
from __future__ import annotations

import math
import os
import wave
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
SPEECH = REPO / "examples" / "speech.wav"
PORTRAIT = REPO / "examples" / "portrait.jpg"


def speech_clip(tmp: Path, seconds: float, name: str = "clip.wav") -> Path:
    """The first ``seconds`` of the bundled example speech, written to ``tmp/name``."""
    import soundfile as sf

    samples, sr = sf.read(str(SPEECH), dtype="float32")
    path = tmp / name
    sf.write(str(path), samples[: int(seconds * sr)], sr)
    return path


def engine_env() -> dict[str, str]:
    """Environment for a ``python -m engine`` subprocess: this checkout first on PYTHONPATH, one
    thread unless the caller set OMP_NUM_THREADS, and no $JOYVASA_WEIGHTS from the developer's shell."""
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("JOYVASA_WEIGHTS", None)
    return env


def write_wav(path: Path, seconds: float = 1.0, sr: int = 16000) -> Path:
    """A speech-like 16-bit mono wav (150 Hz tone in 3 Hz bursts), no example file needed."""
    t = np.arange(int(seconds * sr)) / sr
    sig = 0.3 * 0.5 * (1 + np.sin(2 * math.pi * 3 * t)) * np.sin(2 * math.pi * 150 * t)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes((sig * 32767).astype("<i2").tobytes())
    return path
