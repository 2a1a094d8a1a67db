"""The motion-edit layer: (raw motion, voice-activity track, controls) -> edited motion.

Why one pure function: the rig keys, the rendered video and ``engine edit`` must all show the
same art direction, so it is applied once, after sampling, and every consumer reads its
result (the motion file's ``exp``/``pitch``/``yaw``/``roll``/``t``/``scale``/``R``). numpy
only, no torch, so ``engine edit`` runs in a fraction of a second.

Reference ("neutral") of the gains, offsets and fades: the raw motion's frame 0 for the head
pose and for every expression row except the lip rows, whose neutral is LivePortrait's
closed-lip ``lip_array`` (JoyVASA uses lip rows absolutely; spec semantic_basis.md §5). This
is the frame the renderer measures relative motion against, so a gain of 0 shows as "no
motion" in the video and on the rig alike.

Order: head gains -> silence -> expression gains -> head offsets -> expression offsets ->
blinks -> gaze -> fade -> R from the angles. A neutral step is skipped, so neutral controls
return the raw arrays themselves (byte-identical files).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from engine.contract.schema import EYE_ROWS, LIP_ROWS
from engine.contract.semantic import load_basis
from engine.motion.controls import (AXES, Controls, ControlsError, is_neutral_track, sample_track)

BLINK_FULL_UNITS = 20.0          # ALP blink slider units of a full closure (spec §7)
GAZE_FULL_UNITS = 15.0           # pupil slider units of gaze 1.0 (the channels' full scale)
GAZE_PER_DEG = {"x": 0.26, "y": 0.28}   # ditto's head-turn compensation, slider units per degree (spec §3)
CALM_WINDOW_S = 1.0              # calm head: motion replaced by its moving average over this span
VAD_WINDOW_S = 0.04              # voice level: RMS over 40 ms around each frame time
VAD_FLOOR_DB = -120.0


@dataclass
class RawMotion:
    """The arrays the edit reads (float, per frame) plus the timing it needs."""

    fps: float
    exp: np.ndarray       # (N,21,3)
    pitch: np.ndarray     # (N,) degrees
    yaw: np.ndarray
    roll: np.ndarray
    t: np.ndarray         # (N,3)
    scale: np.ndarray     # (N,)
    R: np.ndarray         # (N,3,3)
    audio_offset_s: float = 0.0

    @property
    def n_frames(self) -> int:
        return int(self.exp.shape[0])

    def times(self) -> np.ndarray:
        """Audio time of every frame (s)."""
        return np.arange(self.n_frames) / self.fps + self.audio_offset_s


# -- semantic directions (the contract's basis, engine/contract/semantic_basis.json) ---------------
@lru_cache(maxsize=1)
def _directions() -> dict[str, np.ndarray]:
    """Per-slider-unit (21,3) directions by channel name, and ``lip_array``."""
    basis = load_basis()
    out = {c.name: c.vector.reshape(21, 3) for c in basis.channels}
    out["lip_array"] = basis.lip_array
    return out


def offset_vector(channel: str, value: np.ndarray) -> np.ndarray:
    """(N,) offsets in full-scale units -> (N,21,3) exp offsets. +1 is the channel at full
    scale: smile = ALP smile 1.0 (−: its negative), mouth_open = aaa 100 (−: lips pressed),
    brow = eyebrow +15 (raise) / −10 (lower, ALP's other branch), eye_open = blink +5 (wide) /
    −20 (closed, both eyes)."""
    d = _directions()
    v = np.asarray(value, np.float64)[:, None, None]
    pos, neg = np.maximum(v, 0.0), np.maximum(-v, 0.0)
    if channel == "smile":
        return v * d["mouthSmile"] * 1.0
    if channel == "mouth_open":
        return v * d["jawOpen"] * 100.0
    if channel == "brow":
        return pos * d["browUp"] * 15.0 + neg * d["browDown"] * 10.0
    if channel == "eye_open":
        return (pos * (d["eyeWideRight"] + d["eyeWideLeft"]) * 5.0
                + neg * (d["eyeBlinkRight"] + d["eyeBlinkLeft"]) * BLINK_FULL_UNITS)
    raise ControlsError(f"unknown expression offset {channel!r}")


def blink_direction() -> np.ndarray:
    """Both eyes' closure per blink slider unit, (21,3)."""
    d = _directions()
    return d["eyeBlinkRight"] + d["eyeBlinkLeft"]


def eye_closure_units(exp: np.ndarray, median: np.ndarray | None = None) -> np.ndarray:
    """How closed the eyes are, in blink slider units, against the clip's per-component median
    (eyes are open most of the time; ``median`` (63,): a given one, e.g. a stream's running
    median): least-squares amount of the blink direction (N,)."""
    b = blink_direction().reshape(-1)
    flat = exp.reshape(len(exp), -1)
    d = flat - (np.median(flat, axis=0) if median is None else np.asarray(median).reshape(-1))
    return d @ b / float(b @ b)


def gaze_vector(x_units: np.ndarray, y_units: np.ndarray) -> np.ndarray:
    """Pupil slider units (x: + = image right, y: + = up) -> (N,21,3), piecewise like ALP."""
    d = _directions()
    x = np.asarray(x_units, np.float64)[:, None, None]
    y = np.asarray(y_units, np.float64)[:, None, None]
    return (np.maximum(x, 0) * d["lookImageRight"] + np.maximum(-x, 0) * d["lookImageLeft"]
            + np.maximum(y, 0) * d["lookUp"] + np.maximum(-y, 0) * d["lookDown"])


# -- rotation (numpy copy of engine.models.keypoints.rotation_matrix, no torch import) ----------
def rotation_from_angles(pitch: np.ndarray, yaw: np.ndarray, roll: np.ndarray) -> np.ndarray:
    """(Rz(roll)·Ry(yaw)·Rx(pitch))ᵀ for degrees (N,) -> (N,3,3), the motion file's ``R``.
    DELIBERATE COPY of the torch version (tests/engine/test_motion_edit.py checks they agree)."""
    x, y, z = (np.radians(np.asarray(a, np.float64).reshape(-1)) for a in (pitch, yaw, roll))
    n = x.shape[0]
    one, zero = np.ones(n), np.zeros(n)
    rx = np.stack([one, zero, zero, zero, np.cos(x), -np.sin(x), zero, np.sin(x), np.cos(x)], 1).reshape(n, 3, 3)
    ry = np.stack([np.cos(y), zero, np.sin(y), zero, one, zero, -np.sin(y), zero, np.cos(y)], 1).reshape(n, 3, 3)
    rz = np.stack([np.cos(z), -np.sin(z), zero, np.sin(z), np.cos(z), zero, zero, zero, one], 1).reshape(n, 3, 3)
    return np.transpose(rz @ ry @ rx, (0, 2, 1))


# -- voice activity ------------------------------------------------------------------------------
def voice_level_db(wave: np.ndarray, sample_rate: int, times_s: np.ndarray) -> np.ndarray:
    """The voice-activity measure stored in motion files as ``vad_db`` (N,).

    RMS of the 16 kHz mono signal over 40 ms centred on each frame's audio time, in dB relative
    to the clip's loud level (the 95th percentile of that RMS over the whole clip, every 10 ms),
    so the threshold does not depend on recording gain. Times outside the audio read silence
    (``VAD_FLOOR_DB``)."""
    x = np.asarray(wave, np.float64).reshape(-1)
    grid = np.arange(0, max(x.size, 1), max(1, sample_rate // 100))
    loud = np.percentile(window_rms(x, grid, sample_rate), 95) if x.size else 0.0
    rms = window_rms(x, np.round(np.asarray(times_s) * sample_rate).astype(np.int64), sample_rate)
    return level_db(rms, loud)


def window_rms(x: np.ndarray, centres: np.ndarray, sample_rate: int, offset: int = 0,
               n_total: int | None = None) -> np.ndarray:
    """RMS over ``VAD_WINDOW_S`` centred on each sample index, clipped to the signal [0, n_total)
    (0 where nothing is left). ``x`` may be a piece of the signal starting at index ``offset``
    (a live stream's rolling buffer); it must hold every sample the clipped windows read."""
    x = np.asarray(x, np.float64).reshape(-1)
    n_total = offset + x.size if n_total is None else n_total
    half = max(1, int(round(VAD_WINDOW_S * sample_rate / 2)))
    c2 = np.concatenate([[0.0], np.cumsum(x * x)])
    centres = np.asarray(centres, np.int64)
    lo = np.clip(centres - half, 0, n_total)
    hi = np.clip(centres + half, 0, n_total)
    n = np.maximum(hi - lo, 1)
    a, b = np.clip(lo - offset, 0, x.size), np.clip(hi - offset, 0, x.size)
    return np.sqrt(np.maximum(c2[b] - c2[a], 0.0) / n) * (hi > lo)


def level_db(rms: np.ndarray, loud: float) -> np.ndarray:
    """RMS relative to the loud level, in dB, floored at ``VAD_FLOOR_DB`` (the ``vad_db`` values)."""
    rms = np.asarray(rms, np.float64)
    if loud <= 0:
        return np.full(len(rms), VAD_FLOOR_DB)
    return np.maximum(20 * np.log10(np.maximum(rms, 1e-12) / loud), VAD_FLOOR_DB)


def silence_gate(vad_db: np.ndarray, times_s: np.ndarray, threshold_db: float, attack_s: float,
                 release_s: float, min_silence_s: float) -> np.ndarray:
    """1 while voiced, ramping linearly to 0 over ``release_s`` after voice stops and back to 1
    over ``attack_s`` before it starts again (offline, so the mouth is free before the first
    syllable); silent runs shorter than ``min_silence_s`` count as voice. (N,) in [0, 1]."""
    voiced = np.asarray(vad_db) > threshold_db
    n = voiced.size
    if n == 0 or voiced.all():
        return np.ones(n)
    dt = float(np.median(np.diff(times_s))) if n > 1 else 1.0
    i = 0
    while i < n:                                   # fill short pauses between words
        if voiced[i]:
            i += 1
            continue
        j = i
        while j < n and not voiced[j]:
            j += 1
        if (j - i) * dt < min_silence_s and i > 0 and j < n:
            voiced[i:j] = True
        i = j
    if not voiced.any():
        return np.zeros(n)
    idx = np.flatnonzero(voiced)
    t_voiced = times_s[idx]
    pos = np.searchsorted(t_voiced, times_s)
    prev_t = np.where(pos > 0, t_voiced[np.maximum(pos - 1, 0)], -np.inf)
    next_t = np.where(pos < len(t_voiced), t_voiced[np.minimum(pos, len(t_voiced) - 1)], np.inf)
    after = (times_s - prev_t) / max(release_s, 1e-9)     # time since voice stopped, in releases
    before = (next_t - times_s) / max(attack_s, 1e-9)     # time until voice starts, in attacks
    gate = np.clip(np.maximum(1 - after, 1 - before), 0.0, 1.0)
    gate[voiced] = 1.0
    return gate


# -- blinks --------------------------------------------------------------------------------------
def blink_times(rate_per_min: float, duration_s: float, seed: int, t0: float, t1: float) -> np.ndarray:
    """Blink centres in [t0, t1] (audio seconds): a jittered schedule, one blink per period
    T = 60 / rate at (k + ½)·T ± 0.3·T (uniform, seeded), so the count over a span is
    span / T ± 1 for every seed (a memoryless process would give 0 or 5 on short clips). A clip
    of at least 1 s with no blink in its schedule gets one at 35-65 % of its length."""
    if rate_per_min <= 0 or t1 <= t0:
        return np.zeros(0)
    period = 60.0 / rate_per_min
    rng = np.random.default_rng(seed)
    k = int(math.ceil((t1 - t0) / period)) + 1
    centres = t0 + (np.arange(k) + 0.5) * period + rng.uniform(-0.3, 0.3, size=k) * period
    half = duration_s / 2
    centres = centres[(centres - half >= t0) & (centres + half <= t1)]
    if centres.size == 0 and (t1 - t0) >= 1.0:
        centres = np.array([t0 + (t1 - t0) * rng.uniform(0.35, 0.65)])
    return centres


def blink_envelope(times_s: np.ndarray, centres: np.ndarray, duration_s: float) -> np.ndarray:
    """Raised-cosine closure 0..1 of each blink (width ``duration_s``), the max over blinks."""
    env = np.zeros(len(times_s))
    for c in centres:
        u = (times_s - c) / duration_s
        env = np.maximum(env, np.where(np.abs(u) < 0.5, 0.5 * (1 + np.cos(2 * np.pi * u)), 0.0))
    return env


def fade_envelope(times_s: np.ndarray, t_end: float, fade_in: float, fade_out: float) -> np.ndarray:
    """Smoothstep 0 -> 1 over ``fade_in`` from audio time 0, 1 -> 0 over ``fade_out`` to ``t_end``."""
    f = np.ones(len(times_s))
    if fade_in > 0:
        f = np.minimum(f, np.clip(times_s / fade_in, 0, 1))
    if fade_out > 0:
        f = np.minimum(f, np.clip((t_end - times_s) / fade_out, 0, 1))
    return f * f * (3 - 2 * f)


def _moving_average(x: np.ndarray, width: int) -> np.ndarray:
    if width <= 1 or len(x) < 2:
        return x.copy()
    pad = width // 2
    xp = np.concatenate([np.repeat(x[:1], pad, 0), x, np.repeat(x[-1:], pad, 0)])
    c = np.cumsum(np.concatenate([np.zeros((1,) + x.shape[1:]), xp]), axis=0)
    return (c[width:] - c[:-width])[: len(x)] / width


def is_neutral(c: Controls) -> bool:
    """True when the controls change nothing (then :func:`edit_motion` returns the raw arrays)."""
    return (all(is_neutral_track(v, 1.0) for v in c.head_gain.values())
            and all(is_neutral_track(v, 0.0) for v in c.head_offset_deg.values())
            and is_neutral_track(c.translation_gain, 1.0)
            and all(is_neutral_track(getattr(c, k), 1.0) for k in ("expression_gain", "lip_gain", "eye_gain", "other_gain"))
            and all(is_neutral_track(v, 0.0) for v in c.expression_offset.values())
            and (c.blink is None or c.blink.rate_per_min == 0 or c.blink.depth == 0)
            and (c.silence is None or (not c.silence.relax and c.silence.calm_head == 0))
            and c.fade_in_s == 0 and c.fade_out_s == 0
            and is_neutral_track(c.gaze_x, 0.0) and is_neutral_track(c.gaze_y, 0.0)
            and is_neutral_track(c.follow_head, 1.0))


@dataclass
class Anchors:
    """The clip-wide references of an edit, fixed by a caller that edits a clip piece by piece
    (engine/live/stream.py): the edit of frames [k0, k0 + n) then equals the offline edit of
    those frames wherever the references agree. ``None`` fields are taken from the frames given."""

    frame0: RawMotion | None = None        # the clip's raw frame 0 (head/expression neutral)
    gate: np.ndarray | None = None         # (N,) silence gate of the given frames
    blink_until_s: float | None = None     # blink schedule computed over [0, this]
    eye_median: np.ndarray | None = None   # (63,) what eye closure is measured against
    fade_out: bool = True                  # False: the clip's end is unknown (no fade-out)


@dataclass
class _Edit:
    """The arrays an edit works on (float64), the clock, and which arrays changed."""

    raw: RawMotion
    controls: Controls
    times: np.ndarray                  # (N,) audio time of every frame
    t_end: float                       # where the fade-out ends
    ang: dict[str, np.ndarray]         # pitch/yaw/roll in degrees
    ang0: dict[str, float]             # frame 0's angles (gains and fades are about them)
    t0: np.ndarray                     # (3,) frame 0's translation
    s0: float                          # frame 0's scale
    t: np.ndarray                      # (N,3)
    scale: np.ndarray                  # (N,)
    exp: np.ndarray                    # (N,21,3)
    ref: np.ndarray                    # (21,3) neutral expression: frame 0 with LivePortrait's closed lips
    anchors: Anchors = field(default_factory=Anchors)
    pose_changed: bool = False
    exp_changed: bool = False

    def tr(self, track) -> np.ndarray:  # type: ignore[no-untyped-def]
        """A control track sampled at every motion frame."""
        return sample_track(track, self.times, self.controls.fps or self.raw.fps)


def _start(raw: RawMotion, c: Controls, audio_duration_s: float | None, anchors: Anchors | None = None) -> _Edit:
    n = raw.n_frames
    times = raw.times()
    anchors = anchors or Anchors()
    f0 = anchors.frame0 or raw
    ang = {a: np.asarray(getattr(raw, a), np.float64).reshape(-1) for a in AXES}
    exp = np.asarray(raw.exp, np.float64).reshape(n, 21, 3)
    ref = np.asarray(f0.exp, np.float64).reshape(-1, 21, 3)[0].copy()
    ref[list(LIP_ROWS)] = _directions()["lip_array"][list(LIP_ROWS)]
    return _Edit(raw, c, times, float(audio_duration_s) if audio_duration_s else float(times[-1]), ang,
                 {a: float(np.asarray(getattr(f0, a), np.float64).reshape(-1)[0]) for a in AXES},
                 np.asarray(f0.t, np.float64).reshape(-1, 3)[0].copy(),
                 float(np.asarray(f0.scale, np.float64).reshape(-1)[0]), np.asarray(raw.t, np.float64).reshape(n, 3),
                 np.asarray(raw.scale, np.float64).reshape(-1), exp, ref, anchors=anchors)


def _head_gains(e: _Edit) -> None:
    """Per-axis head gains about frame 0; translation/scale follow the mean head gain by default."""
    c = e.controls
    if all(is_neutral_track(v, 1.0) for v in c.head_gain.values()) and is_neutral_track(c.translation_gain, 1.0):
        return
    gains = {a: e.tr(c.head_gain[a]) for a in AXES}
    for a in AXES:
        e.ang[a] = e.ang0[a] + gains[a] * (e.ang[a] - e.ang0[a])
    gt = e.tr(c.translation_gain) if c.translation_gain is not None else (gains["pitch"] + gains["yaw"] + gains["roll"]) / 3
    e.t = e.t0 + gt[:, None] * (e.t - e.t0)
    e.scale = e.s0 * np.power(np.maximum(e.scale / e.s0, 1e-6), gt)
    e.pose_changed = True


def _silence(e: _Edit, vad_db: np.ndarray | None) -> None:
    """In silence the mouth relaxes to closed and the head optionally calms."""
    s = e.controls.silence
    if s is None or not (s.relax or s.calm_head > 0):
        return
    gate = e.anchors.gate
    if gate is None and vad_db is None:
        raise ControlsError("silence handling needs the voice-activity track: this motion file has no "
                            "vad_db (written before motion schema 1.1); pass --audio")
    if gate is None:
        gate = silence_gate(np.asarray(vad_db, np.float64).reshape(-1), e.times, s.threshold_db, s.attack_s,
                            s.release_s, s.min_silence_s)
    if s.relax:
        rows = list(LIP_ROWS)
        e.exp = e.exp.copy()
        e.exp[:, rows] = e.ref[rows] + gate[:, None, None] * (e.exp[:, rows] - e.ref[rows])
        e.exp_changed = True
    if s.calm_head > 0:
        keep = (1 - s.calm_head * (1 - gate))
        width = max(1, int(round(CALM_WINDOW_S * e.raw.fps)) | 1)
        for a in AXES:
            avg = _moving_average(e.ang[a], width)
            e.ang[a] = avg + keep * (e.ang[a] - avg)
        avg_t, avg_s = _moving_average(e.t, width), _moving_average(e.scale, width)
        e.t = avg_t + keep[:, None] * (e.t - avg_t)
        e.scale = avg_s + keep * (e.scale - avg_s)
        e.pose_changed = True


def _expression_gains(e: _Edit) -> None:
    """Expression x (lip | eye | other) per row, about the neutral."""
    c = e.controls
    if all(is_neutral_track(getattr(c, k), 1.0) for k in ("expression_gain", "lip_gain", "eye_gain", "other_gain")):
        return
    g_all = e.tr(c.expression_gain)
    G = np.repeat((g_all * e.tr(c.other_gain))[:, None], 21, axis=1)      # (N,21)
    G[:, list(LIP_ROWS)] = (g_all * e.tr(c.lip_gain))[:, None]
    G[:, list(EYE_ROWS)] = (g_all * e.tr(c.eye_gain))[:, None]
    e.exp = e.ref + G[:, :, None] * (e.exp - e.ref)
    e.exp_changed = True


def _head_offsets(e: _Edit) -> None:
    """Degrees added to pitch/yaw/roll."""
    for a in AXES:
        if not is_neutral_track(e.controls.head_offset_deg[a], 0.0):
            e.ang[a] = e.ang[a] + e.tr(e.controls.head_offset_deg[a])
            e.pose_changed = True


def _expression_offsets(e: _Edit) -> None:
    """Smile, mouth open, brows, eye openness along the semantic directions."""
    for name, track in e.controls.expression_offset.items():
        if not is_neutral_track(track, 0.0):
            e.exp = e.exp + offset_vector(name, e.tr(track))
            e.exp_changed = True


def _blinks(e: _Edit) -> None:
    """Eye closure = max(the model's own, the generated one)."""
    b = e.controls.blink
    if b is None or b.rate_per_min <= 0 or b.depth <= 0:
        return
    until = e.t_end if e.anchors.blink_until_s is None else e.anchors.blink_until_s
    centres = blink_times(b.rate_per_min, b.duration_s, b.seed, 0.0, until)
    want = blink_envelope(e.times, centres, b.duration_s) * b.depth * BLINK_FULL_UNITS
    have = np.maximum(eye_closure_units(e.exp, e.anchors.eye_median), 0.0)
    add = np.maximum(want - have, 0.0)
    if np.any(add > 0):
        e.exp = e.exp + add[:, None, None] * blink_direction()
        e.exp_changed = True


def _gaze(e: _Edit) -> None:
    """Gaze offset and head-turn compensation (follow_head 1 = the eyes turn with the head)."""
    c = e.controls
    comp = 1.0 - e.tr(c.follow_head)
    if is_neutral_track(c.gaze_x, 0.0) and is_neutral_track(c.gaze_y, 0.0) and not np.any(comp != 0):
        return
    gx = e.tr(c.gaze_x) * GAZE_FULL_UNITS + comp * GAZE_PER_DEG["x"] * (e.ang["yaw"] - e.ang0["yaw"])
    gy = e.tr(c.gaze_y) * GAZE_FULL_UNITS + comp * GAZE_PER_DEG["y"] * (e.ang["pitch"] - e.ang0["pitch"])
    e.exp = e.exp + gaze_vector(gx, gy)
    e.exp_changed = True


def _fade(e: _Edit) -> None:
    """From and to the neutral at the clip's ends."""
    c = e.controls
    if not (c.fade_in_s > 0 or c.fade_out_s > 0):
        return
    f = fade_envelope(e.times, e.t_end, c.fade_in_s, c.fade_out_s if e.anchors.fade_out else 0.0)
    for a in AXES:
        e.ang[a] = e.ang0[a] + f * (e.ang[a] - e.ang0[a])
    e.t = e.t0 + f[:, None] * (e.t - e.t0)
    e.scale = e.s0 + f * (e.scale - e.s0)
    e.exp = e.ref + f[:, None, None] * (e.exp - e.ref)
    e.pose_changed = e.exp_changed = True


def edit_motion(raw: RawMotion, controls: Controls, vad_db: np.ndarray | None = None,
                audio_duration_s: float | None = None, anchors: Anchors | None = None) -> dict[str, np.ndarray]:
    """Edited ``exp, pitch, yaw, roll, t, scale, R``; arrays no step touched are ``raw``'s own.

    ``vad_db`` (N,): :func:`voice_level_db` per frame (needed only by ``silence``).
    ``audio_duration_s``: where the fade-out ends (default: the last frame's time).
    ``anchors``: clip-wide references when ``raw`` is a piece of a longer clip (live stream)."""
    out = {"exp": raw.exp, "pitch": raw.pitch, "yaw": raw.yaw, "roll": raw.roll, "t": raw.t,
           "scale": raw.scale, "R": raw.R}
    if raw.n_frames == 0 or is_neutral(controls):
        return out
    e = _start(raw, controls, audio_duration_s, anchors)
    _head_gains(e)              # 1. head gains (per axis, about frame 0)
    _silence(e, vad_db)         # 2. silence: mouth relaxes to closed, head optionally calms
    _expression_gains(e)        # 3. expression gains per row, about the neutral
    _head_offsets(e)            # 4. head offsets (degrees)
    _expression_offsets(e)      # 5. expression offsets along the semantic directions
    _blinks(e)                  # 6. blinks
    _gaze(e)                    # 7. gaze and head-turn compensation
    _fade(e)                    # 8. fade from and to the neutral at the clip ends
    if e.exp_changed:
        out["exp"] = e.exp.astype(np.float32)
    if e.pose_changed:
        for a in AXES:
            out[a] = e.ang[a].astype(np.float32)
        out["t"] = e.t.astype(np.float32)
        out["scale"] = e.scale.astype(np.float32)
        out["R"] = rotation_from_angles(e.ang["pitch"], e.ang["yaw"], e.ang["roll"]).astype(np.float32)
    return out


# -- on motion files -----------------------------------------------------------------------------
def apply_controls(m, controls: Controls, vad_db: np.ndarray | None = None):  # (MotionData, ...) -> MotionData
    """Edit a :class:`engine.motion.npz.MotionData` from its raw motion (``m.raw`` if it was
    edited before: controls never stack). Neutral controls give back the raw motion with no
    ``raw_*``/``controls`` (byte-identical to a file written without controls); otherwise the
    result keeps the raw arrays and the canonical controls JSON."""
    import json
    from dataclasses import replace

    base = m.raw_view()
    vad = vad_db if vad_db is not None else m.vad_db
    if is_neutral(controls):
        return replace(base, vad_db=vad)
    raw = RawMotion(fps=float(base.fps), exp=base.exp, pitch=np.asarray(base.pitch).reshape(-1),
                    yaw=np.asarray(base.yaw).reshape(-1), roll=np.asarray(base.roll).reshape(-1),
                    t=base.t, scale=np.asarray(base.scale).reshape(-1), R=base.R,
                    audio_offset_s=float(base.meta.get("audio_offset_s", 0.0) or 0.0))
    duration = float(base.meta.get("audio_duration_s", 0.0) or 0.0) or None
    edited = edit_motion(raw, controls, vad, audio_duration_s=duration)
    raw_arrays = {"exp": base.exp, "pitch": raw.pitch, "yaw": raw.yaw, "roll": raw.roll, "t": base.t,
                  "scale": raw.scale, "R": base.R}
    return replace(base, **edited, raw=raw_arrays, vad_db=vad,
                   controls=json.dumps(controls.to_dict(), sort_keys=True, separators=(",", ":")))


def vad_for_motion(m, wave: np.ndarray) -> np.ndarray:  # (MotionData, 16 kHz mono) -> (N,)
    """:func:`voice_level_db` at every frame of ``m`` (frame i at i / fps + audio_offset_s)."""
    from engine.audio import SAMPLE_RATE

    times = np.arange(m.n_frames) / float(m.fps) + float(m.meta.get("audio_offset_s", 0.0) or 0.0)
    return voice_level_db(wave, SAMPLE_RATE, times).astype(np.float32)


def controls_for_run(path: str | None, *, pose_strength: float = 1.0, exp_strength: float = 1.0,
                     region: str = "all", recorded: str = "") -> Controls:
    """The controls of a ``motion``/``animate`` run: ``--controls FILE`` if given, else the
    controls ``recorded`` in a given motion file (so ``animate --motion edited.npz`` renders it
    as edited), with the ``--pose-strength``/``--exp-strength``/``--region`` shorthands
    multiplied in."""
    from engine.motion.controls import load_controls, parse_controls_text, shorthand_controls

    base = load_controls(path) if path else (parse_controls_text(recorded, "the motion file's recorded controls")
                                             if recorded else None)
    return shorthand_controls(pose_strength=pose_strength, exp_strength=exp_strength, region=region, base=base)


def direct_motion(m, controls: Controls, wave: np.ndarray | None = None):  # -> MotionData
    """What ``motion``/``animate`` do after sampling (or loading) a motion: record the voice
    level of ``wave`` (when given) and apply the controls. Raises ControlsError."""
    vad = vad_for_motion(m, wave) if wave is not None else None
    return apply_controls(m, controls, vad_db=vad)


def load_run_controls(path: str | None, *, pose_strength: float = 1.0, exp_strength: float = 1.0,
                      region: str = "all", recorded: str = "") -> Controls:
    """:func:`controls_for_run` with every error as BadRequest (``motion``/``animate`` pipelines)."""
    from engine.errors import BadRequest

    try:
        return controls_for_run(path, pose_strength=pose_strength, exp_strength=exp_strength, region=region,
                                recorded=recorded)
    except (ControlsError, ValueError) as exc:
        raise BadRequest(f"controls: {exc}") from None
