"""Streaming frame writers: mp4 (PyAV, H.264 + AAC audio) and PNG sequences.

Why streaming: upstream collects every frame in a list before writing (memory grows with
clip length); here each frame is encoded as soon as it is rendered. Why atomic: a cancelled
or crashed run must never leave a half-written video or a half-filled folder under the final
name, so writers work on a temp name and rename on success (engine/fileio.py).

Timeline: frame ``k`` is shown at ``k / fps`` and the audio track starts at 0. The caller
decides which frames to send (see engine/render/timeline.py) so that the video is in sync
with, and as long as, the audio (within one frame).
"""
from __future__ import annotations

import contextlib
import functools
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.errors import AudioError, BadRequest, OutputError
from engine.fileio import atomic_path, frames_output
from engine.jobs import CODECS

if TYPE_CHECKING:   # annotations only: PyAV is imported when a writer opens
    from types import ModuleType, TracebackType

    from av.container import OutputContainer
    from av.video.stream import VideoStream

VIDEO_CODECS = ("libx264", "h264", "libopenh264", "mpeg4")
#: what ``--codec`` accepts: auto = h264_nvenc when it works here, else libx264 (else a fallback)
CODEC_CHOICES = CODECS   # defined with the job types (engine/jobs.py), the one place options are checked
#: NVENC settings chosen to look like libx264 crf 18 / preset medium: constant-quality VBR at
#: cq 19 with no bitrate ceiling, preset p5 (slow end of the fast presets), tune hq. Its PSNR
#: against libx264 has not been measured yet (no NVIDIA card here): tools/bench_gpu.sh prints it.
NVENC_OPTIONS = {"preset": "p5", "tune": "hq", "rc": "vbr", "cq": "19", "b": "0"}
X264_OPTIONS = {"preset": "medium"}


@functools.lru_cache(maxsize=None)
def nvenc_status() -> tuple[bool, str]:
    """Can PyAV's FFmpeg encode H.264 on an NVIDIA card here? Checked once per process by
    opening ``h264_nvenc`` and encoding one small frame (the codec is listed by most PyAV wheels
    even where no driver exists; only opening it tells). Returns (usable, reason)."""
    try:
        import av
    except ImportError as exc:
        return False, f"PyAV is not installed ({exc})"
    if "h264_nvenc" not in av.codecs_available:
        return False, "this PyAV/FFmpeg build has no h264_nvenc encoder"
    try:
        ctx = av.CodecContext.create("h264_nvenc", "w")
        ctx.width, ctx.height, ctx.pix_fmt = 256, 256, "yuv420p"
        ctx.time_base, ctx.framerate = Fraction(1, 25), Fraction(25)
        ctx.options = dict(NVENC_OPTIONS)
        ctx.open()
        frame = av.VideoFrame.from_ndarray(np.zeros((256, 256, 3), np.uint8), format="rgb24").reformat(format="yuv420p")
        ctx.encode(frame)
        ctx.encode(None)
    except Exception as exc:  # noqa: BLE001 - no driver / no NVENC unit / old driver: all mean "not here"
        detail = str(exc).split(": 'avcodec_open2", 1)[0].strip() or type(exc).__name__  # drop the echoed options
        return False, f"h264_nvenc does not open here (no NVIDIA driver or NVENC unit?): {detail[:160]}"
    return True, "h264_nvenc opens and encodes"


def _encoder_works(name: str) -> bool:
    import av

    if name not in av.codecs_available:
        return False
    try:
        av.codec.Codec(name, "w")
    except Exception:  # noqa: BLE001 - decoder-only or broken build
        return False
    return True


def pick_video_codec(preferred: str = "auto") -> str:
    """The encoder for ``--codec``: ``auto`` → h264_nvenc if :func:`nvenc_status` says it works,
    else libx264, else the first fallback PyAV has; a named codec that does not work here is an
    OutputError saying what to pass instead."""
    preferred = (preferred or "auto").strip().lower()
    if preferred not in CODEC_CHOICES:
        raise BadRequest(f"unknown --codec {preferred!r}: use one of {', '.join(CODEC_CHOICES)}")
    if preferred == "h264_nvenc":
        ok, reason = nvenc_status()
        if not ok:
            raise OutputError(f"--codec h264_nvenc: {reason}; use --codec auto (falls back to libx264) or libx264")
        return "h264_nvenc"
    if preferred == "libx264":
        if not _encoder_works("libx264"):
            raise OutputError("--codec libx264: this PyAV build has no libx264 encoder; use --codec auto, "
                              "`pip install -U av`, or write a PNG sequence with --frames-dir")
        return "libx264"
    if nvenc_status()[0]:
        return "h264_nvenc"
    for name in VIDEO_CODECS:
        if _encoder_works(name):
            return name
    raise OutputError("PyAV has no usable video encoder (need libx264, h264 or mpeg4); "
                      "write a PNG sequence with --frames-dir instead")


