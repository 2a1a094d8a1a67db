"""Retarget presets (``joyvasa.retarget`` v1): which rig controls a take keys, and how (bpy-free).

Why files: ARKit shape keys, a Rigify face, VRoid/VRM avatars and studio rigs name their face
controls differently; a preset is the one table from the readout channels (core/contract/semantic.py
``readout``: the semantic expression channels, derived channels, visemes) to the rig's shape
keys, bone transform channels and custom properties, plus the head/neck bones. Shipped presets
live in ``joyvasa_blender/presets/``; a studio adds its rig as a JSON file in the extension's user
folder, no code. Everything here is validated before anything is keyed: a bad preset raises one
:class:`PresetError` that names the file and the key.

A preset file::

    {"schema": "joyvasa.retarget", "version": 1, "name": "My rig",
     "description": "optional text",
     "head": {"bone": "head", "neck": "neck", "neck_share": 0.4},       # optional
     "detect": {"bones": [...], "shape_keys": [...]},                   # optional
     "channels": {
        "jawOpen":   [{"bone": "jaw", "rotation": "X", "full": 0.35}],
        "viseme_aa": [{"shape_key": "A", "gain": 0.8}],
        "browUp":    [{"property": "brow_raise", "bone": "face_ctrl", "full": 1.0}]}}

Each target's value at every frame: ``x = clamp(gain * channel + offset, clamp)``; a shape key is
keyed to ``x`` (several channels onto one key: the largest wins); a bone channel (local pose
``rotation`` in radians or ``location`` in rig units, one ``axis``) and a property to
``rest + full * x`` summed over the channels that drive it.

A ``rotation`` target may declare ``"space": "head"``: the turn is about an axis of the head
bone's rest frame, converted to the bone's own axes with its rest orientation (for rigs whose
bones have arbitrary rolls, MakeHuman's); several such targets on one bone add their rotation
vectors. A ``location`` target declares its ``space``: ``"local"`` (default) is the pose channel itself;
``"head"`` is an axis of the head bone's rest frame (for an upright head: X = the character's
left, Y = up, Z = its own Z), converted into the bone's location channels through
:class:`RigGeometry` (measured on the rig by the Blender side): for controls whose rest axes are
not the head's, or whose location is in their parent's space (Rigify's ``eye_common``). An
``aim`` target (``"aim": [eye bones]``, head space) moves an eye target in front of those eyes:
``full`` is then the eyes' angle in radians at x = 1, and the target moves by
``D * tan(angle)`` with D the target's distance from the eyes' midpoint measured on the rig, the
angle clamped to +-AIM_MAX_ANGLE (the eyes never turn past it, never flip).
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from .contract import semantic

SCHEMA = "joyvasa.retarget"
VERSION = 1
SHIPPED_DIR = Path(__file__).resolve().parents[1] / "presets"      # joyvasa_blender/presets/
#: Head rotation share of the neck when a preset names a neck bone but no ``neck_share``.
DEFAULT_NECK_SHARE = 0.4
ARKIT = "ARKit 52"
AXES = {"X": 0, "Y": 1, "Z": 2}
_TOP_KEYS = {"schema", "version", "name", "description", "head", "detect", "channels"}
#: Default clamp of the signed channels (every other channel: [0, 1]).
SIGNED_CLAMP = {"gazeX": (-1.0, 1.0), "gazeY": (-1.0, 1.0), "headPitch": (-math.pi, math.pi),
                "headYaw": (-math.pi, math.pi), "headRoll": (-math.pi, math.pi)}
_TARGET_KEYS = {"shape_key", "bone", "property", "rotation", "location", "full", "rest", "gain", "offset", "clamp",
                "space", "aim", "vrm_expression"}
#: VRM 1.0's preset expressions (a ``vrm_expression`` target names one; on a VRM 0.x avatar the
#: add-on's blend-shape group of the matching preset is keyed: see rig_presets.VRM0_PRESETS)
VRM_EXPRESSIONS = ("aa", "ih", "ou", "ee", "oh", "blink", "blinkLeft", "blinkRight", "happy", "angry", "sad",
                   "relaxed", "surprised", "lookUp", "lookDown", "lookLeft", "lookRight", "neutral")
#: prefix of a VRM expression in the names detection compares (rig_presets.target_names adds them)
VRM_PREFIX = "vrm:"
SPACES = ("local", "head")
#: the largest eye angle an aim target asks for (radians, 35 degrees)
AIM_MAX_ANGLE = math.radians(35.0)


HEAD_ONLY = "head only: this rig has no face controls"


class PresetError(ValueError):
    """A preset file or dict is not a valid ``joyvasa.retarget`` v1 preset (the message names the key)."""


@dataclass(frozen=True)
class Target:
    """One thing a readout channel drives."""
    kind: str                  # shape_key | bone | property
    name: str                  # shape-key or property name; "" for a bone transform
    bone: str = ""             # bone of a transform, or pose bone holding a property ("" = object)
    transform: str = ""        # rotation | location (bone transform only)
    axis: int = 0              # local pose axis 0..2 (bone transform only)
    full: float = 1.0          # value at x = 1 (radians / rig units / property units)
    rest: float = 0.0          # value at x = 0
    gain: float = 1.0
    offset: float = 0.0
    lo: float = 0.0
    hi: float = 1.0
    space: str = "local"       # location targets: local | head (see the module docstring)
    aim: tuple[str, ...] = ()  # eye bones an aim target is in front of (full = their angle, radians)

    def x(self, values: np.ndarray) -> np.ndarray:
        """clamp(gain * values + offset) (the offset is skipped when 0, so ARKit keys stay bit-identical)."""
        v = values * self.gain
        if self.offset:
            v = v + self.offset
        return np.clip(v, self.lo, self.hi)

    def label(self) -> str:
        if self.kind == "shape_key":
            return f"shape key {self.name}"
        if self.kind == "vrm_expression":
            return f"VRM expression {self.name}"
        if self.kind == "bone":
            space = f" ({self.space} space)" if self.space != "local" else ""
            return f"bone {self.bone} {self.transform} {'XYZ'[self.axis]}{space}"
        return f"property {self.name}" + (f" of bone {self.bone}" if self.bone else "")


@dataclass(frozen=True)
class Head:
    bone: str = ""             # "" = the first bone named like head (or the panel's Head Bone)
    neck: str = ""             # "" = no neck: all rotation on the head
    neck_share: float = DEFAULT_NECK_SHARE


@dataclass(frozen=True)
class Preset:
    name: str
    channels: dict[str, tuple[Target, ...]]
    head: Head = Head()
    description: str = ""
    source: str = ""           # file the preset came from ("" = built in memory)
    detect_bones: tuple[str, ...] = ()
    detect_shape_keys: tuple[str, ...] = ()

    def targets(self) -> list[tuple[str, Target]]:
        return [(ch, t) for ch, ts in self.channels.items() for t in ts]

    def uses_head_channels(self) -> bool:
        return any(ch in semantic.HEAD for ch in self.channels)

    def uses_gaze(self) -> bool:
        """Whether a gaze channel is mapped (then the gaze group is projected)."""
        gaze = {c.name for c in semantic.load_basis().channels if c.group == "gaze"} | {"gazeX", "gazeY"}
        return any(ch in gaze for ch in self.channels)

    def to_dict(self) -> dict[str, Any]:
        """The preset as a file's JSON (what :func:`parse_preset` reads back)."""
        def tdict(t: Target, ch: str) -> dict[str, Any]:
            d: dict[str, Any] = {}
            if t.kind in ("shape_key", "vrm_expression"):
                d[t.kind] = t.name
            elif t.kind == "bone":
                d.update({"bone": t.bone, t.transform: "XYZ"[t.axis], "full": t.full})
                if t.rest:
                    d["rest"] = t.rest
                if t.space != "local":
                    d["space"] = t.space
                if t.aim:
                    d["aim"] = list(t.aim)
            else:
                d["property"] = t.name
                if t.bone:
                    d["bone"] = t.bone
                d["full"] = t.full
                if t.rest:
                    d["rest"] = t.rest
            if t.gain != 1.0:
                d["gain"] = t.gain
            if t.offset:
                d["offset"] = t.offset
            if (t.lo, t.hi) != SIGNED_CLAMP.get(ch, (0.0, 1.0)):
                d["clamp"] = [t.lo, t.hi]
            return d
        out: dict[str, Any] = {"schema": SCHEMA, "version": VERSION, "name": self.name}
        if self.description:
            out["description"] = self.description
        if self.head != Head():
            out["head"] = {"bone": self.head.bone, "neck": self.head.neck, "neck_share": self.head.neck_share}
        if self.detect_bones or self.detect_shape_keys:
            out["detect"] = {"bones": list(self.detect_bones), "shape_keys": list(self.detect_shape_keys)}
        out["channels"] = {ch: [tdict(t, ch) for t in ts] for ch, ts in self.channels.items()}
        return out


