"""Typed jobs: one frozen job type per engine command, the wire format of every entry point.

Why one module: the CLI, ``serve`` requests, ``batch`` job files and the Blender add-on must
describe a job the same way and check its values once. A job holds only plain values; loading
networks, reading files and choosing kernels happen later, in ``engine/pipeline/<command>.py``.
``engine/preflight.py`` keeps only the file-system and package checks.

The wire form (:meth:`Job.to_dict` / :meth:`Job.from_dict`) is ONE flat JSON object whose keys
are the command's long option names with ``_`` for ``-`` (``cfg_scale`` = ``--cfg-scale``, ``pe``
= ``--pe``; a switch pair is its positive name: ``"smooth": false`` = ``--no-smooth``,
``"relative": false`` = ``--absolute``)::

    {"schema": "joyvasa.job", "version": 1, "command": "motion",
     "audio": "line.wav", "out": "take.npz", "seed": 3, "smooth": false, "dtype": "bf16"}

``schema``/``version``/``command`` are optional when the command is known from elsewhere (a
``serve`` request's ``command``, a batch job's ``command``); a missing key or ``null`` means the
default; an unknown key, a wrong type or a value out of bounds is one ``bad_request`` naming the
option. Inside, a job groups its fields into sub-configs (``MotionConfig`` = how to sample,
``RenderConfig`` = how to render, ``RuntimeConfig`` = device + the ONE precision decision);
``WIRE`` names where a flat key lives when it is not the field's own name.

Torch-free and numpy-free on purpose, at the bottom of the engine: it imports only
:mod:`engine.errors` and :mod:`engine.contract.protocol`'s constants.

Adding an option: a field (with a one-line comment) on the job or sub-config it belongs to, its
bound in ``__post_init__`` (use :func:`check_number`), the argparse option with the same name
in ``engine/commands/<command>.py``, and the step of ``engine/pipeline/<command>.py`` that reads it.
"""
from __future__ import annotations

import dataclasses
import json
import math
import typing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, Union

from engine.errors import BadRequest
from engine.contract.protocol import CFG_MODES, DEFAULT_SAMPLER, PE_VARIANTS, REGIONS, SAMPLERS, canonical_dtype
from engine.contract.schema import JOB_SCHEMA, JOB_VERSION
from engine.contract.semantic import REFERENCE_MODES  # noqa: F401  (livelinkface-csv: the readout's neutral)

if TYPE_CHECKING:
    import argparse


# -- bounds: the one set every entry point uses ---------------------------------------------------
FPS_MIN, FPS_MAX = 1.0, 120.0
SEED_MIN, SEED_MAX = 0, 2**63 - 1          # stored as int64 in the motion file
STEPS_MAX = 1000                            # no trained schedule is longer; exact N checked on load
CFG_MIN, CFG_MAX = 0.0, 50.0
BATCH_MAX = 4096
STRENGTH_MAX = 10.0
SCALE_MIN, SCALE_MAX = 0.5, 6.0             # framing: crop side / face size (upstream app 2.3)
SHIFT_MIN, SHIFT_MAX = -1.0, 1.0            # framing: --vx/--vy, fractions of the crop side
#: ``engine export`` formats (name -> file suffix); engine/export/__init__.py describes and writes them
EXPORT_SUFFIXES: dict[str, str] = {"livelinkface-csv": ".csv", "lp-pkl": ".pkl", "bvh": ".bvh"}
#: ``--animal-models``: LivePortrait's animal stage-one folders (engine/weights.py ANIMAL_MODEL_DIRS)
ANIMAL_MODELS = ("auto", "v1", "v1.1")
#: ``--codec``: the H.264 encoder (engine/render/writers.py pick_video_codec; auto = NVENC when it works)
CODECS = ("auto", "libx264", "h264_nvenc")


def check_number(option: str, value: float | int | None, lo: float, hi: float) -> None:
    """``value`` finite and within [lo, hi] (None = default, always fine)."""
    if value is None:
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise BadRequest(f"{option} must be a finite number between {lo:g} and {hi:g}, got {value}")
    if not (lo <= value <= hi):
        raise BadRequest(f"{option} must be between {lo:g} and {hi:g}, got {value:g}"
                         if isinstance(value, float) else f"{option} must be between {lo} and {hi}, got {value}")


