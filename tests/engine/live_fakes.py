"""Test doubles for the live tests (tests only, never shipped): a scripted motion stream with
MotionStream's interface, and a fake sounddevice backend whose input stream the test drives."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

SPF = 640  # samples per 25 fps frame


@dataclass
class FakeFrame:
    frame: int
    t: float
    sample: int
    pitch: float
    yaw: float
    roll: float
    scale: float
    trans: np.ndarray
    exp: np.ndarray


class FakeStream:
    """Commits frames in hops of H once F frames of look-ahead exist; values depend on (seed, frame)
    only; ``delay`` seconds of "compute" per window (so a stop or cancel can land mid-window)."""

    def __init__(self, hop: int = 5, lookahead: int = 2, seed: int = 0, delay: float = 0.0,
                 entered: threading.Event | None = None) -> None:
        self.hop, self.lookahead, self.seed, self.delay = hop, lookahead, seed, delay
        self.received = 0
        self.frames: list[FakeFrame] = []
        self.entered = entered

    def _frame(self, k: int) -> FakeFrame:
        rng = np.random.default_rng([self.seed, k])
        return FakeFrame(frame=k, t=k / 25.0, sample=self.received, pitch=float(rng.normal(0, 3)),
                         yaw=float(rng.normal(0, 3)), roll=float(rng.normal(0, 2)), scale=1.0 + 0.01 * k % 3,
                         trans=rng.normal(0, 0.01, 3).astype(np.float32),
                         exp=rng.normal(0, 0.01, (21, 3)).astype(np.float32))

    def _commit(self, upto: int) -> list[FakeFrame]:
        out = []
        while len(self.frames) + self.hop <= upto:
            if self.entered is not None:
                self.entered.set()
            time.sleep(self.delay)
            for _ in range(self.hop):
                f = self._frame(len(self.frames))
                self.frames.append(f)
                out.append(f)
        return out

    def feed(self, samples: np.ndarray) -> list[FakeFrame]:
        assert samples.dtype == np.float32 and samples.ndim == 1
        self.received += len(samples)
        return self._commit(self.received // SPF - self.lookahead)

    def finish(self) -> list[FakeFrame]:
        n = -(-self.received // SPF)
        out = self._commit(n - n % self.hop)
        rest = [self._frame(k) for k in range(len(self.frames), n)]
        self.frames += rest
        return out + rest

    def take_motion(self) -> Any:
        from engine.motion.npz import MotionData

        fr = self.frames
        n = len(fr)
        return MotionData(fps=25.0, exp=np.stack([f.exp for f in fr]), scale=np.array([f.scale for f in fr], np.float32),
                          t=np.stack([f.trans for f in fr]), pitch=np.array([f.pitch for f in fr], np.float32),
                          yaw=np.array([f.yaw for f in fr], np.float32), roll=np.array([f.roll for f in fr], np.float32),
                          R=np.repeat(np.eye(3, dtype=np.float32)[None], n, 0), coef=np.zeros((n, 70), np.float32),
                          meta={"seed": np.int64(self.seed)})


class FakeInputStream:
    """sounddevice.InputStream's shape: the test calls :meth:`deliver` (PortAudio's callback thread)."""

    def __init__(self, **kw: Any) -> None:
        self.kw = kw
        self.active = False
        self.closed = False

    def start(self) -> None:
        self.active = True

    def stop(self) -> None:
        self.active = False

    def close(self) -> None:
        self.closed = True

    def deliver(self, samples: np.ndarray) -> None:
        self.kw["callback"](np.asarray(samples, np.float32).reshape(-1, 1), len(samples), None, None)

    def unplug(self) -> None:
        """What PortAudio does when the device disappears: the stream stops, finished_callback runs."""
        self.active = False
        self.kw["finished_callback"]()


class FakeSoundDevice:
    """The sounddevice module's surface MicSource uses."""

    def __init__(self, devices: list[dict[str, Any]] | None = None) -> None:
        self.devices = devices if devices is not None else [
            {"name": "Fake USB Mic", "max_input_channels": 1, "default_samplerate": 48000.0},
            {"name": "Speakers", "max_input_channels": 0, "default_samplerate": 48000.0}]
        self.streams: list[FakeInputStream] = []

        class _Default:
            device = (0, 1)
        self.default = _Default()

    def query_devices(self, device: Any = None, kind: str | None = None) -> Any:
        if kind is None and device is None:
            return self.devices
        inputs = [(i, d) for i, d in enumerate(self.devices) if d["max_input_channels"] > 0]
        if not inputs:
            raise ValueError("No input device matching")
        if device is None:
            return inputs[0][1]
        for i, d in inputs:
            if device == i or (isinstance(device, str) and device.lower() in d["name"].lower()):
                return d
        raise ValueError(f"No input device matching {device!r}")

    def InputStream(self, **kw: Any) -> FakeInputStream:  # noqa: N802 - sounddevice's name
        s = FakeInputStream(**kw)
        self.streams.append(s)
        return s
