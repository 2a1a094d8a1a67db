"""The controls file (``joyvasa.controls`` version 1): art direction over generated motion.

Why a file and not CLI flags: every number may be a per-frame curve (the Blender add-on samples
its keyed F-curves into it), the same controls must reach the motion file, the renderer and
``engine edit``, and the motion file records the controls it was edited with.

Every key is optional; a missing key means neutral (gains 1, offsets 0, no blinks, no silence
handling, no fade, eyes follow the head). A *track* is a number or a list of numbers (one per
control frame at ``fps``; default: the motion's fps). Control frame ``k`` is at audio time
``k / fps`` (frame 0 = the first audio sample, like the add-on's start frame). Motion frame ``i``
(audio time ``i / motion_fps + audio_offset_s``) reads the track linearly interpolated at its
time; before the first and after the last value the end values hold.

    {"version": 1,
     "fps": 25,
     "head_gain": TRACK | {"pitch": TRACK, "yaw": TRACK, "roll": TRACK},
     "head_offset_deg": {"pitch": TRACK, "yaw": TRACK, "roll": TRACK},
     "translation_gain": TRACK,        # default: the mean of the three head gains
     "expression_gain": TRACK, "lip_gain": TRACK, "eye_gain": TRACK, "other_gain": TRACK,
     "expression_offset": {"smile": TRACK, "mouth_open": TRACK, "brow": TRACK, "eye_open": TRACK},
     "blink": {"rate_per_min": 15, "duration_s": 0.2, "seed": 0, "depth": 1.0} | null,
     "silence": {"relax": true, "threshold_db": -35, "attack_s": 0.05, "release_s": 0.2,
                 "min_silence_s": 0.25, "calm_head": false} | null,
     "fade_s": {"in": 0.0, "out": 0.0},
     "gaze": {"x": TRACK, "y": TRACK, "follow_head": TRACK}}

The meaning of each control is in engine/motion/edit.py and docs/art-direction.md.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import numpy as np

from engine.contract.schema import CONTROLS_SCHEMA as SCHEMA, CONTROLS_VERSION as VERSION

Track = Union[float, np.ndarray]     # a constant or a per-control-frame array

AXES = ("pitch", "yaw", "roll")
OFFSET_CHANNELS = ("smile", "mouth_open", "brow", "eye_open")
GAIN_KEYS = ("expression_gain", "lip_gain", "eye_gain", "other_gain")
TOP_KEYS = frozenset({"version", "schema", "fps", "head_gain", "head_offset_deg", "translation_gain", *GAIN_KEYS,
                      "expression_offset", "blink", "silence", "fade_s", "gaze"})

BLINK_DEFAULTS = {"rate_per_min": 15.0, "duration_s": 0.2, "seed": 0, "depth": 1.0}
SILENCE_DEFAULTS = {"relax": True, "threshold_db": -35.0, "attack_s": 0.05, "release_s": 0.2,
                    "min_silence_s": 0.25, "calm_head": 0.0}


#: the same bound as ``--seed`` (engine/preflight.py): numpy's generator takes 0 .. 2**63-1 here
SEED_MAX = 2**63 - 1
#: a per-frame track of an hour at 1000 fps is ~70 MB of JSON; more is no real controls file
MAX_CONTROLS_BYTES = 64 * 1024 * 1024


class ControlsError(ValueError):
    """The controls are invalid (the message names the key)."""


@dataclass
class Blink:
    rate_per_min: float = 15.0
    duration_s: float = 0.2
    seed: int = 0
    depth: float = 1.0             # 1.0 = a full closure (20 blink slider units, spec §7)


@dataclass
class Silence:
    relax: bool = True
    threshold_db: float = -35.0    # voice when the frame level is above this (dB below the clip's loud level)
    attack_s: float = 0.05         # the mouth is released this long before voice starts
    release_s: float = 0.2         # and relaxes over this long after voice stops
    min_silence_s: float = 0.25    # shorter pauses (between words) are not silence
    calm_head: float = 0.0         # 0..1: how much head motion is replaced by its 1 s average in silence


@dataclass
class Controls:
    """Parsed controls; tracks are floats or float64 arrays at ``fps`` (None = the motion's fps)."""

    fps: float | None = None
    head_gain: dict[str, Track] = field(default_factory=lambda: {a: 1.0 for a in AXES})
    head_offset_deg: dict[str, Track] = field(default_factory=lambda: {a: 0.0 for a in AXES})
    translation_gain: Track | None = None
    expression_gain: Track = 1.0
    lip_gain: Track = 1.0
    eye_gain: Track = 1.0
    other_gain: Track = 1.0
    expression_offset: dict[str, Track] = field(default_factory=lambda: {c: 0.0 for c in OFFSET_CHANNELS})
    blink: Blink | None = None
    silence: Silence | None = None
    fade_in_s: float = 0.0
    fade_out_s: float = 0.0
    gaze_x: Track = 0.0
    gaze_y: Track = 0.0
    follow_head: Track = 1.0

    def to_dict(self) -> dict[str, Any]:
        """The canonical JSON form (every key present), as recorded in motion files."""
        def t(v: Track | None) -> float | list[float] | None:
            return None if v is None else (float(v) if np.ndim(v) == 0 else [float(x) for x in np.ravel(v)])
        return {
            "schema": SCHEMA, "version": VERSION, "fps": self.fps,
            "head_gain": {a: t(v) for a, v in self.head_gain.items()},
            "head_offset_deg": {a: t(v) for a, v in self.head_offset_deg.items()},
            "translation_gain": t(self.translation_gain),
            **{k: t(getattr(self, k)) for k in GAIN_KEYS},
            "expression_offset": {c: t(v) for c, v in self.expression_offset.items()},
            "blink": None if self.blink is None else dict(self.blink.__dict__),
            "silence": None if self.silence is None else dict(self.silence.__dict__),
            "fade_s": {"in": self.fade_in_s, "out": self.fade_out_s},
            "gaze": {"x": t(self.gaze_x), "y": t(self.gaze_y), "follow_head": t(self.follow_head)},
        }


def _num(value: Any, where: str, lo: float | None = None, hi: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ControlsError(f"{where} must be a number, got {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise ControlsError(f"{where} must be finite, got {value!r}")
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise ControlsError(f"{where} must be in [{lo}, {hi}], got {v:g}")
    return v


def _track(value: Any, where: str, lo: float | None = None, hi: float | None = None) -> Track:
    if isinstance(value, (list, tuple)):
        if not value:
            raise ControlsError(f"{where} is an empty list (give a number or one value per frame)")
        return np.array([_num(v, f"{where}[{i}]", lo, hi) for i, v in enumerate(value)], dtype=np.float64)
    return _num(value, where, lo, hi)


def _obj(value: Any, where: str, allowed: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ControlsError(f"{where} must be an object with keys {', '.join(allowed)}")
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        raise ControlsError(f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(allowed)})")
    return value


def parse_controls(data: Any) -> Controls:
    """Validate a controls object (already decoded JSON) into :class:`Controls`."""
    if not isinstance(data, dict):
        raise ControlsError("the controls must be a JSON object")
    unknown = sorted(set(data) - TOP_KEYS)
    if unknown:
        raise ControlsError(f"unknown controls key(s): {', '.join(unknown)}")
    version = data.get("version", VERSION)
    if isinstance(version, bool) or version != VERSION:
        raise ControlsError(f"controls version {version!r} is not supported (this engine reads {VERSION})")
    if data.get("schema", SCHEMA) != SCHEMA:
        raise ControlsError(f"schema must be {SCHEMA!r}")
    c = Controls()
    if data.get("fps") is not None:
        c.fps = _num(data["fps"], "fps", 1e-3, 1000.0)
    hg = data.get("head_gain")
    if hg is not None:
        if isinstance(hg, dict):
            hg = _obj(hg, "head_gain", AXES)
            c.head_gain = {a: _track(hg.get(a, 1.0), f"head_gain.{a}", 0.0, 10.0) for a in AXES}
        else:
            tr = _track(hg, "head_gain", 0.0, 10.0)
            c.head_gain = {a: tr for a in AXES}
    if data.get("head_offset_deg") is not None:
        ho = _obj(data["head_offset_deg"], "head_offset_deg", AXES)
        c.head_offset_deg = {a: _track(ho.get(a, 0.0), f"head_offset_deg.{a}", -90.0, 90.0) for a in AXES}
    if data.get("translation_gain") is not None:
        c.translation_gain = _track(data["translation_gain"], "translation_gain", 0.0, 10.0)
    for key in GAIN_KEYS:
        if data.get(key) is not None:
            setattr(c, key, _track(data[key], key, 0.0, 10.0))
    if data.get("expression_offset") is not None:
        eo = _obj(data["expression_offset"], "expression_offset", OFFSET_CHANNELS)
        c.expression_offset = {k: _track(eo.get(k, 0.0), f"expression_offset.{k}", -3.0, 3.0)
                               for k in OFFSET_CHANNELS}
    if data.get("blink") is not None:
        b = _obj(data["blink"], "blink", tuple(BLINK_DEFAULTS))
        seed = b.get("seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= SEED_MAX:
            raise ControlsError(f"blink.seed must be an integer between 0 and {SEED_MAX}, got {str(seed)[:40]}")
        c.blink = Blink(rate_per_min=_num(b.get("rate_per_min", 15.0), "blink.rate_per_min", 0.0, 120.0),
                        duration_s=_num(b.get("duration_s", 0.2), "blink.duration_s", 0.04, 2.0),
                        seed=int(seed), depth=_num(b.get("depth", 1.0), "blink.depth", 0.0, 2.0))
    if data.get("silence") is not None:
        s = _obj(data["silence"], "silence", tuple(SILENCE_DEFAULTS))
        relax = s.get("relax", True)
        if not isinstance(relax, bool):
            raise ControlsError(f"silence.relax must be true or false, got {relax!r}")
        calm = s.get("calm_head", 0.0)
        calm = (1.0 if calm else 0.0) if isinstance(calm, bool) else _num(calm, "silence.calm_head", 0.0, 1.0)
        c.silence = Silence(relax=relax, threshold_db=_num(s.get("threshold_db", -35.0), "silence.threshold_db", -120.0, 0.0),
                            attack_s=_num(s.get("attack_s", 0.05), "silence.attack_s", 0.0, 5.0),
                            release_s=_num(s.get("release_s", 0.2), "silence.release_s", 0.0, 5.0),
                            min_silence_s=_num(s.get("min_silence_s", 0.25), "silence.min_silence_s", 0.0, 10.0),
                            calm_head=calm)
    if data.get("fade_s") is not None:
        f = data["fade_s"]
        if isinstance(f, (int, float)) and not isinstance(f, bool):
            c.fade_in_s = c.fade_out_s = _num(f, "fade_s", 0.0, 60.0)
        else:
            f = _obj(f, "fade_s", ("in", "out"))
            c.fade_in_s = _num(f.get("in", 0.0), "fade_s.in", 0.0, 60.0)
            c.fade_out_s = _num(f.get("out", 0.0), "fade_s.out", 0.0, 60.0)
    if data.get("gaze") is not None:
        g = _obj(data["gaze"], "gaze", ("x", "y", "follow_head"))
        c.gaze_x = _track(g.get("x", 0.0), "gaze.x", -3.0, 3.0)
        c.gaze_y = _track(g.get("y", 0.0), "gaze.y", -3.0, 3.0)
        fh = g.get("follow_head", 1.0)
        c.follow_head = (1.0 if fh else 0.0) if isinstance(fh, bool) else _track(fh, "gaze.follow_head", 0.0, 1.0)
    return c


def load_controls(path: str | os.PathLike[str]) -> Controls:
    """Read and validate a controls JSON file (ControlsError says what is wrong)."""
    from engine.pathguard import input_problem

    problem = input_problem(path)  # a FIFO would block the read forever
    if problem:
        raise ControlsError(f"controls file {path} {problem}")
    try:
        text = Path(path).read_bytes()  # decoded (strict UTF-8) by parse_controls_text
    except FileNotFoundError:
        raise ControlsError(f"controls file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ControlsError(f"cannot read controls file {path}: {exc}") from None
    return parse_controls_text(text, f"controls file {path}")


def parse_controls_text(text: str | bytes, what: str = "the controls") -> Controls:
    """Controls from JSON text (a file's, or the canonical JSON a motion file records), read with
    the protocol's limits (depth, size, number length): ControlsError naming ``what``."""
    from engine.contract.protocol import JSONLimitError, loads_limited

    try:
        data = loads_limited(text, what, max_bytes=MAX_CONTROLS_BYTES)
    except JSONLimitError as exc:
        raise ControlsError(str(exc)) from None
    try:
        return parse_controls(data)
    except ControlsError as exc:
        raise ControlsError(f"{what}: {exc}") from None


def shorthand_controls(*, pose_strength: float = 1.0, exp_strength: float = 1.0, region: str = "all",
                       base: Controls | None = None) -> Controls:
    """``--pose-strength``, ``--exp-strength`` and ``--region`` as controls (multiplied into
    ``base``'s gains): region pose = no expression, exp = no head motion, lip / eyes = only those
    rows (no head motion)."""
    import copy

    c = copy.deepcopy(base) if base is not None else Controls()
    head = float(pose_strength) * (0.0 if region in ("exp", "lip", "eyes") else 1.0)
    rows = {"expression_gain": float(exp_strength) * (0.0 if region == "pose" else 1.0),
            "lip_gain": 0.0 if region == "eyes" else 1.0, "eye_gain": 0.0 if region == "lip" else 1.0,
            "other_gain": 0.0 if region in ("lip", "eyes") else 1.0}
    if head != 1.0:
        c.head_gain = {a: v * head for a, v in c.head_gain.items()}
        if c.translation_gain is not None:
            c.translation_gain = c.translation_gain * head
    for key, g in rows.items():
        if g != 1.0:
            setattr(c, key, getattr(c, key) * g)
    return c


def sample_track(track: Track, times_s: np.ndarray, fps: float) -> np.ndarray:
    """A track at audio times ``times_s``: the constant, or the per-frame array (frame k at
    k / fps) linearly interpolated, holding its end values outside."""
    times_s = np.asarray(times_s, dtype=np.float64)
    if np.ndim(track) == 0:
        return np.full(times_s.shape, float(track))
    arr = np.asarray(track, dtype=np.float64).reshape(-1)
    if arr.size == 1:
        return np.full(times_s.shape, float(arr[0]))
    return np.interp(times_s, np.arange(arr.size) / fps, arr)


def is_neutral_track(track: Track | None, neutral: float) -> bool:
    return track is None or bool(np.all(np.asarray(track) == neutral))