# -- reading and validation -------------------------------------------------------------------
#: no gain, offset, clamp or full-scale value of a real rig is larger; 1e308 keyed inf shape keys
MAX_PRESET_NUMBER = 1e6
#: a preset file is a few kB; more is not a preset (and a link to /dev/zero must not be read whole)
MAX_PRESET_BYTES = 1 << 20


def _num(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or abs(value) > MAX_PRESET_NUMBER:
        raise PresetError(f"{where}: must be a finite number between {-MAX_PRESET_NUMBER:g} and "
                          f"{MAX_PRESET_NUMBER:g}, got {str(value)[:40]}")
    return float(value)


def _name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise PresetError(f"{where}: must be a non-empty name, got {value!r}")
    return value


def _target(d: Any, where: str, channel: str = "") -> Target:
    if not isinstance(d, dict):
        raise PresetError(f"{where}: must be an object like {{\"shape_key\": \"jawOpen\"}}, got {d!r}")
    unknown = sorted(set(d) - _TARGET_KEYS)
    if unknown:
        raise PresetError(f"{where}.{unknown[0]}: unknown key (known: {', '.join(sorted(_TARGET_KEYS))})")
    kinds = [k for k in ("shape_key", "vrm_expression", "property") if k in d] + \
        (["bone"] if "bone" in d and "property" not in d else [])
    if len(kinds) != 1:
        raise PresetError(f"{where}: needs exactly one of shape_key, vrm_expression, bone (with rotation or "
                          "location) or property")
    kind = kinds[0]
    gain = _num(d.get("gain", 1.0), f"{where}.gain")
    offset = _num(d.get("offset", 0.0), f"{where}.offset")
    lo, hi = SIGNED_CLAMP.get(channel, (0.0, 1.0))
    if "clamp" in d:
        c = d["clamp"]
        if not isinstance(c, list) or len(c) != 2:
            raise PresetError(f"{where}.clamp: must be [low, high], got {c!r}")
        lo, hi = _num(c[0], f"{where}.clamp[0]"), _num(c[1], f"{where}.clamp[1]")
        if not lo < hi:
            raise PresetError(f"{where}.clamp: low must be below high, got {c!r}")
    if kind != "bone":
        for key in ("space", "aim"):
            if key in d:
                raise PresetError(f"{where}.{key}: only a bone target has a {key}")
    if kind in ("shape_key", "vrm_expression"):
        for key in ("rotation", "location", "full", "rest"):
            if key in d:
                raise PresetError(f"{where}.{key}: a {kind.replace('_', '-')} target takes only gain, offset and clamp")
        name = _name(d[kind], f"{where}.{kind}")
        if kind == "vrm_expression" and name not in VRM_EXPRESSIONS:
            raise PresetError(f"{where}.vrm_expression: not a VRM 1.0 preset expression: {name!r} "
                              f"(known: {', '.join(VRM_EXPRESSIONS)})")
        return Target(kind, name, gain=gain, offset=offset, lo=lo, hi=hi)
    full = _num(d.get("full", 1.0), f"{where}.full")
    rest = _num(d.get("rest", 0.0), f"{where}.rest")
    if kind == "property":
        for key in ("rotation", "location"):
            if key in d:
                raise PresetError(f"{where}.{key}: a property target has no {key}")
        bone = _name(d["bone"], f"{where}.bone") if "bone" in d else ""
        return Target("property", _name(d["property"], f"{where}.property"), bone, full=full, rest=rest,
                      gain=gain, offset=offset, lo=lo, hi=hi)
    modes = [m for m in ("rotation", "location") if m in d]
    if len(modes) != 1:
        raise PresetError(f"{where}: a bone target needs exactly one of rotation or location (an axis X, Y or Z)")
    axis = d[modes[0]]
    if axis not in AXES:
        raise PresetError(f"{where}.{modes[0]}: must be the local axis X, Y or Z, got {axis!r}")
    if "full" not in d:
        raise PresetError(f"{where}.full: a bone target needs its value at full scale (radians or rig units)")
    space = d.get("space", "local")
    if space not in SPACES:
        raise PresetError(f"{where}.space: must be one of {', '.join(SPACES)}, got {space!r}")
    aim: tuple[str, ...] = ()
    if "aim" in d:
        if not isinstance(d["aim"], list) or not d["aim"]:
            raise PresetError(f"{where}.aim: must be the list of eye bones the target is in front of")
        aim = tuple(_name(n, f"{where}.aim[{i}]") for i, n in enumerate(d["aim"]))
        if space != "head" or axis == "Z" or modes[0] != "location":
            raise PresetError(f"{where}.aim: an aim target moves in head space along X or Y (add \"space\": \"head\")")
    return Target("bone", "", _name(d["bone"], f"{where}.bone"), modes[0], AXES[axis], full, rest, gain, offset, lo, hi,
                  space, aim)


def parse_preset(data: Any, source: str = "") -> Preset:
    """Validate a preset dict (a file's JSON) and return it; PresetError names the bad key."""
    label = f"rig preset {source or '(unsaved)'}"
    try:
        return _parse(data)
    except PresetError as exc:
        raise PresetError(f"{label}: {exc}") from None


def _parse(data: Any) -> Preset:
    if not isinstance(data, dict):
        raise PresetError("must be a JSON object")
    if data.get("schema") != SCHEMA:
        raise PresetError(f"schema: must be {SCHEMA!r}, got {data.get('schema')!r}")
    if isinstance(data.get("version"), bool) or data.get("version") != VERSION:
        raise PresetError(f"version: this add-on reads version {VERSION}, got {data.get('version')!r}")
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise PresetError(f"{unknown[0]}: unknown key (known: {', '.join(sorted(_TOP_KEYS))})")
    name = _name(data.get("name"), "name")
    desc = data.get("description", "")
    if not isinstance(desc, str):
        raise PresetError("description: must be text")
    head = Head()
    if "head" in data:
        h = data["head"]
        if not isinstance(h, dict) or set(h) - {"bone", "neck", "neck_share"}:
            bad = sorted(set(h) - {"bone", "neck", "neck_share"}) if isinstance(h, dict) else []
            raise PresetError(f"head{'.' + bad[0] if bad else ''}: expected {{\"bone\", \"neck\", \"neck_share\"}}")
        for key in ("bone", "neck"):
            if not isinstance(h.get(key, ""), str):
                raise PresetError(f"head.{key}: must be a bone name (\"\" = none)")
        share = _num(h.get("neck_share", DEFAULT_NECK_SHARE), "head.neck_share")
        if not 0.0 <= share <= 1.0:
            raise PresetError(f"head.neck_share: must be in [0, 1], got {share}")
        if h.get("bone", "") and h.get("bone", "") == h.get("neck", ""):
            raise PresetError(f"head.neck: must be another bone than head.bone ({h['bone']!r} is both)")
        head = Head(h.get("bone", ""), h.get("neck", ""), share)
    det = data.get("detect", {})
    if not isinstance(det, dict) or set(det) - {"bones", "shape_keys"}:
        raise PresetError("detect: expected {\"bones\": [...], \"shape_keys\": [...]}")
    detect = {}
    for key in ("bones", "shape_keys"):
        names = det.get(key, [])
        if not isinstance(names, list):
            raise PresetError(f"detect.{key}: must be a list of names")
        detect[key] = tuple(_name(n, f"detect.{key}[{i}]") for i, n in enumerate(names))
    chans = data.get("channels")
    if not isinstance(chans, dict) or not (chans or head.bone):
        raise PresetError("channels: must map at least one readout channel to a list of targets "
                          "(or, for a head-only rig, be {} with head.bone set)")
    known = semantic.readout_names()
    channels: dict[str, tuple[Target, ...]] = {}
    for ch, targets in chans.items():
        if ch not in known:
            raise PresetError(f"channels.{ch}: unknown readout channel (known: {', '.join(known)})")
        if isinstance(targets, dict):
            targets = [targets]
        if not isinstance(targets, list) or not targets:
            raise PresetError(f"channels.{ch}: must be a list of targets")
        channels[ch] = tuple(_target(t, f"channels.{ch}[{i}]", ch) for i, t in enumerate(targets))
    preset = Preset(name, channels, head, desc, "", detect["bones"], detect["shape_keys"])
    _check_consistent(preset)
    return preset


def _check_consistent(p: Preset) -> None:
    """Targets that share a bone channel or property must agree on its rest value; the head and
    neck bones take no rotation targets (they are keyed from the head rotation)."""
    rests: dict[tuple, tuple[float, str]] = {}
    spaces: dict[str, tuple[str, str]] = {}
    for ch, t in p.targets():
        if t.kind in ("shape_key", "vrm_expression"):
            continue
        if t.kind == "bone":
            if t.space != "local" and t.rest:
                raise PresetError(f"channels.{ch}: {t.label()}: a head-space target has no rest (its rest is the bone's)")
            if spaces.setdefault((t.bone, t.transform), (t.space, ch))[0] != t.space:
                other = spaces[(t.bone, t.transform)]
                raise PresetError(f"channels.{ch}: {t.label()}, but channels.{other[1]} gives bone {t.bone}'s "
                                  f"{t.transform} in {other[0]} space: one space per bone {t.transform}")
        key = (t.kind, t.bone, t.transform, t.axis, t.name)
        if key in rests and rests[key][0] != t.rest:
            raise PresetError(f"channels.{ch}: {t.label()} has rest {t.rest}, but channels.{rests[key][1]} "
                              f"gives it rest {rests[key][0]}")
        rests.setdefault(key, (t.rest, ch))
        if t.kind == "bone" and t.transform == "rotation" and t.bone in {p.head.bone, p.head.neck} - {""}:
            raise PresetError(f"channels.{ch}: bone {t.bone} is keyed from the head rotation (head.bone/head.neck); "
                              "it takes no rotation targets")


def load_preset_file(path: str | Path) -> Preset:
    """Read and validate one preset file (cached while the file's size and time stay the same:
    the panel lists presets on every redraw)."""
    import stat

    path = Path(path)
    try:
        st = path.stat()
    except OSError as exc:
        raise PresetError(f"rig preset {path}: cannot be read ({exc.strerror or exc})") from None
    if not stat.S_ISREG(st.st_mode):   # a FIFO blocks every panel draw, /dev/zero never ends
        raise PresetError(f"rig preset {path}: not a regular file (a folder, pipe or device); remove it")
    if st.st_size > MAX_PRESET_BYTES:
        raise PresetError(f"rig preset {path}: {st.st_size} bytes, larger than a preset ({MAX_PRESET_BYTES} at most)")
    return _load_cached(str(path), st.st_mtime_ns, st.st_size)


@lru_cache(maxsize=128)
def _load_cached(path_text: str, _mtime_ns: int, _size: int) -> Preset:
    import os

    from .contract.protocol import JSONLimitError, loads_limited

    path = Path(path_text)
    try:   # non-blocking open: the file may have turned into a FIFO since the check
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as fh:
            raw = fh.read(MAX_PRESET_BYTES + 1)
        data = loads_limited(raw, "the file", max_bytes=MAX_PRESET_BYTES)
    except OSError as exc:
        raise PresetError(f"rig preset {path}: cannot be read ({exc.strerror or exc})") from None
    except JSONLimitError as exc:   # not UTF-8, too deep, a 5000-digit number, not JSON
        why = str(exc).removeprefix("the file is ").removeprefix("the file: ")
        raise PresetError(f"rig preset {path}: {why}") from None
    p = parse_preset(data, str(path))
    return Preset(p.name, p.channels, p.head, p.description, str(path), p.detect_bones, p.detect_shape_keys)


def preset_files(user_dir: str | Path | None = None) -> list[Path]:
    """Shipped preset files (sorted, ARKit first), then the user folder's ``*.json``."""
    shipped = sorted(SHIPPED_DIR.glob("*.json"))
    user = sorted(Path(user_dir).glob("*.json")) if user_dir and Path(user_dir).is_dir() else []
    return shipped + user


def list_presets(user_dir: str | Path | None = None) -> tuple[list[Preset], list[str]]:
    """All readable presets (shipped first; a user preset with a shipped name replaces nothing,
    it is listed after it) and one error line per user file that failed validation."""
    out: list[Preset] = []
    errors: list[str] = []
    for path in preset_files(user_dir):
        try:
            out.append(load_preset_file(path))
        except PresetError as exc:
            if path.parent == SHIPPED_DIR:
                raise                       # a broken shipped preset is a bug: fail loudly
            errors.append(str(exc))
    return out, errors


def find_preset(name_or_path: str, user_dir: str | Path | None = None) -> Preset:
    """A preset by its name (case-insensitive; a shipped preset wins over a user preset of the same
    name) or by the path of its file (a name ending in .json, or an existing file)."""
    text = name_or_path.strip()
    if text.lower().endswith(".json") or Path(text).expanduser().is_file():
        return load_preset_file(Path(text).expanduser())
    presets, _errors = list_presets(user_dir)
    for p in presets:
        if p.name.lower() == text.lower():
            return p
    names = ", ".join(p.name for p in presets)
    raise PresetError(f"rig preset {text!r} not found (presets: {names}; or give the path of a .json file)")


def user_preset_path(user_dir: str | Path, name: str) -> Path:
    """Where a user preset named ``name`` is saved (a file name made from the name)."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", name.strip()).strip("._") or "preset"
    return Path(user_dir) / f"{stem}.json"


def save_user_preset(preset: Preset, user_dir: str | Path) -> Path:
    """Write ``preset`` into the user folder atomically (validated first, so a saved file always loads)."""
    import os
    import tempfile

    data = preset.to_dict()
    parse_preset(data, preset.name)
    final = user_preset_path(user_dir, preset.name)
    if final.exists():   # "My Rig" and "My/Rig" share My_Rig.json: never replace another preset
        try:
            other = load_preset_file(final).name
        except PresetError:
            other = None
        if other is None or other.strip().lower() != preset.name.strip().lower():
            raise PresetError(f"rig preset {preset.name!r} would be saved as {final.name}, which already holds "
                              f"{'the preset ' + repr(other) if other else 'a file that is not a preset'}; "
                              "choose another name")
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=final.name + ".", suffix=".tmp", dir=final.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=1)
        os.replace(tmp, final)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return final


# -- the ARKit name map (the panel's text field) -------------------------------------------------
def with_name_map(preset: Preset, text: str, gaze: bool = False) -> Preset:
    """``preset`` with its shape-key targets replaced by a name-map text
    (``channel=Key1,Key2*gain; ...``, semantic.parse_name_map): the ARKit preset's editable form.
    ``gaze`` (the panel's Gaze): the gaze channels the text does not name key their ARKit
    eyeLook* shape keys (the basis's targets: lookImageRight = eyeLookOutLeft + eyeLookInRight...)."""
    try:
        mapping = semantic.parse_name_map(text)
    except ValueError as exc:
        raise PresetError(f"rig preset {preset.name}: name map: {exc}") from None
    if gaze:
        for c in semantic.load_basis().channels:
            if c.group == "gaze" and c.targets and c.name not in mapping:
                mapping[c.name] = [(key, 1.0) for key in c.targets]
    known = semantic.readout_names()
    channels: dict[str, list[Target]] = {}
    for ch, ts in preset.channels.items():
        kept = [t for t in ts if t.kind != "shape_key"]
        if kept:
            channels[ch] = kept
    for ch, keys in mapping.items():
        for key, gain in keys:
            _num(gain, f"rig preset {preset.name}: name map {ch}={key} gain")
        if ch not in known:
            continue                # as before presets: a channel the readout lacks keys nothing
        channels.setdefault(ch, []).extend(Target("shape_key", key, gain=gain) for key, gain in keys)
    return Preset(preset.name, {c: tuple(t) for c, t in channels.items()}, preset.head, preset.description,
                  preset.source, preset.detect_bones, preset.detect_shape_keys)


# -- detection --------------------------------------------------------------------------------
@dataclass
class Coverage:
    preset: Preset
    found: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.found) + len(self.missing)

    @property
    def fraction(self) -> float:
        return len(self.found) / self.total if self.total else 0.0

    def summary(self) -> str:
        """``"Rigify face: 14 of 14 controls found"``; a preset without channels (a rig with a head but
        no face: Mixamo) says so: ``"Mixamo (head only): head only: this rig has no face controls"``."""
        if not self.preset.channels:
            return f"{self.preset.name}: {HEAD_ONLY}" + ("" if not self.missing else
                                                          f" ({len(self.found)} of {self.total} bones found)")
        bones = bool(self.preset.detect_bones) or any(t.kind == "bone" for _c, t in self.preset.targets())
        keys = bool(self.preset.detect_shape_keys) or any(t.kind == "shape_key" for _c, t in self.preset.targets())
        vrm = any(t.kind == "vrm_expression" for _c, t in self.preset.targets())
        what = ("expressions" if vrm and not bones and not keys else "controls" if bones and not keys
                else "shape keys" if keys and not bones else "targets")
        return f"{self.preset.name}: {len(self.found)} of {self.total} {what} found"


def detect_names(preset: Preset) -> tuple[list[str], list[str]]:
    """The bone and shape-key names that identify the preset's rig: its ``detect`` lists, else every
    bone and shape key its targets name (property targets count through their bone)."""
    bones = list(preset.detect_bones) or list(dict.fromkeys(t.bone for _c, t in preset.targets() if t.bone))
    keys = list(preset.detect_shape_keys) or list(dict.fromkeys(
        (VRM_PREFIX + t.name if t.kind == "vrm_expression" else t.name) for _c, t in preset.targets()
        if t.kind in ("shape_key", "vrm_expression")))
    return bones, keys


def coverage(preset: Preset, bones: Iterable[str], shape_keys: Iterable[str]) -> Coverage:
    """Which of the preset's identifying names the target objects have (missing is never an error)."""
    have_b, have_k = set(bones), set(shape_keys)
    want_b, want_k = detect_names(preset)
    cov = Coverage(preset)
    for names, have in ((want_b, have_b), (want_k, have_k)):
        for n in names:
            (cov.found if n in have else cov.missing).append(n)
    return cov


def detect(presets: Iterable[Preset], bones: Iterable[str], shape_keys: Iterable[str]) -> tuple[Preset, list[Coverage]]:
    """The best-matching preset (largest found fraction, then most found, then list order) and
    every preset's coverage, best first; ARKit 52 when nothing matches at all (the behaviour
    before presets: shape keys named like ARKit)."""
    bones, shape_keys = set(bones), set(shape_keys)
    covs = [coverage(p, bones, shape_keys) for p in presets]
    order = sorted(range(len(covs)), key=lambda i: (-covs[i].fraction, -len(covs[i].found), i))
    ranked = [covs[i] for i in order]
    if ranked and ranked[0].found:
        return ranked[0].preset, ranked
    arkit = [c.preset for c in covs if c.preset.name == ARKIT]
    if not arkit:
        raise PresetError(f"no rig preset matches and the {ARKIT} preset is missing")
    return arkit[0], ranked


# -- evaluation -------------------------------------------------------------------------------
@dataclass
class Plan:
    """Per-frame values to key, by target (see the module docstring for the rules)."""
    shape_keys: dict[str, np.ndarray] = field(default_factory=dict)             # name -> (N,)
    bones: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)      # (bone, rotation|location|rotvec) -> (N, 3)
    bone_axes: dict[tuple[str, str], set[int]] = field(default_factory=dict)    # which axes a channel drives
    properties: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)  # (bone or "", name) -> (N,)
    expressions: dict[str, np.ndarray] = field(default_factory=dict)            # VRM expression -> (N,)


