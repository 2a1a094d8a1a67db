"""Live audio sources: a file paced at real time (or as fast as possible), pushed PCM, a microphone.

Why one queue for all three: the session thread must not care where audio comes from, and the
audio must keep arriving while a motion window is being computed (that wait is the ``queue`` of
``live_stats``). Each source runs its own producer (a pacing thread, the worker's stdin reader,
PortAudio's callback thread) that puts ``(block, arrival)`` pairs into an :class:`AudioQueue`;
the session drains it. ``arrival`` is the ``time.monotonic()`` at which the block arrived: frame
latency is measured from it.

The microphone goes through ``sounddevice`` (MIT; its Windows and macOS wheels bundle PortAudio,
Linux needs the system's ``libportaudio2``), imported only when a microphone is opened. The
backend is injectable (:class:`MicSource` ``backend=``) so tests drive a fake input stream.
"""
from __future__ import annotations

import base64
import binascii
import math
import sys
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Callable, Protocol

import numpy as np

from engine.errors import BadRequest, EngineError, missing_dependency
from engine.contract.protocol import LIVE_RATE

if TYPE_CHECKING:   # annotations only: sounddevice loads PortAudio at import
    from types import ModuleType

    from sounddevice import CallbackFlags, InputStream

RATE = LIVE_RATE
#: 20 ms: the block a paced file and the microphone deliver (PortAudio's blocksize)
BLOCK = 320
#: push_pcm: at most 1 s of audio per request (a larger block is a client bug, not a live stream)
MAX_PUSH_SAMPLES = RATE
#: audio waiting in a queue before push_pcm is refused: 30 s (the session has fallen far behind)
MAX_QUEUED_SAMPLES = 30 * RATE
#: a microphone that delivers nothing for this long is gone (unplugged, suspended)
MIC_SILENT_S = 2.0

PORTAUDIO_HINT = ("on Linux install it with `sudo apt-get install libportaudio2` (Fedora: `sudo dnf install "
                  "portaudio`, Arch: `sudo pacman -S portaudio`); the sounddevice wheels for Windows and macOS "
                  "bundle it")


class AudioDeviceError(EngineError):
    """The microphone is missing, busy, or stopped delivering audio (unplugged)."""

    code = "audio_device"


class PortAudioMissing(EngineError):
    """sounddevice is installed but the PortAudio C library is not (Linux without libportaudio2)."""

    code = "portaudio_missing"


class AudioQueue:
    """Thread-safe FIFO of ``(float32 block, arrival time)`` between one producer and the session."""

    def __init__(self, max_samples: int | None = None) -> None:
        self._items: deque[tuple[np.ndarray, float]] = deque()
        self._cond = threading.Condition()
        self._samples = 0
        self._closed = False
        self._error: BaseException | None = None
        self.max_samples = max_samples
        self.received = 0          # samples ever put

    @property
    def queued(self) -> int:
        """Samples waiting."""
        with self._cond:
            return self._samples

    @property
    def closed(self) -> bool:
        return self._closed

    def put(self, block: np.ndarray, arrival: float | None = None) -> None:
        block = np.ascontiguousarray(block, dtype=np.float32).reshape(-1)
        with self._cond:
            if self._closed:
                raise BadRequest("the live session's audio has ended (live_stop was sent)")
            if self.max_samples is not None and self._samples + len(block) > self.max_samples:
                raise BadRequest(f"the live session is {self._samples / RATE:.1f} s behind; audio refused "
                                 "(send it no faster than the session consumes it)")
            self._items.append((block, time.monotonic() if arrival is None else arrival))
            self._samples += len(block)
            self.received += len(block)
            self._cond.notify_all()

    def close(self) -> None:
        """End of audio: the session drains what is left, then flushes the stream."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def fail(self, exc: BaseException) -> None:
        """The producer failed (device unplugged): the session raises ``exc`` at its next read."""
        with self._cond:
            if self._error is None:
                self._error = exc
            self._closed = True
            self._cond.notify_all()

    def get(self, timeout: float) -> list[tuple[np.ndarray, float]] | None:
        """Every block waiting (may be empty after ``timeout``); None once closed and drained.
        Raises the producer's failure, if any, once the audio that came before it is handed out."""
        with self._cond:
            if not self._items and not self._closed and self._error is None:
                self._cond.wait(timeout)
            if not self._items:
                if self._error is not None:
                    raise self._error
                return None if self._closed else []
            items = list(self._items)
            self._items.clear()
            self._samples = 0
            return items


class AudioSource(Protocol):
    """What the session needs from a source."""

    name: str
    queue: AudioQueue

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def check(self) -> None: ...

    def close(self) -> None: ...