def check_sampling(seed: int | None, steps: int | None, cfg_scale: float | None) -> None:
    check_number("--seed", seed, SEED_MIN, SEED_MAX)
    check_number("--steps", steps, 1, STEPS_MAX)
    check_number("--cfg-scale", cfg_scale, CFG_MIN, CFG_MAX)


def check_choice(option: str, value: str, choices: typing.Iterable[str]) -> None:
    choices = tuple(choices)
    if value not in choices:
        raise BadRequest(f"{option} must be one of {', '.join(choices)}, got {value!r}")


def check_suffix(option: str, path: str | None, suffixes: tuple[str, ...]) -> None:
    """An output path's suffix (None = not given)."""
    if path is not None and not str(path).lower().endswith(suffixes):
        raise BadRequest(f"{option} must end in {' or '.join(suffixes)}, got {path}")


#: a parsed ``--crop``: "auto", "none", an (X, Y, W, H) box or ("points", (LX, LY, RX, RY, MX, MY))
CropSpec = Union[str, tuple[float, float, float, float], tuple[str, tuple[float, ...]]]


def parse_crop(value: str | None) -> CropSpec:
    """``auto`` | ``none`` | ``X,Y,W,H`` | ``points:LX,LY,RX,RY,MX,MY`` -> ``"auto"``, ``"none"``,
    a box tuple or ``("points", (6 floats))`` (what engine.framing's FramingOptions takes)."""
    v = (value or "auto").strip().lower()
    if v in ("auto", "none"):
        return v
    if v.startswith("points:"):
        n = _crop_numbers(v[len("points:"):], 6, value)
        eyes_apart = math.hypot(n[0] - n[2], n[1] - n[3])
        mouth_away = math.hypot((n[0] + n[2]) / 2 - n[4], (n[1] + n[3]) / 2 - n[5])
        if eyes_apart < 2 or mouth_away < 2:
            raise BadRequest(f"--crop points need two distinct eyes and a mouth away from them, got {value!r}")
        return ("points", tuple(n))
    x, y, w, h = _crop_numbers(v, 4, value)
    if w <= 0 or h <= 0:
        raise BadRequest(f"--crop box needs positive width and height, got {value!r}")
    return (x, y, w, h)


def _crop_numbers(text: str, n: int, original: str | None) -> list[float]:
    try:
        nums = [float(p) for p in text.replace(" ", "").split(",")]
    except ValueError:
        nums = []
    if len(nums) != n or not all(math.isfinite(x) for x in nums):
        raise BadRequest(f"--crop must be auto, none, X,Y,W,H or points:LX,LY,RX,RY,MX,MY, got {original!r}")
    return nums


def check_framing(scale: float, vx: float, vy: float, face_index: int | None) -> None:
    """The framing bounds (``crop`` and ``animate``)."""
    check_number("--scale", scale, SCALE_MIN, SCALE_MAX)
    check_number("--vx", vx, SHIFT_MIN, SHIFT_MAX)
    check_number("--vy", vy, SHIFT_MIN, SHIFT_MAX)
    if face_index is not None and face_index < 0:
        raise BadRequest(f"--face-index must be >= 0, got {face_index}")


