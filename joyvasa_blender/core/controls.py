"""Art-direction controls: the scene properties -> the engine's controls file (bpy-free).

Why here: the rig keys and the rendered video must come from the same edited motion, so the
add-on never edits motion itself; it samples each control at every motion frame and hands the
engine a ``joyvasa.controls`` v1 file (schema: engine/motion/controls.py,
docs/art-direction.md). This module owns the list of controls (the bpy properties are generated from it)
and the mapping to the file; the bpy side only supplies property values and F-curve samples.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from .contract.schema import CONTROLS_SCHEMA, CONTROLS_VERSION

GROUPS = ("Head", "Expression", "Eyes & Blinks", "Silence", "Gaze")


@dataclass(frozen=True)
class Control:
    prop: str            # scene.joyvasa property name
    group: str           # panel group (GROUPS)
    label: str
    default: float
    lo: float
    hi: float
    soft_hi: float
    description: str
    track: bool = True   # sampled per frame (False: read once, at the start frame)
    kind: str = "float"  # float | int | bool
    unit: str = "NONE"   # bpy FloatProperty unit/subtype hint


CONTROLS: tuple[Control, ...] = (
    # Head
    Control("head_strength", "Head", "Head Motion", 1.0, 0.0, 5.0, 2.0, "Scales all head motion: rotation about the first frame, translation and scale (0 = still head)"),
    Control("head_pitch_gain", "Head", "Pitch Gain", 1.0, 0.0, 5.0, 2.0, "Extra gain of the nod (pitch) only"),
    Control("head_yaw_gain", "Head", "Yaw Gain", 1.0, 0.0, 5.0, 2.0, "Extra gain of the turn (yaw) only"),
    Control("head_roll_gain", "Head", "Roll Gain", 1.0, 0.0, 5.0, 2.0, "Extra gain of the tilt (roll) only"),
    Control("head_translation", "Head", "Translation", 1.0, 0.0, 5.0, 2.0, "Gain of head translation and scale (times Head Motion)"),
    Control("head_pitch_offset", "Head", "Pitch Offset", 0.0, -45.0, 45.0, 20.0, "Degrees added to pitch (+ = nod down)"),
    Control("head_yaw_offset", "Head", "Yaw Offset", 0.0, -45.0, 45.0, 20.0, "Degrees added to yaw (+ = turn to the subject's right)"),
    Control("head_roll_offset", "Head", "Roll Offset", 0.0, -45.0, 45.0, 20.0, "Degrees added to roll (+ = head top to image right)"),
    Control("fade_in", "Head", "Fade In", 0.0, 0.0, 10.0, 2.0, "Seconds over which all motion grows from the neutral pose at the start", track=False),
    Control("fade_out", "Head", "Fade Out", 0.0, 0.0, 10.0, 2.0, "Seconds over which all motion returns to the neutral pose at the end", track=False),
    # Expression
    Control("expression_strength", "Expression", "Expression", 1.0, 0.0, 5.0, 2.0, "Scales every expression row about the neutral (lips, eyes, brows, ...)"),
    Control("lip_strength", "Expression", "Lips", 1.0, 0.0, 5.0, 2.0, "Extra gain of the lip rows (0 = mouth at LivePortrait's closed-lip neutral)"),
    Control("smile", "Expression", "Smile", 0.0, -1.0, 3.0, 1.0, "Adds a smile (1 = full scale; negative = frown)"),
    Control("mouth_open", "Expression", "Mouth Open", 0.0, -1.0, 3.0, 1.0, "Opens the jaw (1 = full scale; negative = lips pressed)"),
    Control("brow", "Expression", "Brows", 0.0, -1.0, 3.0, 1.0, "Raises (+) or lowers (-) the brows"),
    # Eyes & Blinks
    Control("eye_strength", "Eyes & Blinks", "Eyes", 1.0, 0.0, 5.0, 2.0, "Extra gain of the eye rows (0 = eyes as in the first frame)"),
    Control("eye_open", "Eyes & Blinks", "Eye Openness", 0.0, -1.0, 3.0, 1.0, "Widens (+) or closes (-1 = fully closed) both eyes"),
    Control("blink", "Eyes & Blinks", "Generate Blinks", 0.0, 0.0, 1.0, 1.0, "Add blinks on a jittered schedule (never doubling a blink the model made)", track=False, kind="bool"),
    Control("blink_rate", "Eyes & Blinks", "Blinks per Minute", 15.0, 0.0, 120.0, 40.0, "Mean blink rate", track=False),
    Control("blink_duration", "Eyes & Blinks", "Blink Duration", 0.2, 0.04, 2.0, 0.5, "Seconds from open to closed and back", track=False),
    Control("blink_seed", "Eyes & Blinks", "Blink Seed", 0, 0, 1_000_000, 1000, "Seed of the blink schedule", track=False, kind="int"),
    # Silence
    Control("silence_relax", "Silence", "Relax Mouth in Silence", 0.0, 0.0, 1.0, 1.0, "Close the mouth where the audio is silent", track=False, kind="bool"),
    Control("silence_threshold_db", "Silence", "Threshold (dB)", -35.0, -120.0, 0.0, -10.0, "Voice when the level is above this, in dB below the clip's loud level", track=False),
    Control("silence_attack", "Silence", "Attack", 0.05, 0.0, 5.0, 0.5, "Seconds before speech starts that the mouth is released", track=False),
    Control("silence_release", "Silence", "Release", 0.2, 0.0, 5.0, 1.0, "Seconds after speech stops over which the mouth closes", track=False),
    Control("silence_calm_head", "Silence", "Calm Head", 0.0, 0.0, 1.0, 1.0, "How much head bobbing is removed in silence (keeps the posture)", track=False),
    # Gaze
    Control("gaze_x", "Gaze", "Gaze X", 0.0, -2.0, 2.0, 1.0, "Looks to image right (+) or left (-); 1 = full scale"),
    Control("gaze_y", "Gaze", "Gaze Y", 0.0, -2.0, 2.0, 1.0, "Looks up (+) or down (-); 1 = full scale"),
    Control("gaze_follow_head", "Gaze", "Follow Head", 1.0, 0.0, 1.0, 1.0, "1: the eyes turn with the head; 0: they counter-rotate to keep looking at the camera"),
)
BY_PROP = {c.prop: c for c in CONTROLS}

Value = Any                     # float or list of floats (one per control frame)
Sampler = Callable[[str], "Sequence[float] | None"]


def _mul(a: Value, b: Value) -> Value:
    if isinstance(a, list) or isinstance(b, list):
        n = max(len(a) if isinstance(a, list) else 1, len(b) if isinstance(b, list) else 1)
        av = a if isinstance(a, list) else [a] * n
        bv = b if isinstance(b, list) else [b] * n
        return [float(x) * float(y) for x, y in zip(av, bv)]
    return float(a) * float(b)


def controls_dict(value: Callable[[str], Any], samples: Sampler, fps: float) -> dict[str, Any]:
    """The controls file for the scene: ``value(prop)`` is the property's current value and
    ``samples(prop)`` its F-curve evaluated at every control frame (None when not animated).
    Control frame 0 is the motion's start frame; ``fps`` the scene's frame rate."""
    def v(prop: str) -> Value:
        c = BY_PROP[prop]
        if c.track:
            s = samples(prop)
            if s is not None:
                vals = [float(x) for x in s]
                return vals[0] if len(set(vals)) == 1 else vals
        raw = value(prop)
        return bool(raw) if c.kind == "bool" else int(raw) if c.kind == "int" else float(raw)

    head = v("head_strength")
    out: dict[str, Any] = {
        "schema": CONTROLS_SCHEMA, "version": CONTROLS_VERSION, "fps": float(fps),
        "head_gain": {a: _mul(head, v(f"head_{a}_gain")) for a in ("pitch", "yaw", "roll")},
        "translation_gain": _mul(head, v("head_translation")),
        "head_offset_deg": {a: v(f"head_{a}_offset") for a in ("pitch", "yaw", "roll")},
        "expression_gain": v("expression_strength"), "lip_gain": v("lip_strength"), "eye_gain": v("eye_strength"),
        "expression_offset": {"smile": v("smile"), "mouth_open": v("mouth_open"), "brow": v("brow"),
                              "eye_open": v("eye_open")},
        "fade_s": {"in": v("fade_in"), "out": v("fade_out")},
        "gaze": {"x": v("gaze_x"), "y": v("gaze_y"), "follow_head": v("gaze_follow_head")},
        "blink": ({"rate_per_min": v("blink_rate"), "duration_s": v("blink_duration"), "seed": v("blink_seed")}
                  if v("blink") else None),
        "silence": ({"relax": bool(v("silence_relax")), "threshold_db": v("silence_threshold_db"),
                     "attack_s": v("silence_attack"), "release_s": v("silence_release"),
                     "calm_head": v("silence_calm_head")}
                    if (v("silence_relax") or v("silence_calm_head") > 0) else None),
    }
    return out


def is_neutral(d: dict[str, Any]) -> bool:
    """True when the controls change nothing (every gain 1, offset 0, no blinks/silence/fade)."""
    def all_eq(x: Value, target: float) -> bool:
        return all(float(e) == target for e in x) if isinstance(x, list) else float(x) == target
    return (all(all_eq(g, 1.0) for g in d["head_gain"].values()) and all_eq(d["translation_gain"], 1.0)
            and all(all_eq(o, 0.0) for o in d["head_offset_deg"].values())
            and all(all_eq(d[k], 1.0) for k in ("expression_gain", "lip_gain", "eye_gain"))
            and all(all_eq(o, 0.0) for o in d["expression_offset"].values())
            and d["fade_s"]["in"] == 0 and d["fade_s"]["out"] == 0
            and all_eq(d["gaze"]["x"], 0.0) and all_eq(d["gaze"]["y"], 0.0) and all_eq(d["gaze"]["follow_head"], 1.0)
            and d["blink"] is None and d["silence"] is None)


def write_controls(path: str | os.PathLike[str], d: dict[str, Any]) -> Path:
    """Write atomically (temp file + rename): a half-written file is never read by the engine."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=final.name + ".", suffix=".tmp", dir=final.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(d, fh, separators=(",", ":"))
        os.replace(tmp, final)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return final