@dataclass
class RigGeometry:
    """What head-space and aim targets need from the rig (measured by rig_presets.rig_geometry):
    per bone, the 3x3 matrix taking a head-frame vector to its location channels, and per aim
    target its distance from the eyes' midpoint (rig units)."""
    to_channels: dict[str, np.ndarray] = field(default_factory=dict)
    aim_distance: dict[str, float] = field(default_factory=dict)
    #: per bone with head-space rotation targets: its rest axes in the head's rest frame (3x3,
    #: columns = the bone's X, Y, Z): a turn about head axis a is a turn about rest_in_head.T @ a
    rest_in_head: dict[str, np.ndarray] = field(default_factory=dict)


def head_space_bones(preset: Preset, transform: str = "location") -> dict[str, tuple[str, ...]]:
    """Bones with head-space ``transform`` targets -> the eye bones they aim from (() when none)."""
    out: dict[str, tuple[str, ...]] = {}
    for _ch, t in preset.targets():
        if t.kind == "bone" and t.space == "head" and t.transform == transform:
            out[t.bone] = out.get(t.bone, ()) or t.aim
    return out


def evaluate(preset: Preset, channels: Mapping[str, np.ndarray], geometry: RigGeometry | None = None) -> Plan:
    """Turn readout channels ((N,) arrays, semantic.readout: one motion row or a block) into the
    values to key. Channels the readout lacks (e.g. gaze when it was not projected) drive
    nothing. Head-space targets need ``geometry`` for their bone; without it they are skipped."""
    plan = Plan()
    for ch, targets in preset.channels.items():
        if ch not in channels:
            continue
        vals = np.asarray(channels[ch], np.float64)
        for t in targets:
            x = t.x(vals)
            if t.kind in ("shape_key", "vrm_expression"):
                out = plan.shape_keys if t.kind == "shape_key" else plan.expressions
                out[t.name] = np.maximum(out[t.name], x) if t.name in out else x
            elif t.kind == "bone" and t.space == "head" and t.transform == "rotation":
                B = (geometry or RigGeometry()).rest_in_head.get(t.bone)
                if B is None:
                    continue
                key = (t.bone, "rotvec")                       # local rotation vector (axis x angle)
                if key not in plan.bones:
                    plan.bones[key] = np.zeros((len(vals), 3))
                    plan.bone_axes[key] = {0, 1, 2}
                plan.bones[key] += (t.full * x)[:, None] * np.asarray(B, np.float64).T[:, t.axis][None, :]
            elif t.kind == "bone" and t.space == "head":
                M = (geometry or RigGeometry()).to_channels.get(t.bone)
                if M is None:
                    continue
                amount = t.full * x
                if t.aim:
                    D = (geometry or RigGeometry()).aim_distance.get(t.bone, 0.0)
                    amount = D * np.tan(np.clip(t.full * x, -AIM_MAX_ANGLE, AIM_MAX_ANGLE))
                key = (t.bone, "location")
                if key not in plan.bones:
                    plan.bones[key] = np.zeros((len(vals), 3))
                    plan.bone_axes[key] = set()
                column = np.asarray(M, np.float64)[:, t.axis]
                plan.bones[key] += amount[:, None] * column[None, :]
                plan.bone_axes[key] |= {i for i in range(3) if abs(column[i]) > 1e-9}
            elif t.kind == "bone":
                key = (t.bone, t.transform)
                if key not in plan.bones:
                    plan.bones[key] = np.zeros((len(vals), 3))
                    plan.bone_axes[key] = set()
                if t.axis not in plan.bone_axes[key]:
                    plan.bones[key][:, t.axis] += t.rest
                    plan.bone_axes[key].add(t.axis)
                plan.bones[key][:, t.axis] += t.full * x
            else:
                key = (t.bone, t.name)
                plan.properties[key] = plan.properties.get(key, np.full(len(vals), t.rest)) + t.full * x
    return plan