# -- the value types ----------------------------------------------------------------------------------
S = TypeVar("S", bound="Spec")


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def _check_type(name: str, value: Any, hint: Any) -> Any:
    """``value`` as the field's type (int -> float where a float is wanted), or BadRequest."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    kind = args[0] if args else hint
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind is bool and isinstance(value, bool):
        return value
    if kind is str and isinstance(value, str):
        return check_text(name, value)
    want = {float: "a number", int: "a whole number", bool: "true or false", str: "a string"}.get(kind, str(kind))
    raise BadRequest(f"{_option(name)} must be {want}, got {value!r}")


#: longest path (or other text) a job field may hold: Linux's PATH_MAX; longer is no real path
MAX_TEXT_CHARS = 4096


def check_text(name: str, value: str) -> str:
    """A job's text field (mostly paths): no NUL byte (no file system takes one), at most
    MAX_TEXT_CHARS; refused at the job boundary, naming the field, before any file is touched."""
    if "\x00" in value:
        raise BadRequest(f"{_option(name)} holds a NUL byte (\\0), which no file name can hold")
    if len(value) > MAX_TEXT_CHARS:
        raise BadRequest(f"{_option(name)} is {len(value)} characters long; at most {MAX_TEXT_CHARS} "
                         "(the longest path a file system takes)")
    return value


class Spec:
    """Frozen dataclasses of plain values: field types checked, ``to_dict``/``from_dict`` nested."""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            hint = hints[f.name]
            if isinstance(value, Spec) or value is None and type(None) in typing.get_args(hint):
                continue
            if not (isinstance(hint, type) and issubclass(hint, Spec)):
                object.__setattr__(self, f.name, _check_type(f.name, value, hint))
        self.validate()

    def validate(self) -> None:
        """Bounds and choices of this spec's own fields (subclasses)."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, allow_nan=False)

    @classmethod
    def from_dict(cls: type[S], data: dict[str, Any]) -> S:
        if not isinstance(data, dict):
            raise BadRequest(f"{cls.__name__}: expected an object, got {type(data).__name__}")
        hints = typing.get_type_hints(cls)
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - names)
        if unknown:
            raise BadRequest(f"{cls.__name__}: unknown field(s) {', '.join(unknown)}")
        values = {}
        for name, value in data.items():
            kind = hints[name]
            if isinstance(kind, type) and issubclass(kind, Spec) and isinstance(value, dict):
                value = kind.from_dict(value)
            if value is not None:
                values[name] = value
        return cls(**values)

    @classmethod
    def from_json(cls: type[S], text: str) -> S:
        return cls.from_dict(json.loads(text))


@dataclass(frozen=True)
class RuntimeConfig(Spec):
    """Where and in which precision networks run: the ONE precision decision of a job.

    ``dtype`` is canonical (``bf16`` -> ``bfloat16``); engine.device's ``select_precision`` /
    ``select_motion_precision`` resolve ``auto`` per device and network, the same on every path.
    """

    device: str = "auto"     # auto | cpu | cuda | cuda:N | mps
    dtype: str = "auto"      # auto | float32 | bfloat16 | float16 (any spelling canonical_dtype takes)

    def validate(self) -> None:
        try:
            object.__setattr__(self, "dtype", canonical_dtype(self.dtype))
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        object.__setattr__(self, "device", (self.device or "auto").strip().lower())


@dataclass(frozen=True)
class MotionConfig(Spec):
    """How to sample motion. ``steps=None``: the sampler's default (ancestral: all N = exact)."""

    seed: int = 0                    # seed of the torch generator
    sampler: str = DEFAULT_SAMPLER   # ancestral (upstream's exact DDPM) | ddim | dpmpp_2m
    steps: int | None = None         # denoising steps per window (None: the sampler's default)
    cfg_scale: float = 2.0           # classifier-free guidance scale
    cfg_mode: str = "incremental"    # how guidance combines the conditions (incremental = upstream)
    smooth: bool = True              # EMA-smooth the head pose as upstream
    pe_variant: str = "head"         # positional encoding: head (upstream today) | legacy
    fps: float | None = None         # resample the motion to this rate (None: the model's 25 fps)

    def validate(self) -> None:
        check_choice("--sampler", self.sampler, SAMPLERS)
        check_choice("--cfg-mode", self.cfg_mode, CFG_MODES)
        check_choice("--pe", self.pe_variant, PE_VARIANTS)
        check_sampling(self.seed, self.steps, self.cfg_scale)
        check_number("--fps", self.fps, FPS_MIN, FPS_MAX)


