"""Live playout on the Blender side (bpy-free): the worker's live events -> one motion row per tick.

Why a playout buffer: the engine commits frames in bursts of H (one hop) after each window's
compute, and the pipe adds jitter, so showing each frame when it arrives would stutter. The
player instead presents audio time ``playout = audio_now - D`` on the worker's audio clock, at a
constant delay D, interpolating between the two frames around it. D starts at the engine's
predicted delay (``live_started.delay_s``) plus a margin; frames that arrive after their playout
time are counted (``late``) and, when they keep coming late, D grows once to the measured delay
(never shrinks: a constant delay keeps lips and sound together).

The audio clock: the session's audio time 0 is when the first sample entered it, which is when
``live_started`` is emitted; a frame committed when the engine had received ``sample`` samples
proves that audio time had reached ``sample / rate`` by its arrival, so the anchor (local clock
at audio time 0) is the earliest of these observations. Frame ``t`` is the audio time the frame
shows (the motion file's clock), so a frame is due at local time ``anchor + t + D``.

The record buffer keeps every streamed frame, in the motion file's arrays, to check the take the
engine writes at ``live_stop`` against what was shown (the keys must equal the streamed frames).
"""
from __future__ import annotations

import bisect
import math
import queue
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np

if TYPE_CHECKING:
    from .motion_core import Motion
    from .retarget import Preset, RigGeometry

FPS = 25.0
RATE = 16000
#: added to the predicted delay: the pipe, the reader thread and the timer's own period
DELAY_MARGIN_S = 0.12
#: this many late frames within LATE_WINDOW_S make D grow to the measured delay (+ margin)
LATE_LIMIT = 3
LATE_WINDOW_S = 2.0
#: frames kept for playout behind the playout time (the record buffer keeps all)
KEEP_BEHIND_S = 1.0

#: the Live panel's latency choices: (id, label, description, hop H, lookahead F); None = the
#: engine's default (Balanced sends neither, so the engine's tuned defaults apply)
LATENCY_PRESETS: tuple[tuple[str, str, str, int | None, int | None], ...] = (
    ("LOW", "Low Latency", "Small hops (H 5, F 2): the shortest delay; needs a GPU to keep up", 5, 2),
    ("BALANCED", "Balanced", "The engine's default hop and look-ahead", None, None),
    ("SMOOTH", "Smooth", "Long hops with more look-ahead (H 25, F 10): lips anticipate speech better, "
     "longer delay; for slow CPUs", 25, 10),
)


def latency_fields(preset_id: str) -> dict[str, int]:
    """The live job's ``hop`` / ``lookahead`` for a latency choice (empty = the engine's defaults)."""
    for pid, _label, _desc, hop, look in LATENCY_PRESETS:
        if pid == preset_id:
            return {k: v for k, v in (("hop", hop), ("lookahead", look)) if v is not None}
    raise ValueError(f"unknown latency choice {preset_id!r}: use one of {', '.join(p[0] for p in LATENCY_PRESETS)}")


class LiveEventError(ValueError):
    """A live event that does not follow the protocol (the message says which field)."""


@dataclass
class LiveFrame:
    """One committed frame (``live_frame``), in the motion file's units."""
    frame: int
    t: float                 # audio time the frame shows (s)
    sample: int              # samples the session had received when it was committed
    wall: float              # engine clock (s), informative only
    pitch: float             # degrees
    yaw: float
    roll: float
    scale: float
    trans: np.ndarray        # (3,)
    exp: np.ndarray          # (21, 3)


def _num(d: dict[str, Any], key: str, where: str) -> float:
    v = d.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise LiveEventError(f"{where}: field {key!r} must be a finite number, got {v!r}")
    return float(v)