#: keys of a recorded controls file that no panel property shows, with their neutral value
_HIDDEN = (("other_gain", 1.0), ("blink.depth", 1.0), ("silence.min_silence_s", 0.25))


def _same(x: Value, y: Value) -> bool:
    return (x == y) if not (isinstance(x, list) or isinstance(y, list)) else False


def panel_values(d: dict[str, Any]) -> tuple[dict[str, Value], list[str]]:
    """A recorded controls dict (a motion file's ``controls``, canonical or as written by
    :func:`controls_dict`) -> (property -> value, keys the panel cannot show).

    Why: when an edited take is applied the panel must show the controls its keys hold, so
    that Re-apply and Render start from them instead of silently dropping the edit. The
    inverse of :func:`controls_dict`: a value is a float or a list (a per-frame track at the
    file's ``fps``); the head gains split into Head Motion x per-axis gain only when all three
    axes agree. Keys missing from ``d`` are neutral.
    """
    def get(*path: str, default: Value) -> Value:
        node: Any = d
        for p in path:
            node = node.get(p) if isinstance(node, dict) else None
        return default if node is None else node

    out: dict[str, Value] = {c.prop: (bool(c.default) if c.kind == "bool" else c.default) for c in CONTROLS}
    gains = {a: get("head_gain", a, default=1.0) if isinstance(d.get("head_gain"), dict)
             else get("head_gain", default=1.0) for a in ("pitch", "yaw", "roll")}
    g = list(gains.values())
    trans = d.get("translation_gain")
    if trans is None:                           # the engine's default: the mean of the head gains
        trans = (_mul(g[0], 1.0) if _same(g[0], g[1]) and _same(g[1], g[2]) else None)
    if _same(g[0], g[1]) and _same(g[1], g[2]) and not isinstance(g[0], list) and float(g[0]) != 0.0:
        out["head_strength"] = float(g[0])
        out["head_translation"] = (float(g[0]) if trans is None else
                                   [float(t) / float(g[0]) for t in trans] if isinstance(trans, list)
                                   else float(trans) / float(g[0]))
    else:
        for a in ("pitch", "yaw", "roll"):
            out[f"head_{a}_gain"] = gains[a]
        out["head_translation"] = sum(float(x) for x in g if not isinstance(x, list)) / 3 if trans is None else trans
    for a in ("pitch", "yaw", "roll"):
        out[f"head_{a}_offset"] = get("head_offset_deg", a, default=0.0)
    out["expression_strength"] = get("expression_gain", default=1.0)
    out["lip_strength"] = get("lip_gain", default=1.0)
    out["eye_strength"] = get("eye_gain", default=1.0)
    for ch in ("smile", "mouth_open", "brow", "eye_open"):
        out[ch] = get("expression_offset", ch, default=0.0)
    out["fade_in"], out["fade_out"] = get("fade_s", "in", default=0.0), get("fade_s", "out", default=0.0)
    out["gaze_x"], out["gaze_y"] = get("gaze", "x", default=0.0), get("gaze", "y", default=0.0)
    out["gaze_follow_head"] = get("gaze", "follow_head", default=1.0)
    blink = d.get("blink")
    out["blink"] = blink is not None
    if blink is not None:
        out["blink_rate"] = float(blink.get("rate_per_min", 15.0))
        out["blink_duration"] = float(blink.get("duration_s", 0.2))
        out["blink_seed"] = int(blink.get("seed", 0))
    silence = d.get("silence")
    if silence is not None:
        out["silence_relax"] = bool(silence.get("relax", True))
        out["silence_threshold_db"] = float(silence.get("threshold_db", -35.0))
        out["silence_attack"] = float(silence.get("attack_s", 0.05))
        out["silence_release"] = float(silence.get("release_s", 0.2))
        out["silence_calm_head"] = float(silence.get("calm_head", 0.0))
    hidden = [key for key, neutral in _HIDDEN if get(*key.split("."), default=neutral) != neutral]
    for prop, v in out.items():                 # values are in the panel's range or not shown
        c = BY_PROP[prop]
        vals = v if isinstance(v, list) else [v]
        if c.kind == "float" and any(not (c.lo <= float(x) <= c.hi) for x in vals):
            hidden.append(prop)
    return out, hidden