def head_channels(M_rel: np.ndarray) -> dict[str, np.ndarray]:
    """The head readout channels (radians) from relative camera-frame rotations (N, 3, 3)."""
    from . import motion_core as mc

    p, y, r = mc.pyr_from_rotation(M_rel)
    return {"headPitch": np.radians(p), "headYaw": np.radians(y), "headRoll": np.radians(r)}


def split_head_rotation(M: np.ndarray, neck_share: float, inherit: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Split world head rotations (N, 3, 3) into the neck's and the head's own rotations.

    The neck turns by ``M^s`` (s = neck_share: the same axis, a share of the angle). A head that
    follows its parent by ``inherit`` (1: a plain child of the neck; 0: isolated, as Rigify's head
    with Head Follow off) already turns by ``M^(s*inherit)`` through the neck, so it adds
    ``M^(1 - s*inherit)``: the head ends up turned by exactly ``M``. Rotations about one axis commute,
    which makes both products equal ``M``."""
    from . import motion_core as mc

    q = mc.quat_continuous(mc.quat_from_matrix(M))
    neck = mc.matrix_from_quat(mc.quat_power(q, neck_share))
    head = mc.matrix_from_quat(mc.quat_power(q, 1.0 - neck_share * inherit))
    return neck, head


# -- the panel's mapping table ------------------------------------------------------------------
ROW_KINDS = ("shape_key", "bone_rotation", "bone_location", "property", "vrm_expression")


def rows_from_preset(preset: Preset) -> list[dict[str, Any]]:
    """One flat row per target (what the panel's mapping table shows and edits)."""
    rows = []
    for ch, t in preset.targets():
        kind = t.kind if t.kind != "bone" else f"bone_{t.transform}"
        rows.append({"channel": ch, "kind": kind, "target": t.name if t.kind != "bone" else t.bone,
                     "bone": t.bone if t.kind == "property" else "", "axis": "XYZ"[t.axis], "full": t.full,
                     "rest": t.rest, "gain": t.gain, "offset": t.offset, "lo": t.lo, "hi": t.hi,
                     "space": t.space.upper(), "aim": ", ".join(t.aim)})
    return rows


def preset_from_rows(name: str, rows: Iterable[Mapping[str, Any]], head: Head = Head(), description: str = "") -> Preset:
    """Build (and validate, as a file would be) a preset from mapping-table rows; the error names
    the row: ``row 3 (jawOpen): ...``."""
    channels: dict[str, list[dict[str, Any]]] = {}
    where: dict[tuple[str, int], int] = {}
    for i, r in enumerate(rows, 1):
        kind = r.get("kind")
        if kind not in ROW_KINDS:
            raise PresetError(f"rig preset {name}: row {i}: kind must be one of {', '.join(ROW_KINDS)}, got {kind!r}")
        d: dict[str, Any] = {"gain": r.get("gain", 1.0), "offset": r.get("offset", 0.0),
                             "clamp": [r.get("lo", 0.0), r.get("hi", 1.0)]}
        if kind in ("shape_key", "vrm_expression"):
            d[kind] = r.get("target", "")
        elif kind == "property":
            d.update(property=r.get("target", ""), full=r.get("full", 1.0), rest=r.get("rest", 0.0))
            if r.get("bone"):
                d["bone"] = r["bone"]
        else:
            d.update({"bone": r.get("target", ""), kind.split("_")[1]: r.get("axis", "X"), "full": r.get("full", 1.0),
                      "rest": r.get("rest", 0.0)})
            space = str(r.get("space") or "local").lower()
            aim = [n.strip() for n in str(r.get("aim") or "").split(",") if n.strip()]
            if space != "local":
                d["space"] = space
            if kind == "bone_location" and aim:
                d["aim"] = aim
        ch = str(r.get("channel", ""))
        where[(ch, len(channels.get(ch, [])))] = i
        channels.setdefault(ch, []).append(d)
    data: dict[str, Any] = {"schema": SCHEMA, "version": VERSION, "name": name, "channels": channels,
                            "head": {"bone": head.bone, "neck": head.neck, "neck_share": head.neck_share}}
    if description:
        data["description"] = description
    try:
        return _parse(data)
    except PresetError as exc:
        msg = str(exc)
        m = re.match(r"channels\.([^\[.:]+)(?:\[(\d+)\])?", msg)
        if m and (m.group(1), int(m.group(2) or 0)) in where:
            msg = f"row {where[(m.group(1), int(m.group(2) or 0))]} ({m.group(1)}): {msg}"
        raise PresetError(f"rig preset {name}: {msg}") from None