def parse_frame(ev: dict[str, Any]) -> LiveFrame:
    """A ``live_frame`` event -> LiveFrame; LiveEventError names the bad field."""
    where = f"live_frame {ev.get('frame')!r}"
    m = ev.get("motion")
    if not isinstance(m, dict):
        raise LiveEventError(f"{where}: no motion object")
    frame = ev.get("frame")
    if isinstance(frame, bool) or not isinstance(frame, int) or frame < 0:
        raise LiveEventError(f"{where}: frame must be an int >= 0")
    try:
        trans = np.asarray(m.get("trans"), np.float64).reshape(3)
        exp = np.asarray(m.get("exp"), np.float64).reshape(21, 3)
    except (TypeError, ValueError):
        raise LiveEventError(f"{where}: motion.trans must have 3 numbers and motion.exp 63") from None
    if not (np.isfinite(trans).all() and np.isfinite(exp).all()):
        raise LiveEventError(f"{where}: motion has a non-finite value")
    return LiveFrame(frame=frame, t=_num(ev, "t", where), sample=int(_num(ev, "sample", where)),
                     wall=float(ev.get("wall") or 0.0), pitch=_num(m, "pitch", where), yaw=_num(m, "yaw", where),
                     roll=_num(m, "roll", where), scale=_num(m, "scale", where), trans=trans, exp=exp)


@dataclass
class Row:
    """What the rig shows now: one (interpolated) motion row."""
    t: float
    pitch: float
    yaw: float
    roll: float
    scale: float
    trans: np.ndarray
    exp: np.ndarray          # (21, 3)


def _lerp(a: LiveFrame, b: LiveFrame, w: float, t: float) -> Row:
    return Row(t, a.pitch + (b.pitch - a.pitch) * w, a.yaw + (b.yaw - a.yaw) * w, a.roll + (b.roll - a.roll) * w,
               a.scale + (b.scale - a.scale) * w, a.trans + (b.trans - a.trans) * w, a.exp + (b.exp - a.exp) * w)


def _row(a: LiveFrame) -> Row:
    return Row(a.t, a.pitch, a.yaw, a.roll, a.scale, a.trans.copy(), a.exp.copy())


