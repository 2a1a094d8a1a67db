"""Retarget presets (``joyvasa.retarget`` v1): which rig controls a take keys, and how (bpy-free).

Why files: ARKit shape keys, a Rigify face, VRoid/VRM avatars and studio rigs name their face
controls differently; a preset is the one table from the readout channels (core/semantic.py
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

from . import semantic

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
_TARGET_KEYS = {"shape_key", "bone", "property", "rotation", "location", "full", "rest", "gain", "offset", "clamp"}


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

    def x(self, values: np.ndarray) -> np.ndarray:
        """clamp(gain * values + offset) (the offset is skipped when 0, so ARKit keys stay bit-identical)."""
        v = values * self.gain
        if self.offset:
            v = v + self.offset
        return np.clip(v, self.lo, self.hi)

    def label(self) -> str:
        if self.kind == "shape_key":
            return f"shape key {self.name}"
        if self.kind == "bone":
            return f"bone {self.bone} {self.transform} {'XYZ'[self.axis]}"
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
            if t.kind == "shape_key":
                d["shape_key"] = t.name
            elif t.kind == "bone":
                d.update({"bone": t.bone, t.transform: "XYZ"[t.axis], "full": t.full})
                if t.rest:
                    d["rest"] = t.rest
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
    kinds = [k for k in ("shape_key", "property") if k in d] + (["bone"] if "bone" in d and "property" not in d else [])
    if len(kinds) != 1:
        raise PresetError(f"{where}: needs exactly one of shape_key, bone (with rotation or location) or property")
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
    if kind == "shape_key":
        for key in ("rotation", "location", "full", "rest"):
            if key in d:
                raise PresetError(f"{where}.{key}: a shape-key target takes only gain, offset and clamp")
        return Target("shape_key", _name(d["shape_key"], f"{where}.shape_key"), gain=gain, offset=offset, lo=lo, hi=hi)
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
    return Target("bone", "", _name(d["bone"], f"{where}.bone"), modes[0], AXES[axis], full, rest, gain, offset, lo, hi)


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
    if not isinstance(chans, dict) or not chans:
        raise PresetError("channels: must map at least one readout channel to a list of targets")
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
    for ch, t in p.targets():
        if t.kind == "shape_key":
            continue
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

    from .protocol import JSONLimitError, loads_limited

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
def with_name_map(preset: Preset, text: str) -> Preset:
    """``preset`` with its shape-key targets replaced by a name-map text
    (``channel=Key1,Key2*gain; ...``, semantic.parse_name_map): the ARKit preset's editable form."""
    try:
        mapping = semantic.parse_name_map(text)
    except ValueError as exc:
        raise PresetError(f"rig preset {preset.name}: name map: {exc}") from None
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
        """``"Rigify face: 14 of 14 controls found"``."""
        bones = bool(self.preset.detect_bones) or any(t.kind == "bone" for _c, t in self.preset.targets())
        keys = bool(self.preset.detect_shape_keys) or any(t.kind == "shape_key" for _c, t in self.preset.targets())
        what = "controls" if bones and not keys else "shape keys" if keys and not bones else "targets"
        return f"{self.preset.name}: {len(self.found)} of {self.total} {what} found"


def detect_names(preset: Preset) -> tuple[list[str], list[str]]:
    """The bone and shape-key names that identify the preset's rig: its ``detect`` lists, else every
    bone and shape key its targets name (property targets count through their bone)."""
    bones = list(preset.detect_bones) or list(dict.fromkeys(t.bone for _c, t in preset.targets() if t.bone))
    keys = list(preset.detect_shape_keys) or list(dict.fromkeys(t.name for _c, t in preset.targets()
                                                                if t.kind == "shape_key"))
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
    bones: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)      # (bone, rotation|location) -> (N, 3)
    bone_axes: dict[tuple[str, str], set[int]] = field(default_factory=dict)    # which axes a channel drives
    properties: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)  # (bone or "", name) -> (N,)


def evaluate(preset: Preset, channels: Mapping[str, np.ndarray]) -> Plan:
    """Turn readout channels ((N,) arrays, semantic.readout) into the values to key. Channels the
    readout lacks (e.g. gaze when it was not projected) drive nothing."""
    plan = Plan()
    for ch, targets in preset.channels.items():
        if ch not in channels:
            continue
        vals = np.asarray(channels[ch], np.float64)
        for t in targets:
            x = t.x(vals)
            if t.kind == "shape_key":
                plan.shape_keys[t.name] = np.maximum(plan.shape_keys[t.name], x) if t.name in plan.shape_keys else x
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
ROW_KINDS = ("shape_key", "bone_rotation", "bone_location", "property")


def rows_from_preset(preset: Preset) -> list[dict[str, Any]]:
    """One flat row per target (what the panel's mapping table shows and edits)."""
    rows = []
    for ch, t in preset.targets():
        kind = t.kind if t.kind != "bone" else f"bone_{t.transform}"
        rows.append({"channel": ch, "kind": kind, "target": t.name if t.kind != "bone" else t.bone,
                     "bone": t.bone if t.kind == "property" else "", "axis": "XYZ"[t.axis], "full": t.full,
                     "rest": t.rest, "gain": t.gain, "offset": t.offset, "lo": t.lo, "hi": t.hi})
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
        if kind == "shape_key":
            d["shape_key"] = r.get("target", "")
        elif kind == "property":
            d.update(property=r.get("target", ""), full=r.get("full", 1.0), rest=r.get("rest", 0.0))
            if r.get("bone"):
                d["bone"] = r["bone"]
        else:
            d.update({"bone": r.get("target", ""), kind.split("_")[1]: r.get("axis", "X"), "full": r.get("full", 1.0),
                      "rest": r.get("rest", 0.0)})
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