@dataclass(frozen=True)
class RenderConfig(Spec):
    """How the motion drives the portrait and how frames are framed and written."""

    region: str = "all"              # shorthand for controls: which part of the motion drives the portrait
    pose_strength: float = 1.0       # shorthand for controls: head-motion gain
    exp_strength: float = 1.0        # shorthand for controls: expression gain
    relative: bool = True            # relative motion + expression-friendly multiplier (gradio)
    stitching: bool = True           # the stitching MLP keeps the shoulders still
    driving_multiplier: float = 1.0  # scales the motion (gradio 1.0, upstream CLI 1.1)
    normalize_lip: bool = True       # upstream's lip normalisation (needs the lip-open ratio)
    animal: bool = False             # the animal pipeline (liveportrait_animals/ weights if present)
    animal_models: str = "auto"      # which animal models: auto (v1.1 if present, else v1) | v1 | v1.1
    upstream_cli: bool = False       # upstream inference.py's defaults (implies crop none)
    crop: str = "auto"               # auto | none | "X,Y,W,H" | "points:LX,LY,RX,RY,MX,MY"
    scale: float = 2.3               # framing: crop side / face size
    vx: float = 0.0                  # framing: sideways shift, fraction of the crop side
    vy: float = -0.125               # framing: shift along the face's down axis
    face_index: int | None = None    # with several faces: 0 = the largest (None: the largest)
    pasteback: bool = True           # blend the animated face back into the full portrait
    fps: float | None = None         # output frame rate (None: the motion's)
    upstream_timing: bool = False    # keep upstream's 2 lead-in frames (video lags audio by 80 ms)
    batch: int | None = None         # frames per W+G batch (None: engine.device.auto_batch_size)
    max_frames: int | None = None    # benchmarks/tests: cap rendered frames
    codec: str = "auto"              # H.264 encoder: auto | libx264 | h264_nvenc
    sequential: bool = False         # reference render path: CPU paste-back, no writer thread (tests, bench)

    def validate(self) -> None:
        check_choice("--region", self.region, REGIONS)
        check_choice("--codec", self.codec, CODECS)
        check_choice("--animal-models", self.animal_models, ANIMAL_MODELS)
        check_number("--fps", self.fps, FPS_MIN, FPS_MAX)
        check_number("--batch", self.batch, 1, BATCH_MAX)
        for name in ("pose_strength", "exp_strength", "driving_multiplier"):
            check_number(_option(name), getattr(self, name), 0.0, STRENGTH_MAX)
        if self.max_frames is not None and self.max_frames < 1:
            raise BadRequest("--max-frames must be >= 1")
        parse_crop(self.crop)
        check_framing(self.scale, self.vx, self.vy, self.face_index)

    @property
    def crop_mode(self) -> str:
        """``--upstream-cli`` implies ``--crop none`` unless a crop was named explicitly."""
        return "none" if self.upstream_cli and self.crop == "auto" else self.crop


# -- jobs -----------------------------------------------------------------------------------------------
J = TypeVar("J", bound="Job")