@dataclass
class Player:
    """The playout buffer. Times are the caller's monotonic clock (seconds); call :meth:`feed`
    with each drained event and :meth:`sample` once per tick."""
    margin_s: float = DELAY_MARGIN_S
    rate: int = RATE
    fps: float = FPS
    delay_s: float = 0.0                 # D in use
    predicted_s: float | None = None     # the engine's predicted D (live_started / live_stats)
    anchor: float | None = None          # local time of audio time 0
    frames: list[LiveFrame] = field(default_factory=list)   # playout window, by t
    times: list[float] = field(default_factory=list)        # their t (for bisect)
    latencies: list[float] = field(default_factory=list)    # recent arrival delays (audio time -> here)
    late: int = 0                        # frames that arrived after their playout time
    late_times: list[float] = field(default_factory=list)
    stalls: int = 0                      # ticks that had no frame at the playout time yet (held the last)
    engine_dropped: int = 0              # live_stats.dropped
    stats: dict[str, Any] = field(default_factory=dict)
    started: dict[str, Any] = field(default_factory=dict)
    received: int = 0
    shown: int = 0

    # -- events -----------------------------------------------------------------------------
    def feed(self, ev: dict[str, Any], now: float) -> LiveFrame | None:
        """Take one event; returns the frame of a ``live_frame`` (for the record buffer)."""
        kind = ev.get("type")
        if kind == "live_started":
            self.started = dict(ev)
            self.rate = int(ev.get("rate") or RATE)
            self.fps = float(ev.get("fps") or FPS)
            if self.anchor is None:
                self.anchor = now
            self._predict(ev.get("delay_s"))
        elif kind == "live_frame":
            fr = parse_frame(ev)
            self._add(fr, now)
            return fr
        elif kind == "live_stats":
            first = not self.stats
            self.stats = dict(ev)
            self.engine_dropped = int(ev.get("dropped") or 0)
            if first:
                self._settle(ev.get("delay_s"))
            self._predict(ev.get("delay_s"))
        return None

    def _settle(self, delay: Any) -> None:
        """Once, at the first ``live_stats``: the start-up prediction is conservative (its first
        window has no compute time measured yet), so D steps down to the steady-state delay when
        every frame so far arrived within it. D is constant from then on, unless frames come late."""
        if not isinstance(delay, (int, float)) or isinstance(delay, bool) or not math.isfinite(delay) or delay < 0:
            return
        target = float(delay) + self.margin_s
        if target < self.delay_s and not self.late and self.latencies and max(self.latencies) <= float(delay):
            self.delay_s = target

    def _predict(self, delay: Any) -> None:
        if isinstance(delay, (int, float)) and not isinstance(delay, bool) and math.isfinite(delay) and delay >= 0:
            self.predicted_s = float(delay)
            self.delay_s = max(self.delay_s, float(delay) + self.margin_s)

    def _add(self, fr: LiveFrame, now: float) -> None:
        self.received += 1
        seen = now - fr.sample / self.rate          # audio time 0 can be no later than this
        self.anchor = seen if self.anchor is None else min(self.anchor, seen)
        latency = now - self.anchor - fr.t          # how long after its audio time it got here
        self.latencies = (self.latencies + [latency])[-50:]
        if self.delay_s <= 0:                        # no prediction: start from the first frame's delay
            self.delay_s = max(latency, 0.0) + self.margin_s
        if latency > self.delay_s:                   # it missed its playout time
            self.late += 1
            self.late_times = [x for x in self.late_times if now - x < LATE_WINDOW_S] + [now]
            if len(self.late_times) >= LATE_LIMIT:   # persistently late: one step up, then constant again
                self.delay_s = float(np.percentile(self.latencies[-25:], 90)) + self.margin_s
                self.late_times = []
        if self.times and fr.t <= self.times[-1]:   # out of order / repeated: keep t sorted
            i = bisect.bisect_left(self.times, fr.t)
            if i < len(self.times) and self.times[i] == fr.t:
                self.frames[i] = fr
                return
            self.frames.insert(i, fr)
            self.times.insert(i, fr.t)
            return
        self.frames.append(fr)
        self.times.append(fr.t)

    # -- playout ----------------------------------------------------------------------------
    def playout_time(self, now: float) -> float | None:
        """The audio time the rig shows at ``now`` (None before the clock is anchored)."""
        return None if self.anchor is None else now - self.anchor - self.delay_s

    def bracket(self, now: float) -> tuple[LiveFrame, LiveFrame, float] | None:
        """(frame a, frame b, weight of b) around the playout time at ``now``; the last frame
        (a = b) held when the next is not here yet (a stall); None before the first frame."""
        pt = self.playout_time(now)
        if pt is None or not self.frames or pt < self.times[0]:
            return None
        i = bisect.bisect_right(self.times, pt)          # times[i-1] <= pt < times[i]
        if i >= len(self.frames):
            if pt - self.times[-1] > 1.5 / self.fps:
                self.stalls += 1
            out = (self.frames[-1], self.frames[-1], 0.0)
        else:
            a, b = self.frames[i - 1], self.frames[i]
            w = (pt - a.t) / (b.t - a.t) if b.t > a.t else 0.0
            out = (a, b, min(max(w, 0.0), 1.0))
        self.shown += 1
        self._prune(pt)
        return out

    def sample(self, now: float) -> Row | None:
        """The motion row to show at ``now`` (interpolated; see :meth:`bracket`)."""
        br = self.bracket(now)
        if br is None:
            return None
        a, b, w = br
        return _lerp(a, b, w, a.t + (b.t - a.t) * w)

    def _prune(self, pt: float) -> None:
        cut = bisect.bisect_left(self.times, pt - KEEP_BEHIND_S)
        if cut > 1:
            del self.frames[:cut - 1]
            del self.times[:cut - 1]

    def remaining(self, now: float) -> float:
        """Seconds of received frames not shown yet at ``now`` (0 when none are left)."""
        pt = self.playout_time(now)
        if pt is None or not self.times:
            return 0.0
        return max(0.0, self.times[-1] - pt)

    # -- numbers for the panel --------------------------------------------------------------
    def measured_delay(self) -> float | None:
        """Median arrival delay of the recent frames (audio time -> here), seconds."""
        if not self.latencies:
            return None
        ordered = sorted(self.latencies)
        mid = len(ordered) // 2
        return ordered[mid] if len(ordered) % 2 else 0.5 * (ordered[mid - 1] + ordered[mid])

    def summary(self) -> str:
        """One line for the panel: D in use, measured delay, late / dropped counts."""
        if self.anchor is None:
            return "Waiting for audio..."
        meas = self.measured_delay()
        parts = [f"Delay {self.delay_s:.2f} s"]
        if meas is not None:
            parts.append(f"frames arrive after {meas:.2f} s")
        parts.append(f"{self.received} frames")
        if self.late or self.engine_dropped:
            parts.append(f"late {self.late}, dropped {self.engine_dropped}")
        return " · ".join(parts)