def even_size(width: int, height: int) -> tuple[int, int]:
    """yuv420p needs even sides: drop the last row/column if odd."""
    return width - (width % 2), height - (height % 2)


def _fps_fraction(fps: float) -> Fraction:
    return Fraction(fps).limit_denominator(1001)


class FrameWriter:
    """Interface: ``with writer: writer.write(rgb_uint8_HxWx3)``; ``path`` is the final output."""

    kind = "frames"
    path: Path

    def __enter__(self) -> "FrameWriter":
        raise NotImplementedError

    def write(self, frame: np.ndarray) -> None:
        raise NotImplementedError

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        raise NotImplementedError


class Mp4Writer(FrameWriter):
    """H.264/yuv420p video at ``fps`` with the input audio muxed as AAC from time 0."""

    kind = "video"

    def __init__(self, path: Path, fps: float, width: int, height: int, audio_path: Path | None = None,
                 *, crf: int = 18, audio_max_s: float | None = None, codec: str = "auto") -> None:
        self.path = Path(path)
        self.fps = _fps_fraction(fps)
        self.width, self.height = even_size(width, height)
        self.audio_path = Path(audio_path) if audio_path else None
        self.audio_max_s = audio_max_s
        self.crf = crf
        self.codec_choice = codec
        self.codec: str | None = None        # the encoder actually used (after __enter__)
        self.fallback_reason: str | None = None  # auto: why h264_nvenc was not used after all
        self.frames_written = 0
        self._stack = contextlib.ExitStack()
        self._container: OutputContainer | None = None
        self._vstream: VideoStream | None = None

    def __enter__(self) -> "Mp4Writer":
        import av

        tmp = self._stack.enter_context(atomic_path(self.path, suffix=".mp4"))
        try:
            codec = pick_video_codec(self.codec_choice)
            try:
                self._open_video(av, tmp, codec)
            except Exception as exc:  # noqa: BLE001 - an encoder that does not open now
                self._close_container()
                if not (codec == "h264_nvenc" and self.codec_choice == "auto"):
                    raise OutputError(f"cannot open the {codec} video encoder: {exc}") from exc
                # NVENC passed the probe but not now (e.g. every NVENC session of the card is taken)
                self.fallback_reason = f"h264_nvenc did not open ({exc}); encoded with libx264"
                self._open_video(av, tmp, pick_video_codec("libx264"))
            if self.audio_path is not None:
                self._mux_audio(av)
        except BaseException as exc:
            self._close_container()
            self._stack.__exit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    def _open_video(self, av: ModuleType, tmp: Path, codec: str) -> None:
        """Container + H.264 stream with the encoder opened now, so a failure shows before any frame."""
        self._container = av.open(str(tmp), mode="w")
        self._vstream = self._container.add_stream(codec, rate=self.fps)
        self._vstream.width, self._vstream.height = self.width, self.height
        self._vstream.pix_fmt = "yuv420p"
        if codec == "libx264":
            self._vstream.options = {"crf": str(self.crf), **X264_OPTIONS}
        elif codec == "h264_nvenc":
            self._vstream.options = dict(NVENC_OPTIONS)
        elif codec == "mpeg4":
            self._vstream.bit_rate = 4_000_000
        self._vstream.codec_context.open()
        self.codec = codec

    def _mux_audio(self, av: ModuleType) -> None:
        """Decode the whole input audio and encode it as AAC now (audio is small)."""
        try:
            src = av.open(str(self.audio_path))
        except Exception as exc:  # noqa: BLE001
            raise AudioError(f"cannot read audio {self.audio_path} for muxing: {exc}") from exc
        with src:
            if not src.streams.audio:
                raise AudioError(f"{self.audio_path} has no audio stream")
            in_stream = src.streams.audio[0]
            rate = in_stream.codec_context.sample_rate or 16000
            layout = "mono" if (in_stream.codec_context.channels or 1) == 1 else "stereo"
            astream = self._container.add_stream("aac", rate=rate)
            astream.layout = layout
            resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate)
            max_samples = None if self.audio_max_s is None else int(round(self.audio_max_s * rate))
            done = 0
            fifo = av.AudioFifo()
            for frame in src.decode(in_stream):
                frame.pts = None
                for out in resampler.resample(frame):
                    fifo.write(out)
            for out in resampler.resample(None):
                fifo.write(out)
            frame_size = astream.codec_context.frame_size or 1024
            while fifo.samples:
                take = min(frame_size, fifo.samples)
                if max_samples is not None:
                    take = min(take, max_samples - done)
                    if take <= 0:
                        break
                chunk = fifo.read(take)
                chunk.pts = done
                chunk.time_base = Fraction(1, rate)
                done += chunk.samples
                for pkt in astream.encode(chunk):
                    self._container.mux(pkt)
            for pkt in astream.encode(None):
                self._container.mux(pkt)

    def write(self, frame: np.ndarray) -> None:
        import av

        frame = np.ascontiguousarray(frame[: self.height, : self.width])
        vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
        vf.pts = self.frames_written
        vf.time_base = 1 / self.fps
        for pkt in self._vstream.encode(vf):
            self._container.mux(pkt)
        self.frames_written += 1

    def _close_container(self) -> None:
        if self._container is not None:
            with contextlib.suppress(Exception):
                self._container.close()
            self._container = None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            if exc_type is None:
                for pkt in self._vstream.encode(None):
                    self._container.mux(pkt)
                self._container.close()
                self._container = None
        except BaseException as err:
            self._close_container()
            self._stack.__exit__(type(err), err, err.__traceback__)
            raise
        self._close_container()
        self._stack.__exit__(exc_type, exc, tb)