class Job(Spec):
    """A command's job: :meth:`to_dict`/:meth:`from_dict` are the flat, versioned wire form."""

    command: ClassVar[str] = ""
    #: "module:function(job, ctx) -> Done" that runs this job (engine/pipeline/__init__.py dispatches);
    #: None: the command runs only as its own one-shot command, never through run --job/serve/batch
    pipeline: ClassVar[str | None] = None
    #: flat wire key -> attribute path, where they differ ("motion" -> "motion_file", "fps" -> "motion.fps")
    WIRE: ClassVar[dict[str, str]] = {}
    #: attribute paths that are not on the wire (set only by code, e.g. animate's motion.fps)
    INTERNAL: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def wire_keys(cls) -> dict[str, str]:
        """Flat key -> attribute path ("seed" -> "motion.seed") for every wire field."""
        hints = typing.get_type_hints(cls)
        by_path: dict[str, str] = {}
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            kind = hints[f.name]
            if isinstance(kind, type) and issubclass(kind, Spec):
                by_path.update({f"{f.name}.{g.name}": g.name for g in dataclasses.fields(kind)})  # type: ignore[arg-type]
            else:
                by_path[f.name] = f.name
        rename = {path: key for key, path in cls.WIRE.items()}
        keys = {rename.get(path, name): path for path, name in by_path.items() if path not in cls.INTERNAL}
        if len(keys) != len(by_path) - len(cls.INTERNAL):
            raise TypeError(f"{cls.__name__}: two fields share a wire key; name one in WIRE or INTERNAL")
        return keys

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"schema": JOB_SCHEMA, "version": JOB_VERSION, "command": self.command}
        for key, path in self.wire_keys().items():
            obj: Any = self
            for part in path.split("."):
                obj = getattr(obj, part)
            out[key] = list(obj) if isinstance(obj, tuple) else obj
        return out

    @classmethod
    def from_dict(cls: type[J], data: dict[str, Any]) -> J:
        """The flat wire form (or a CLI namespace's ``vars``) -> the job; BadRequest names the key."""
        if not isinstance(data, dict):
            raise BadRequest(f"a {cls.command} job must be a JSON object, got {type(data).__name__}")
        data = dict(data)
        schema, version, command = data.pop("schema", JOB_SCHEMA), data.pop("version", JOB_VERSION), \
            data.pop("command", cls.command)
        if schema != JOB_SCHEMA:
            raise BadRequest(f"not a job: schema {schema!r}, expected {JOB_SCHEMA!r}")
        if isinstance(version, bool) or version != JOB_VERSION:
            raise BadRequest(f"job version {version!r} is not understood by this engine (it reads version "
                             f"{JOB_VERSION}); update the engine or the add-on so both are the same release")
        if command != cls.command:
            raise BadRequest(f"a {cls.command} job cannot run command {command!r}")
        keys = cls.wire_keys()
        unknown = sorted(set(data) - set(keys))
        if unknown:
            raise BadRequest(f"unknown option(s) for {cls.command}: {', '.join(unknown)} "
                             f"(known: {', '.join(sorted(keys))})")
        hints = typing.get_type_hints(cls)
        top: dict[str, Any] = {}
        nested: dict[str, dict[str, Any]] = {}
        for key, value in data.items():
            if value is None:                  # null = the default
                continue
            path = keys[key]
            if isinstance(value, list):        # JSON has no tuples
                value = tuple(value)
            if "." in path:
                sub, name = path.split(".")
                hint = typing.get_type_hints(hints[sub])[name]
                nested.setdefault(sub, {})[name] = _check_type(key, value, hint)
            else:                              # type errors name the wire key (--motion, not motion_file)
                top[path] = _check_type(key, value, hints[path])
        for sub, values in nested.items():
            top[sub] = hints[sub](**values)
        missing = [key for key, path in keys.items() if path in cls.required() and path not in top]
        if missing:
            raise BadRequest(f"{cls.command} needs {', '.join(_option(k) for k in missing)}")
        return cls(**top)

    @classmethod
    def from_args(cls: type[J], args: argparse.Namespace) -> J:
        """Parsed CLI options (an ``argparse.Namespace``; dests = wire keys) -> the job. Process
        options (``progress``, ``json``) are not job fields and are left out."""
        keys = cls.wire_keys()
        return cls.from_dict({k: v for k, v in vars(args).items() if k in keys})

    @classmethod
    def required(cls) -> tuple[str, ...]:
        """Fields without a default (``audio`` and ``out`` of a motion job, ...)."""
        return tuple(f.name for f in dataclasses.fields(cls)  # type: ignore[arg-type]
                     if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)


@dataclass(frozen=True)
class MotionJob(Job):
    """``engine motion``: speech audio -> motion .npz."""

    command: ClassVar[str] = "motion"
    pipeline: ClassVar[str | None] = "engine.pipeline.motion:run_motion"
    WIRE: ClassVar[dict[str, str]] = {"fps": "motion.fps", "pe": "motion.pe_variant"}

    audio: str                       # speech audio (wav, flac, ogg, mp3, ...)
    out: str                         # the motion .npz to write
    weights: str | None = None       # weights folder (None: $JOYVASA_WEIGHTS)
    controls: str | None = None      # art-direction controls .json (engine/motion/controls.py)
    motion: MotionConfig = field(default_factory=MotionConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)

    def validate(self) -> None:
        check_suffix("--out", self.out, (".npz",))