@dataclass
class Recorder:
    """Every streamed frame, in order: the take as the motion file holds it."""
    frames: list[LiveFrame] = field(default_factory=list)

    def add(self, fr: LiveFrame) -> None:
        self.frames.append(fr)

    def __len__(self) -> int:
        return len(self.frames)

    def arrays(self) -> dict[str, np.ndarray]:
        """The motion file's per-frame arrays (pitch, yaw, roll, scale, t, exp) of the recorded
        frames, sorted by frame index (a repeated index keeps the last)."""
        by_index = {f.frame: f for f in self.frames}
        rows = [by_index[k] for k in sorted(by_index)]
        return {"frame": np.array([f.frame for f in rows], np.int64),
                "time": np.array([f.t for f in rows], np.float64),
                "pitch": np.array([f.pitch for f in rows], np.float64),
                "yaw": np.array([f.yaw for f in rows], np.float64),
                "roll": np.array([f.roll for f in rows], np.float64),
                "scale": np.array([f.scale for f in rows], np.float64),
                "t": np.array([f.trans for f in rows], np.float64).reshape(-1, 3),
                "exp": np.array([f.exp for f in rows], np.float64).reshape(-1, 21, 3)}


def mismatch(recorded: dict[str, np.ndarray], motion: Motion, atol: float = 1e-4) -> str:
    """Why the engine's motion file (a motion_core.Motion) differs from the streamed frames
    ("" when every streamed frame equals the file's row of the same index within ``atol``)."""
    idx = recorded["frame"]
    if len(idx) == 0:
        return "no frame was streamed"
    if idx[-1] >= motion.n_frames:
        return f"the motion file has {motion.n_frames} frames but frame {int(idx[-1])} was streamed"
    for key, arr in (("pitch", motion.pitch), ("yaw", motion.yaw), ("roll", motion.roll), ("scale", motion.scale),
                     ("t", motion.t), ("exp", motion.exp)):
        diff = float(np.max(np.abs(np.asarray(arr)[idx] - recorded[key])))
        if diff > atol:
            return f"the motion file's {key} differs from the streamed frames by {diff:.3g}"
    return ""


def stats_line(values: Iterable[float]) -> str:
    """median / p95 / max of timings in ms (the bench's line)."""
    v = np.asarray(list(values), np.float64) * 1000.0
    if v.size == 0:
        return "no samples"
    return f"median {np.median(v):.2f} ms  p95 {np.percentile(v, 95):.2f} ms  max {v.max():.2f} ms  (n={v.size})"


