"""Both sides together: an mp4 written by the engine's own writer (H.264 + AAC) passes the
add-on's stdlib render check, at several frame rates, with the input WAV or only its sound track;
a render that stopped early does not."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.render.writers import Mp4Writer
from joyvasa_blender.core import media_check as mc

SPEECH = Path(__file__).resolve().parents[2] / "examples" / "speech.wav"


def _clip(tmp: Path, seconds: float) -> Path:
    import soundfile as sf

    wave, sr = sf.read(str(SPEECH), dtype="float32")
    path = tmp / "clip.wav"
    sf.write(str(path), wave[: int(seconds * sr)], sr, subtype="PCM_16")
    return path


def _engine_mp4(tmp: Path, audio: Path, fps: float, frames: int) -> Path:
    out = tmp / f"v{fps:g}.mp4"
    with Mp4Writer(out, fps, 64, 64, audio, audio_max_s=None) as w:
        for i in range(frames):
            w.write(np.full((64, 64, 3), i % 255, np.uint8))
    return out


@pytest.mark.parametrize("fps", [24.0, 25.0, 30.0, 60.0])
def test_engine_video_passes_the_addon_check(tmp_path: Path, fps: float) -> None:
    seconds = 1.3
    audio = _clip(tmp_path, seconds)
    video = _engine_mp4(tmp_path, audio, fps, round(seconds * fps))
    info = mc.verify_render(video, fps, audio)
    assert info.frames == round(seconds * fps) and info.audio_s is not None
    mc.verify_render(video, fps, None)            # only the AAC sound track as reference
    mc.verify_render(video, fps, tmp_path / "speech.mp3")  # not a WAV: same


def test_engine_video_cut_short_fails_the_addon_check(tmp_path: Path) -> None:
    audio = _clip(tmp_path, 1.3)
    video = _engine_mp4(tmp_path, audio, 25.0, 20)   # 0.8 s of pictures for 1.3 s of speech
    for reference in (audio, None):
        with pytest.raises(mc.MediaError, match="20 frames"):
            mc.verify_render(video, 25.0, reference)