@dataclass(frozen=True)
class AnimateJob(Job):
    """``engine animate``: portrait + speech (or a motion file) -> mp4 and/or PNG sequence."""

    command: ClassVar[str] = "animate"
    pipeline: ClassVar[str | None] = "engine.pipeline.animate:run_animate"
    WIRE: ClassVar[dict[str, str]] = {"motion": "motion_file", "fps": "render.fps", "pe": "motion.pe_variant"}
    INTERNAL: ClassVar[tuple[str, ...]] = ("motion.fps",)   # always None (refused otherwise)

    image: str                       # portrait image (PNG/JPEG)
    audio: str | None = None         # speech audio; required unless motion is given and no mp4
    out: str | None = None           # the .mp4 to write (optional with frames_dir)
    frames_dir: str | None = None    # also/instead write frame_00000.png ... here
    overwrite: bool = False          # frames_dir may hold other files (only our frames are touched)
    motion_file: str | None = None   # use this motion .npz instead of generating one
    save_motion: str | None = None   # also save the generated motion .npz here
    save_driving: str | None = None  # also save the driving keypoints (.npy, N x 21 x 3)
    weights: str | None = None       # weights folder (None: $JOYVASA_WEIGHTS)
    controls: str | None = None      # art-direction controls .json; region/strengths are shorthands for it
    preview: bool = False            # <= 24 frames (every 8th or sparser) over the full soundtrack + a contact sheet
    render: RenderConfig = field(default_factory=RenderConfig)
    motion: MotionConfig = field(default_factory=MotionConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)

    def validate(self) -> None:
        check_suffix("--out", self.out, (".mp4", ".mov", ".mkv"))
        check_suffix("--save-motion", self.save_motion, (".npz",))
        check_suffix("--save-driving", self.save_driving, (".npy",))
        if not self.out and not self.frames_dir:
            raise BadRequest("nothing to write: pass --out OUT.mp4 and/or --frames-dir DIR")
        if not self.audio and not self.motion_file:
            raise BadRequest("pass --audio (speech to animate) or --motion (a motion .npz)")
        if not self.audio and self.out:
            raise BadRequest("an mp4 needs its soundtrack: pass --audio (or write only --frames-dir)")
        if self.motion.fps is not None:
            raise BadRequest("animate renders at --fps; the generated motion keeps the model's rate (motion fps None)")


@dataclass(frozen=True)
class CropJob(Job):
    """``engine crop``: only the face framing (no weights needed)."""

    command: ClassVar[str] = "crop"
    pipeline: ClassVar[str | None] = "engine.pipeline.crop:run_crop"

    image: str                       # portrait image (PNG/JPEG/...)
    out: str | None = None           # write the 512x512 crop here (PNG/JPEG)
    weights: str | None = None       # optional: upstream's detector files there are used when present
    animal: bool = False             # frame an animal face (never fails: centred fallback)
    crop: str = "auto"               # auto | none | "X,Y,W,H" | "points:LX,LY,RX,RY,MX,MY"
    scale: float = 2.3               # crop side / face size
    vx: float = 0.0                  # sideways shift, fraction of the crop side
    vy: float = -0.125               # shift along the face's down axis
    face_index: int | None = None    # with several faces: 0 = the largest

    def validate(self) -> None:
        check_suffix("--out", self.out, (".png", ".jpg", ".jpeg"))
        parse_crop(self.crop)
        check_framing(self.scale, self.vx, self.vy, self.face_index)


@dataclass(frozen=True)
class EditJob(Job):
    """``engine edit``: re-apply art-direction controls to a motion file (no sampling, no torch)."""

    command: ClassVar[str] = "edit"
    pipeline: ClassVar[str | None] = "engine.pipeline.edit:run_edit"

    motion: str                      # motion .npz written by `engine motion` (edited or not)
    controls: str                    # controls .json
    out: str                         # output motion .npz (may be the input itself)
    audio: str | None = None         # the motion's audio: only for silence handling without vad_db

    def validate(self) -> None:
        check_suffix("--out", self.out, (".npz",))