# -- one row -> the retarget plan (the offline keyer's path, evaluated for one row) -------------
class RowMapper:
    """Motion row -> readout channels -> the preset's plan, as apply_motion does for a whole take
    (semantic.project -> semantic.readout (+ head channels) -> retarget.evaluate), for one row.

    The offline keyer measures expressions against the clip's median (reference *auto*: the
    closed-lip reference for the lip rows, the median elsewhere); live has no clip, so the
    median is over the frames streamed so far (refreshed every second), which converges to the
    offline reference as the take grows. The head rotation is relative to the first streamed
    frame (Neutral Pose *First* and *Mean*) or absolute."""

    REFRESH = 25          # frames between reference updates
    CACHE = 64            # frame plans kept (the playout window is ~1 s = 25 frames)

    def __init__(self, preset: Preset, *, reference_mode: str = "auto", pose_reference: str = "FIRST",
                 mirrored_source: bool = False, include_gaze: bool = False,
                 geometry: RigGeometry | None = None) -> None:
        from .contract import semantic

        self.preset = preset
        self.geometry = geometry          # retarget's rig geometry (head-space / aim targets), measured once
        groups = ["mouth", "eyes", "brows"] + (["gaze"] if include_gaze or preset.uses_gaze() else [])
        self.basis = semantic.load_basis().select(groups)
        self.reference_mode = reference_mode
        self.pose_reference = pose_reference
        self.mirrored = mirrored_source
        self.ref: np.ndarray | None = None
        self.ref_pose: np.ndarray | None = None        # (3, 3) camera rotation of the neutral
        self._seen: list[np.ndarray] = []
        self._since = 0
        self._cache: dict[int, tuple[Any, dict[str, np.ndarray]]] = {}
        self._lock = threading.Lock()
        self._queue: "queue.Queue[LiveFrame | None]" = queue.Queue()
        self._thread: threading.Thread | None = None

    # -- the preparing thread: projections off the UI thread ---------------------------------
    def start(self) -> "RowMapper":
        """Project streamed frames on a background thread (numpy only, never bpy), so the
        timer callback only blends two ready plans."""
        self._thread = threading.Thread(target=self._prepare, name="joyvasa-live-prep", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(2.0)
            self._thread = None

    def submit(self, fr: LiveFrame) -> None:
        """A streamed frame, in order: observed (reference) and its plan prepared."""
        if self._thread is None:
            self.observe(fr)
        else:
            self._queue.put(fr)

    def _prepare(self) -> None:
        while True:
            fr = self._queue.get()
            if fr is None:
                return
            try:
                self.observe(fr)
                self.frame_plan(fr)
            except Exception:  # noqa: BLE001 - the timer recomputes (and reports) a frame that failed here
                pass

    def observe(self, fr: LiveFrame) -> None:
        """Every streamed frame (for the running reference and the neutral pose)."""
        from . import motion_core as mc

        if self.ref_pose is None:
            self.ref_pose = mc.rotation_from_pyr([fr.pitch], [fr.yaw], [fr.roll])[0]
        self._seen.append(fr.exp)
        if len(self._seen) > 500:
            del self._seen[:-500]
        self._since += 1
        if self.ref is None or self._since >= self.REFRESH:
            self._since = 0
            self._update_ref()

    def _update_ref(self) -> None:
        from .contract import semantic

        mode = self.reference_mode
        exp = np.asarray(self._seen, np.float64)
        if mode == "first" and self.ref is not None:
            return
        self.ref = semantic.reference(exp, mode, self.basis)

    def rotation(self, row: Row) -> np.ndarray:
        """The head rotation (1, 3, 3), camera frame, relative to the neutral pose."""
        from . import motion_core as mc

        M = mc.rotation_from_pyr([row.pitch], [row.yaw], [row.roll])
        if self.pose_reference == "ABSOLUTE" or self.ref_pose is None:
            return M
        return M @ self.ref_pose.T

    def frame_plan(self, fr: LiveFrame) -> tuple[Any, dict[str, np.ndarray]]:
        """:meth:`plan` of one streamed frame, cached by frame index: a frame is projected once
        (the NNLS is the costly part), the timer then only blends two cached plans."""
        with self._lock:
            hit = self._cache.get(fr.frame)
        if hit is None:
            plan, _M, proj = self.plan(_row(fr))
            hit = (plan, proj)
            with self._lock:
                self._cache[fr.frame] = hit
                if len(self._cache) > self.CACHE:
                    del self._cache[min(self._cache)]
        return hit

    def blend(self, a: LiveFrame, b: LiveFrame, w: float) -> tuple[Any, np.ndarray, dict[str, np.ndarray], Row]:
        """The plan between two streamed frames (each frame's plan blended linearly with ``w``),
        the relative head rotation (1, 3, 3) of the interpolated pose, the blended channels and the row."""
        from . import retarget

        (pa, ca), (pb, cb) = self.frame_plan(a), self.frame_plan(b)
        mix = (lambda x, y: x + (y - x) * w) if w > 0 and a is not b else (lambda x, y: x)
        plan = retarget.Plan({k: mix(v, pb.shape_keys[k]) for k, v in pa.shape_keys.items()},
                             {k: mix(v, pb.bones[k]) for k, v in pa.bones.items()}, pa.bone_axes,
                             {k: mix(v, pb.properties[k]) for k, v in pa.properties.items()},
                             {k: mix(v, pb.expressions[k]) for k, v in pa.expressions.items()})
        chans = {k: mix(v, cb[k]) for k, v in ca.items()}
        row = _lerp(a, b, w, a.t + (b.t - a.t) * w)
        return plan, self.rotation(row), chans, row

    def plan(self, row: Row) -> tuple[Any, np.ndarray, dict[str, np.ndarray]]:
        """(retarget.Plan of (1,)-arrays, relative head rotation (1, 3, 3), projected channels)."""
        from . import retarget
        from .contract import semantic

        proj = semantic.project(row.exp[None], basis=self.basis, ref=self.ref if self.ref is not None else row.exp)
        channels = semantic.readout(proj, mirrored_source=self.mirrored)
        M = self.rotation(row)
        if self.preset.uses_head_channels():
            channels.update(retarget.head_channels(M))
        extra = () if self.geometry is None else (self.geometry,)
        return retarget.evaluate(self.preset, channels, *extra), M, proj.as_dict()
