"""Is a rendered file really the video we asked for? (bpy-free, stdlib only)

Why: the add-on must never put a broken or truncated file into the user's Sequencer. Before
any strip is added the rendered mp4 is opened here, without PyAV (Blender's Python has none):
the ISO base media boxes give the video track's frame count and the sound track's duration,
and the frame count must match the sound within one frame.
"""
from __future__ import annotations

import struct
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts", b"dinf"}


class MediaError(ValueError):
    """The file is not a usable video (the message names the file and says why)."""


@dataclass
class Track:
    handler: str = ""          # 'vide' | 'soun' | ...
    timescale: int = 0
    duration: int = 0          # in timescale units (mdhd)
    samples: int = 0           # stsz sample count (video: frames)

    @property
    def seconds(self) -> float:
        return self.duration / self.timescale if self.timescale else 0.0


#: AAC adds encoder priming and pads its last frame: a sound track's length can exceed the
#: audio it carries by up to two 1024-sample frames
AAC_SLACK_SAMPLES = 2048


@dataclass
class VideoInfo:
    frames: int
    video_s: float
    audio_s: float | None            # the sound track's length (AAC: up to 2048 samples long)
    audio_rate: int = 0

    @property
    def fps(self) -> float:
        return self.frames / self.video_s if self.video_s else 0.0


def _boxes(fh: BinaryIO, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, payload start, payload end) of each box in [start, end)."""
    pos = start
    while pos + 8 <= end:
        fh.seek(pos)
        head = fh.read(8)
        if len(head) < 8:
            return
        size, kind = struct.unpack(">I4s", head)
        body = pos + 8
        if size == 1:
            big = fh.read(8)
            if len(big) < 8:
                return
            size = struct.unpack(">Q", big)[0]
            body = pos + 16
        elif size == 0:
            size = end - pos
        if size < body - pos or pos + size > end:
            raise MediaError("a box runs past the end of the file (truncated?)")
        yield kind, body, pos + size
        pos += size


def _read(fh: BinaryIO, at: int, n: int) -> bytes:
    fh.seek(at)
    data = fh.read(n)
    if len(data) < n:
        raise MediaError("truncated box")
    return data


def _tracks(fh: BinaryIO, start: int, end: int, current: Track | None, out: list[Track]) -> None:
    for kind, a, b in _boxes(fh, start, end):
        if kind == b"trak":
            track = Track()
            out.append(track)
            _tracks(fh, a, b, track, out)
        elif kind in _CONTAINERS:
            _tracks(fh, a, b, current, out)
        elif current is None:
            continue
        elif kind == b"hdlr":
            current.handler = _read(fh, a + 8, 4).decode("latin-1")
        elif kind == b"mdhd":
            version = _read(fh, a, 1)[0]
            if version == 1:
                current.timescale, current.duration = struct.unpack(">IQ", _read(fh, a + 20, 12))
            else:
                current.timescale, current.duration = struct.unpack(">II", _read(fh, a + 12, 8))
        elif kind == b"stsz":
            current.samples = struct.unpack(">I", _read(fh, a + 8, 4))[0]


def probe_mp4(path: str | Path) -> VideoInfo:
    """Frame count and durations from the boxes; MediaError when it is not a readable video."""
    p = Path(path)
    if not p.is_file():
        raise MediaError(f"rendered video {p} does not exist")
    size = p.stat().st_size
    if size == 0:
        raise MediaError(f"rendered video {p} is empty")
    tracks: list[Track] = []
    try:
        with open(p, "rb") as fh:
            kinds = []
            for kind, a, b in _boxes(fh, 0, size):
                kinds.append(kind)
                if kind == b"moov":
                    _tracks(fh, a, b, None, tracks)
    except (MediaError, struct.error, OSError) as exc:
        raise MediaError(f"rendered video {p} is not a readable mp4: {exc}") from None
    if not kinds or kinds[0] not in (b"ftyp", b"moov", b"mdat", b"free", b"wide"):
        raise MediaError(f"rendered video {p} is not an mp4 file")
    video = next((t for t in tracks if t.handler == "vide"), None)
    if video is None or video.samples == 0 or not video.timescale:
        raise MediaError(f"rendered video {p} has no video frames (incomplete file?)")
    sound = next((t for t in tracks if t.handler == "soun" and t.timescale), None)
    return VideoInfo(frames=video.samples, video_s=video.seconds, audio_s=sound.seconds if sound else None,
                     audio_rate=sound.timescale if sound else 0)


def wav_seconds(path: str | Path) -> float | None:
    """Duration of a WAV file (stdlib ``wave``); None for other formats or odd WAVs."""
    try:
        with wave.open(str(path), "rb") as w:
            return w.getnframes() / float(w.getframerate())
    except (wave.Error, EOFError, OSError, ZeroDivisionError):
        return None


def verify_render(path: str | Path, fps: float, audio_path: str | Path | None = None,
                  tolerance_frames: int = 1) -> VideoInfo:
    """Raise MediaError unless ``path`` is a readable video whose frame count matches the audio
    at ``fps`` within ``tolerance_frames``. The reference is the input audio when it is a WAV
    (exact), else the video's own sound track (allowing for AAC's padding)."""
    info = probe_mp4(path)
    audio_s = wav_seconds(audio_path) if audio_path is not None else None
    slack = 0.0
    if audio_s is None and info.audio_s is not None:
        audio_s = info.audio_s
        slack = AAC_SLACK_SAMPLES / info.audio_rate * fps if info.audio_rate else 0.0
    if audio_s is not None and fps > 0:
        expected = audio_s * fps
        if not (expected - slack - tolerance_frames - 0.5 <= info.frames <= expected + tolerance_frames + 0.5):
            raise MediaError(f"rendered video {path} has {info.frames} frames but the audio lasts {audio_s:.2f} s "
                             f"= {expected:.0f} frames at {fps:g} fps; it was not added (render it again)")
    return info