@dataclass(frozen=True)
class ExportJob(Job):
    """``engine export``: motion .npz -> Live Link Face CSV, LivePortrait template .pkl, BVH."""

    command: ClassVar[str] = "export"
    pipeline: ClassVar[str | None] = "engine.pipeline.export:run_export"
    WIRE: ClassVar[dict[str, str]] = {"reference": "reference_mode"}

    motion: str                      # motion .npz
    format: str                      # livelinkface-csv | lp-pkl | bvh
    out: str                         # output file with the format's suffix
    fps: float | None = None         # frame rate of the export (None: the motion's)
    reference_mode: str = "auto"     # livelinkface-csv: the neutral expression of the ARKit readout
    upstream_timing: bool = False    # keep every generated frame (frame 0 at -0.08 s)

    def validate(self) -> None:
        check_choice("--format", self.format, EXPORT_SUFFIXES)
        check_choice("--reference", self.reference_mode, REFERENCE_MODES)
        check_suffix(f"--out for {self.format}", self.out, (EXPORT_SUFFIXES[self.format],))
        check_number("--fps", self.fps, FPS_MIN, FPS_MAX)


@dataclass(frozen=True)
class DoctorJob(Job):
    """``engine doctor``: versions, device and the state of every weight file."""

    command: ClassVar[str] = "doctor"
    pipeline: ClassVar[str | None] = "engine.pipeline.doctor:run_doctor"

    weights: str | None = None       # weights folder (None: $JOYVASA_WEIGHTS)
    no_load: bool = False            # only check that files exist (fast)


@dataclass(frozen=True)
class FetchJob(Job):
    """``engine fetch``: download the official weights, check them (one-shot only: not a warm request)."""

    command: ClassVar[str] = "fetch"
    #: no pipeline: a plan, a free-space check and a resumable download belong to a process of their own

    out: str                         # weights folder to fill (created if needed)
    animals: bool = False            # also LivePortrait's animal models
    xpose: bool = False              # also the X-Pose animal-face keypoint model (non-commercial licence)
    detector: bool = False           # also the InsightFace detector files (non-commercial licence)
    plan_only: bool = False          # say what would be downloaded, then stop
    verify_only: bool = False        # download nothing; only load-check what the folder holds

    def validate(self) -> None:
        if not self.out.strip():   # '' would be the current folder: never a guess for a weights folder
            raise BadRequest("--out is empty; give the weights folder to fill (it is created if needed)")


#: ``live``: where the audio comes from, how a file is paced, the window schedule (engine/live/)
LIVE_SOURCES = ("file", "pcm", "mic")
LIVE_PACES = ("realtime", "fast")
LIVE_SCHEDULES = ("live", "offline")
LIVE_WINDOW = 100                           # frames of one motion window (hop + lookahead <= it)


def parse_host_port(option: str, value: str | None) -> tuple[str, int] | None:
    """``HOST:PORT`` (or ``:PORT`` / ``PORT`` = 127.0.0.1) -> (host, port); None stays None."""
    if value is None:
        return None
    host, sep, port = str(value).strip().rpartition(":")
    if not sep:
        host, port = "", str(value).strip()
    try:
        number = int(port)
    except ValueError:
        number = -1
    if not (1 <= number <= 65535) or any(c.isspace() for c in host):
        raise BadRequest(f"{option} must be HOST:PORT with a port 1-65535 (e.g. 127.0.0.1:11111), got {value!r}")
    return (host.strip("[]") or "127.0.0.1", number)


