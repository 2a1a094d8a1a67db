"""A live session: audio from a source -> the streaming sampler -> ``live_*`` events, outputs, and a take.

Why its own loop (and not the stream's): the session owns the clocks. It drains every block the
source queued since the last window (audio keeps arriving while a window is computed), feeds the
stream, and for each committed frame emits one ``live_frame`` (in order, none dropped) and sends
it to the network outputs. It measures each frame's latency, audio arrival -> event, which is
what the steady-state playout delay D of ``live_stats`` is made of. At the end (source closed
by ``live_stop`` / end of file) it flushes the stream; :func:`write_take` then writes the WAV and
the motion file together, atomically: both or neither.

Threads: :meth:`LiveSession.run` runs in one thread (the worker's main thread, or the CLI's);
:meth:`stop` may be called from any other. Cancellation is the runner's token, polled each loop.
"""
from __future__ import annotations

import contextlib
import time
import wave
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from engine.errors import Cancelled
from engine.live.outputs import Outputs
from engine.live.sources import RATE, AudioSource
from engine.contract.protocol import LIVE_FPS

if TYPE_CHECKING:
    from engine.contract.npz_reader import MotionData
    from engine.live.stream import LiveFrame, MotionStream
    from engine.runner import CancelToken

#: seconds between ``live_stats`` events
STATS_INTERVAL_S = 1.0
#: frames the steady-state delay is measured over (the worst latency of the last 10 s)
DELAY_FRAMES = 250
#: the part of the playout delay after the event: mic block, OS input, IPC, one timer tick, draw
T_IO_S = 0.05
#: how long one read of the source waits before the loop checks cancel and the microphone
POLL_S = 0.05
#: audio samples per 25 fps frame
SAMPLES_PER_FRAME = RATE // LIVE_FPS


def predicted_delay(hop: int, lookahead: int, window_s: float) -> float:
    """D(H, F) = (H + F) / 25 + t_win + t_io (docs/live.md, the latency arithmetic)."""
    return (hop + lookahead) / LIVE_FPS + window_s + T_IO_S


def frame_motion(frame: LiveFrame) -> dict[str, Any]:
    """A committed frame as the ``motion`` object of its ``live_frame`` event."""
    return {"pitch": float(frame.pitch), "yaw": float(frame.yaw), "roll": float(frame.roll),
            "scale": float(frame.scale), "trans": [float(v) for v in np.asarray(frame.trans).reshape(3)],
            "exp": [float(v) for v in np.asarray(frame.exp).reshape(63)]}


@dataclass
class SessionStats:
    """What ``live_stats`` reports and the bench reads."""

    frames: int = 0
    windows: list[float] = field(default_factory=list)       # seconds per stream call that committed
    latencies: list[float] = field(default_factory=list)     # per frame: event wall - audio arrival
    lags: list[tuple[float, float]] = field(default_factory=list)   # (wall, lag_s) at each stats tick
    received: int = 0                                         # samples

    def delay(self) -> float | None:
        recent = self.latencies[-DELAY_FRAMES:]
        return max(recent) + T_IO_S if recent else None


class _Arrivals:
    """Arrival time of each audio sample, by block; the blocks before the oldest still needed are dropped."""

    def __init__(self) -> None:
        self._blocks: deque[tuple[int, float]] = deque()   # (first sample after the block, arrival)

    def add(self, end_sample: int, arrival: float) -> None:
        self._blocks.append((end_sample, arrival))

    def of(self, sample: int) -> float | None:
        while len(self._blocks) > 1 and self._blocks[0][0] <= sample:
            self._blocks.popleft()
        return self._blocks[0][1] if self._blocks else None