class PngSequenceWriter(FrameWriter):
    """``DIR/frame_00000.png, ...`` (RGB, lossless); frames land in the folder when complete.

    An existing folder is only written into when it holds nothing but frames of ours, or with
    ``overwrite`` (then other files stay untouched): see :func:`engine.fileio.frames_output`.
    """

    kind = "frames_dir"

    def __init__(self, folder: Path, start_index: int = 0, *, overwrite: bool = False) -> None:
        self.path = Path(folder)
        self.overwrite = overwrite
        self.index = start_index
        self._stack = contextlib.ExitStack()
        self._tmp: Path | None = None

    def __enter__(self) -> "PngSequenceWriter":
        self._tmp = self._stack.enter_context(frames_output(self.path, self.overwrite))
        return self

    def write(self, frame: np.ndarray) -> None:
        import cv2

        assert self._tmp is not None
        name = self._tmp / f"frame_{self.index:05d}.png"
        ok, data = cv2.imencode(".png", np.ascontiguousarray(frame[..., ::-1]))
        if not ok:
            raise OutputError(f"cannot encode frame {self.index} as PNG")
        # Python's own write, not cv2.imwrite: a full disk must surface as OSError(ENOSPC) -> disk_full
        with open(name, "wb") as fh:
            fh.write(data.tobytes())
        self.index += 1

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stack.__exit__(exc_type, exc, tb)


def probe_video(path: Path) -> dict[str, Any]:
    """Frame count, fps, video/audio durations of an mp4 (for tests and reports)."""
    import av

    with av.open(str(path)) as c:
        v = c.streams.video[0]
        n = sum(1 for _ in c.demux(v) if _.size)
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        info: dict[str, Any] = {"frames": n, "fps": float(v.average_rate or v.base_rate),
                                "width": v.codec_context.width, "height": v.codec_context.height,
                                "codec": v.codec_context.name, "has_audio": bool(c.streams.audio)}
        info["video_s"] = n / info["fps"]
        if c.streams.audio:
            a = c.streams.audio[0]
            samples = sum(f.samples for f in c.decode(a))
            info["audio_s"] = samples / a.codec_context.sample_rate
            info["audio_codec"] = a.codec_context.name
    return info