@dataclass(frozen=True)
class LiveJob(Job):
    """``engine live`` / the worker's ``live_start``: a streamed take (docs/live.md)."""

    command: ClassVar[str] = "live"
    pipeline: ClassVar[str | None] = "engine.pipeline.live:run_live"   # serve runs it from live_start
    WIRE: ClassVar[dict[str, str]] = {"pe": "motion.pe_variant"}
    INTERNAL: ClassVar[tuple[str, ...]] = ("motion.fps",)   # live frames are the model's 25 fps

    out: str                         # the take's motion .npz (written at stop, atomically)
    source: str = "file"             # file (audio played as a live source) | pcm (push_pcm) | mic
    audio: str | None = None         # source file: the audio file to stream
    mic: str | None = None           # source mic: input device name or index (None: the default)
    pace: str = "realtime"           # source file: realtime (1x, as a microphone) | fast (as TTS)
    wav: str | None = None           # the captured audio (None: out with .wav)
    hop: int | None = None           # H, frames committed per window (None: the stream's default)
    lookahead: int | None = None     # F, frames of look-ahead (None: the stream's default)
    schedule: str = "live"           # live | offline (upstream's exact schedule: hop 100, lookahead 0)
    weights: str | None = None       # weights folder (None: $JOYVASA_WEIGHTS)
    controls: str | None = None      # art-direction controls .json, applied per frame
    livelink: str | None = None      # Live Link Face UDP output HOST:PORT (None: off)
    vmc: str | None = None           # VMC OSC output HOST:PORT (None: off)
    motion: MotionConfig = field(default_factory=MotionConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "LiveJob":
        if isinstance(data, dict) and isinstance(data.get("mic"), int) and not isinstance(data["mic"], bool):
            data = {**data, "mic": str(data["mic"])}   # a device index is as good as its name
        return super().from_dict(data)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "LiveJob":
        """The CLI has no --source: ``--mic [DEVICE]`` is source mic (bare = the default device),
        ``--audio`` source file."""
        values = {k: v for k, v in vars(args).items() if k in cls.wire_keys()}
        mic = values.get("mic")
        values["source"] = "mic" if mic is not None else "file"
        values["mic"] = None if mic in (None, "default") else mic
        return cls.from_dict(values)

    def validate(self) -> None:
        check_choice("--source", self.source, LIVE_SOURCES)
        check_choice("--pace", self.pace, LIVE_PACES)
        check_choice("--schedule", self.schedule, LIVE_SCHEDULES)
        check_suffix("--out", self.out, (".npz",))
        check_suffix("--wav", self.wav, (".wav",))
        check_number("--hop", self.hop, 1, LIVE_WINDOW)
        check_number("--lookahead", self.lookahead, 0, LIVE_WINDOW - 1)
        if (self.hop or 0) + (self.lookahead or 0) > LIVE_WINDOW:
            raise BadRequest(f"--hop + --lookahead must be at most {LIVE_WINDOW} (one window), "
                             f"got {self.hop} + {self.lookahead}")
        if self.schedule == "offline" and (self.hop not in (None, LIVE_WINDOW) or self.lookahead not in (None, 0)):
            raise BadRequest(f"--schedule offline is upstream's exact schedule: --hop {LIVE_WINDOW} --lookahead 0")
        if self.source == "file" and not self.audio:
            raise BadRequest("source file needs --audio FILE (or use --mic, or push_pcm with source pcm)")
        if self.source != "file" and self.audio:
            raise BadRequest(f"--audio is only for source file, not {self.source}")
        if self.source != "mic" and self.mic is not None:
            raise BadRequest("--mic DEVICE is only for source mic")
        parse_host_port("--livelink", self.livelink)
        parse_host_port("--vmc", self.vmc)
        if self.motion.fps is not None:
            raise BadRequest("live frames are the model's 25 fps (no --fps)")

    @property
    def wav_path(self) -> str:
        """Where the captured audio goes: ``wav`` or ``out`` with ``.wav``."""
        if self.wav:
            return self.wav
        stem = self.out[:-4] if self.out.lower().endswith(".npz") else self.out
        return stem + ".wav"


#: command -> its job type: THE registry every entry point builds jobs with and dispatches by (``pipeline``)
JOB_TYPES: dict[str, type[Job]] = {t.command: t for t in (MotionJob, AnimateJob, CropJob, EditJob, ExportJob,
                                                           DoctorJob, FetchJob, LiveJob)}


def job_from_dict(data: dict[str, Any], command: str | None = None) -> Job:
    """A wire dict -> its typed job; ``command`` (a request's or batch job's) or ``data["command"]``."""
    if not isinstance(data, dict):
        raise BadRequest(f"a job must be a JSON object, got {type(data).__name__}")
    name = command or data.get("command")
    if data.get("command", name) != name:
        raise BadRequest(f"job says command {data.get('command')!r} but runs as {name!r}")
    job_type = JOB_TYPES.get(str(name))
    if job_type is None:
        raise BadRequest(f"unknown command {name!r}: jobs are {', '.join(JOB_TYPES)}")
    return job_type.from_dict(data)