class FileSource:
    """An audio file played as a live source: 20 ms blocks at real time, or all at once (``fast``)."""

    name = "file"

    def __init__(self, wave: np.ndarray, pace: str = "realtime", block: int = BLOCK) -> None:
        self.wave = np.asarray(wave, np.float32).reshape(-1)
        self.pace = pace
        self.block = block
        self.queue = AudioQueue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._play, name="live-file", daemon=True)
        self._thread.start()

    def _play(self) -> None:
        t0 = time.monotonic()
        step = self.block if self.pace == "realtime" else 4 * RATE
        try:
            for start in range(0, len(self.wave), step):
                if self._stop.is_set():
                    break
                end = min(start + step, len(self.wave))
                if self.pace == "realtime":
                    wait = t0 + end / RATE - time.monotonic()   # the block exists once its last sample does
                    if wait > 0 and self._stop.wait(wait):
                        break
                self.queue.put(self.wave[start:end])
        except BaseException as exc:  # noqa: BLE001 - reported by the session
            self.queue.fail(exc)
        finally:
            self.queue.close()

    def stop(self) -> None:
        self._stop.set()

    def check(self) -> None:
        pass

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)


def decode_pcm16(pcm16: Any, rate: Any) -> np.ndarray:
    """A push_pcm payload -> float32 samples in [-1, 1); BadRequest naming what is wrong."""
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not math.isfinite(rate) or rate != RATE:
        raise BadRequest(f"push_pcm rate must be {RATE} (16 kHz mono int16), got {rate!r}; resample before sending")
    if not isinstance(pcm16, str):
        raise BadRequest("push_pcm needs 'pcm16': base64 of 16 kHz mono int16 little-endian samples")
    if len(pcm16) > 4 * (2 * MAX_PUSH_SAMPLES + 2) // 3 + 4:
        raise BadRequest(f"push_pcm block is larger than {MAX_PUSH_SAMPLES / RATE:g} s; send audio in smaller blocks "
                         "(20-100 ms is typical)")
    try:
        raw = base64.b64decode(pcm16, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("push_pcm 'pcm16' is not valid base64") from None
    if len(raw) % 2:
        raise BadRequest(f"push_pcm 'pcm16' holds {len(raw)} bytes: int16 samples need an even count")
    if len(raw) > 2 * MAX_PUSH_SAMPLES:
        raise BadRequest(f"push_pcm block is larger than {MAX_PUSH_SAMPLES / RATE:g} s; send audio in smaller blocks")
    return np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0


class PcmSource:
    """Audio pushed by the client (``push_pcm``): the TTS / agent case, or audio the add-on plays."""

    name = "pcm"

    def __init__(self, max_samples: int = MAX_QUEUED_SAMPLES) -> None:
        self.queue = AudioQueue(max_samples=max_samples)

    def push(self, pcm16: Any, rate: Any) -> int:
        """Queue one push_pcm payload; returns its sample count (BadRequest when it is bad)."""
        samples = decode_pcm16(pcm16, rate)
        if len(samples):
            self.queue.put(samples)
        return len(samples)

    def start(self) -> None:
        pass

    def stop(self) -> None:
        self.queue.close()

    def check(self) -> None:
        pass

    def close(self) -> None:
        self.queue.close()


def load_sounddevice() -> ModuleType:
    """``import sounddevice`` with the two failures a user can fix turned into coded errors."""
    try:
        import sounddevice  # noqa: PLC0415 - lazily: PortAudio is loaded at import
    except OSError as exc:   # sounddevice raises OSError('PortAudio library not found')
        raise PortAudioMissing(f"the PortAudio library is missing ({exc}), so the microphone cannot be opened; "
                               f"{PORTAUDIO_HINT}") from None
    except ImportError as exc:
        raise missing_dependency("sounddevice", exc) from None
    return sounddevice


def _device(spec: str | None) -> int | str | None:
    if spec is None or str(spec).strip() in ("", "default"):
        return None
    text = str(spec).strip()
    return int(text) if text.isdigit() else text


def list_input_devices(backend: Any = None) -> list[dict[str, Any]]:
    """``[{index, name, channels, default_rate, default}]`` for every input device (doctor)."""
    sd = backend if backend is not None else load_sounddevice()
    try:
        devices = sd.query_devices()
        default_in = sd.default.device[0] if isinstance(sd.default.device, (list, tuple)) else sd.default.device
    except EngineError:
        raise
    except Exception as exc:  # noqa: BLE001 - PortAudioError and friends
        raise AudioDeviceError(f"the audio devices cannot be listed: {exc}") from None
    return [{"index": i, "name": str(d.get("name")), "channels": int(d.get("max_input_channels", 0)),
             "default_rate": float(d.get("default_samplerate", 0.0)), "default": i == default_in}
            for i, d in enumerate(devices) if int(d.get("max_input_channels", 0)) > 0]


class MicSource:
    """The microphone through sounddevice: 16 kHz mono float32 in 20 ms blocks (PortAudio resamples).

    Why a liveness check: an unplugged USB microphone does not always raise; PortAudio may just
    stop calling back. :meth:`check` (called by the session every loop) turns an inactive stream or
    :data:`MIC_SILENT_S` without a block into :class:`AudioDeviceError`.
    """

    name = "mic"

    def __init__(self, device: str | None = None, *, backend: Any = None,
                 loader: Callable[[], Any] = load_sounddevice, clock: Callable[[], float] = time.monotonic) -> None:
        self.device = _device(device)
        self._backend = backend
        self._loader = loader
        self._clock = clock
        self.queue = AudioQueue()
        self.stream: InputStream | None = None
        self.overflows = 0
        self._last_block = 0.0
        self._stopping = False

    def probe(self) -> Any:
        """Before any work: PortAudio loads and the device exists (coded errors otherwise); the
        device's info. Opening it waits for :meth:`start`, after the warm-up window."""
        if self._backend is None:
            self._backend = self._loader()
        label = "the default input device" if self.device is None else f"input device {self.device!r}"
        try:
            return self._backend.query_devices(self.device, "input")
        except Exception as exc:  # noqa: BLE001 - ValueError (no such device), PortAudioError
            raise AudioDeviceError(f"{label} cannot be found ({exc}); plug a microphone in, or choose one of the "
                                   "devices `python -m engine doctor` lists (--mic NAME or INDEX)") from None

    def start(self) -> None:
        info = self.probe()
        sd = self._backend
        label = "the default input device" if self.device is None else f"input device {self.device!r}"
        try:
            self.stream = sd.InputStream(samplerate=RATE, channels=1, dtype="float32", blocksize=BLOCK,
                                         device=self.device, latency="low", callback=self._callback,
                                         finished_callback=self._finished)
            self.stream.start()
        except Exception as exc:  # noqa: BLE001
            raise AudioDeviceError(f"{label} ({info.get('name', '?') if isinstance(info, dict) else info}) "
                                   f"cannot be opened at 16 kHz mono: {exc}; is another program using it?") from None
        self._last_block = self._clock()

    def _callback(self, indata: np.ndarray, frames: int, time_info: Any,  # noqa: ARG002
                  status: CallbackFlags) -> None:
        if status and getattr(status, "input_overflow", False):
            self.overflows += 1
        self._last_block = self._clock()
        try:
            self.queue.put(np.asarray(indata, np.float32)[:, 0].copy())
        except BadRequest:
            pass  # closed: the session is stopping

    def _finished(self) -> None:
        if not self._stopping:
            self.queue.fail(AudioDeviceError("the microphone stream ended by itself (device unplugged or "
                                             "switched off?)"))

    def check(self) -> None:
        if self.stream is None or self._stopping:
            return
        if not getattr(self.stream, "active", True):
            self.queue.fail(AudioDeviceError("the microphone stopped (device unplugged or switched off?)"))
        elif self._clock() - self._last_block > MIC_SILENT_S:
            self.queue.fail(AudioDeviceError(f"the microphone delivered no audio for {MIC_SILENT_S:g} s "
                                             "(device unplugged or suspended?)"))

    def stop(self) -> None:
        self._stopping = True
        self.queue.close()

    def close(self) -> None:
        self._stopping = True
        stream, self.stream = self.stream, None
        if stream is not None:
            for method in ("stop", "close"):
                try:
                    getattr(stream, method)()
                except Exception as exc:  # noqa: BLE001 - a vanished device may refuse to stop
                    print(f"microphone {method}: {exc}", file=sys.stderr, flush=True)
        self.queue.close()


def microphones_report(backend: Any = None) -> dict[str, Any]:
    """For ``doctor``: ``{"devices": [...]}`` or ``{"error": code, "message": why}``; never raises
    (a machine without a microphone is still ready for offline takes)."""
    try:
        return {"devices": list_input_devices(backend)}
    except EngineError as exc:
        return {"devices": [], "error": exc.code, "message": str(exc)}
    except Exception as exc:  # noqa: BLE001 - report, never crash doctor
        return {"devices": [], "error": "audio_device", "message": f"{type(exc).__name__}: {exc}"}