class LiveSession:
    """One streamed take. ``stream`` is an engine.live.stream.MotionStream (or anything with its
    ``feed``/``finish``); ``emit(type, **fields)`` sends events; ``clock()`` is the events' engine
    clock (the ``wall`` of ``live_frame``)."""

    def __init__(self, stream: MotionStream, source: AudioSource, emit: Callable[..., Any], *, hop: int,
                 lookahead: int, clock: Callable[[], float] = time.monotonic, outputs: Outputs | None = None,
                 cancel: CancelToken | None = None, window_s: float = 0.0,
                 stats_interval: float = STATS_INTERVAL_S,
                 on_frame: Callable[[LiveFrame, float], None] | None = None) -> None:
        self.stream = stream
        self.source = source
        self.emit = emit
        self.hop, self.lookahead = hop, lookahead
        self.clock = clock
        self.outputs = outputs
        self.cancel = cancel
        self.window_s = window_s
        self.stats_interval = stats_interval
        self.on_frame = on_frame
        self.stats = SessionStats()
        self._captured: list[np.ndarray] = []
        self._arrivals = _Arrivals()
        self._started = False
        self._last_stats = 0.0
        self._last_t = float("-inf")
        self._audio_t0 = time.monotonic()
        #: the constant delay the network outputs play frames at (the predicted D)
        self.playout_delay = predicted_delay(hop, lookahead, window_s)

    # -- control ------------------------------------------------------------------------------
    def stop(self) -> None:
        """End of audio (``live_stop``): the run loop drains the source, flushes and returns."""
        self.source.stop()

    @property
    def audio(self) -> np.ndarray:
        """The captured audio so far, int16 (what the take's WAV holds)."""
        return np.concatenate(self._captured) if self._captured else np.zeros(0, np.int16)

    # -- the loop -----------------------------------------------------------------------------
    def run(self) -> None:
        """Until the source is closed: drain, feed, emit. Then flush the stream. Raises
        :class:`engine.errors.Cancelled` on cancel and the source's error (a lost microphone)."""
        while True:
            self._check_cancel()
            self.source.check()
            items = self.source.queue.get(POLL_S)
            if items is None:
                break
            if items:
                self._feed([b for b, _ in items], [a for _, a in items])
            self._maybe_stats()
        self._check_cancel()
        if self.stats.received:
            self._commit(self._timed(self.stream.finish))
        self._stats_event()

    def _check_cancel(self) -> None:
        if self.cancel is not None and self.cancel.is_set:
            raise Cancelled("live", self.stats.frames)

    def _feed(self, blocks: Sequence[np.ndarray], arrivals: Sequence[float]) -> None:
        for block, arrival in zip(blocks, arrivals):
            if not self._started and len(block):
                self._started = True
                self.emit("live_started", rate=RATE, fps=LIVE_FPS, hop=self.hop, lookahead=self.lookahead,
                          source=self.source.name, delay_s=round(self.playout_delay, 3))
            if self.stats.received == 0:
                self._audio_t0 = arrival
            self.stats.received += len(block)
            self._arrivals.add(self.stats.received, self._to_clock(arrival))
            self._captured.append(np.clip(np.round(block * 32768.0), -32768, 32767).astype(np.int16))
        samples = np.concatenate(blocks) if len(blocks) > 1 else np.asarray(blocks[0], np.float32)
        # a backlog goes in one hop of audio at a time: each window's frames go out as soon as that
        # window is done (not after the whole backlog), and cancel is seen between windows
        step = max(1, self.hop) * SAMPLES_PER_FRAME
        for start in range(0, len(samples), step):
            self._check_cancel()
            chunk = samples[start:start + step]
            self._commit(self._timed(lambda: self.stream.feed(chunk)))

    def _to_clock(self, arrival: float) -> float:
        """A source's ``time.monotonic()`` arrival on the session's clock."""
        return arrival + (self.clock() - time.monotonic())

    def _timed(self, call: Callable[[], Sequence[Any]]) -> Sequence[Any]:
        """Run a stream call; record the compute of every window it ran (the stream's own
        ``windows`` statistics when it keeps them, else the call's time split evenly)."""
        t0 = time.perf_counter()
        n0 = getattr(self.stream, "n_windows", None)
        frames = call()
        if n0 is not None:
            new = int(self.stream.n_windows) - int(n0)
            if new > 0:
                self.stats.windows += [float(w.seconds) for w in list(self.stream.windows)[-new:]]
        elif frames:
            n = max(1, round(len(frames) / max(1, self.hop)))
            self.stats.windows += [(time.perf_counter() - t0) / n] * n
        return frames

    def _commit(self, frames: Sequence[Any]) -> None:
        for f in frames:
            expected = self.stats.frames
            if int(f.frame) != expected:
                raise RuntimeError(f"the stream committed frame {f.frame} where {expected} was due")
            if not float(f.t) > self._last_t:
                raise RuntimeError(f"the stream's frame {f.frame} has t {f.t} <= {self._last_t}")
            self._last_t = float(f.t)
            wall = self.clock()
            sample = int(getattr(f, "sample", self.stats.received))
            arrival = self._arrivals.of(max(0, int(round(float(f.t) * RATE))))
            latency = wall - arrival if arrival is not None else 0.0
            self.stats.latencies.append(latency)
            self.emit("live_frame", frame=int(f.frame), t=float(f.t), wall=round(wall, 4), sample=sample,
                      motion=frame_motion(f))
            self.stats.frames += 1
            if self.outputs is not None:
                self.outputs.submit(f, self._due(float(f.t)))
            if self.on_frame is not None:
                self.on_frame(f, latency)

    def _due(self, t: float) -> float:
        """When a frame showing audio time ``t`` is due at the network outputs (``time.monotonic``):
        the first sample's arrival + t + the predicted playout delay D (constant for the session)."""
        return self._audio_t0 + max(0.0, t) + self.playout_delay

    def _maybe_stats(self) -> None:
        now = self.clock()
        if now - self._last_stats >= self.stats_interval:
            self._stats_event()

    def _stats_event(self) -> None:
        now = self.clock()
        self._last_stats = now
        if not self._started:
            return
        committed_s = (self._last_t + 1.0 / LIVE_FPS) if self.stats.frames else 0.0
        lag = max(0.0, self.stats.received / RATE - committed_s)
        self.stats.lags.append((now, lag))
        w = self.stats.windows
        delay = self.stats.delay()
        self.emit("live_stats", delay_s=None if delay is None else round(delay, 3),
                  window_s=round(w[-1], 4) if w else None, window_mean_s=round(float(np.mean(w)), 4) if w else None,
                  queue=int(self.source.queue.queued), dropped=0, lag_s=round(lag, 3), frames=self.stats.frames)


def write_wav(path: Path, samples: np.ndarray) -> None:
    """16 kHz mono int16 WAV (stdlib ``wave``: no dependency, exactly the pushed samples)."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(np.asarray(samples, "<i2").tobytes())


def write_take(motion: MotionData, audio: np.ndarray, out: Path, wav: Path) -> dict[str, str]:
    """Write the captured WAV and the motion file atomically, both or neither; the ``done`` outputs."""
    from engine.fileio import atomic_path
    from engine.motion.npz import save_motion

    motion_path: Path | None = None
    try:
        with atomic_path(Path(wav)) as tmp_wav:
            write_wav(tmp_wav, audio)
            motion_path = save_motion(Path(out), motion)   # renamed into place first; the WAV right after
    except BaseException:
        if motion_path is not None:        # the WAV's rename failed: take the motion file back out
            with contextlib.suppress(OSError):
                motion_path.unlink()
        raise
    return {"motion_npz": str(motion_path), "audio_wav": str(wav)}
