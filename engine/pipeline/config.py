"""Frozen, JSON-serialisable job configs: what to compute, separate from how it is invoked.

Why: the CLI, ``bench``, the ``serve`` worker and batch files must describe a job the same way
and validate it once. A config holds only plain values (str, int, float, bool, None, nested
configs), so ``Config.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg``; loading
networks, reading files and choosing kernels happen later, in the pipeline functions.

Torch-free on purpose: building and validating a job must not pay for importing torch.

Extending: add a field with a default to the config it belongs to (render look → RenderConfig,
sampling → MotionConfig) or a new frozen config as a field of the job; validate it in
``__post_init__``; read it in the numbered step of :mod:`engine.pipeline.animate` /
:mod:`engine.pipeline.motion` that needs it.
"""
from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, TypeVar

from engine import preflight
from engine.errors import BadRequest
from engine.protocol import (CFG_MODES, DEFAULT_SAMPLER, PE_VARIANTS, REGIONS, SAMPLERS, canonical_dtype)

C = TypeVar("C", bound="ConfigBase")


class ConfigBase:
    """``to_dict``/``from_dict``/``to_json``/``from_json`` for frozen dataclasses of plain values."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, allow_nan=False)

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any]) -> C:
        if not isinstance(data, dict):
            raise BadRequest(f"{cls.__name__}: expected an object, got {type(data).__name__}")
        hints = typing.get_type_hints(cls)
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - names)
        if unknown:
            raise BadRequest(f"{cls.__name__}: unknown field(s) {', '.join(unknown)}")
        values: dict[str, Any] = {}
        for name, value in data.items():
            kind = hints.get(name)
            if isinstance(kind, type) and issubclass(kind, ConfigBase) and isinstance(value, dict):
                value = kind.from_dict(value)
            elif isinstance(value, list):
                value = tuple(value)  # JSON has no tuples (crop boxes, points)
            values[name] = value
        return cls(**values)

    @classmethod
    def from_json(cls: type[C], text: str) -> C:
        return cls.from_dict(json.loads(text))


@dataclass(frozen=True)
class RuntimeConfig(ConfigBase):
    """Where and in which precision networks run: the ONE precision decision of a job.

    ``dtype`` is canonical (``bf16`` → ``bfloat16``); :func:`engine.device.select_precision`
    resolves ``auto`` per device and the pipeline loads stage one in that precision.
    """

    device: str = "auto"
    dtype: str = "auto"

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "dtype", canonical_dtype(self.dtype))
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        object.__setattr__(self, "device", (self.device or "auto").strip().lower())


@dataclass(frozen=True)
class MotionConfig(ConfigBase):
    """How to sample motion. ``steps=None``: the sampler's default (ancestral: all N = exact)."""

    seed: int = 0
    sampler: str = DEFAULT_SAMPLER
    steps: int | None = None
    cfg_scale: float = 2.0
    cfg_mode: str = "incremental"
    smooth: bool = True
    pe_variant: str = "head"
    fps: float | None = None   # None = the model's own fps (25)

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise BadRequest(f"unknown sampler {self.sampler!r}; choose one of {', '.join(SAMPLERS)}")
        if self.cfg_mode not in CFG_MODES:
            raise BadRequest(f"cfg_mode must be one of {', '.join(CFG_MODES)}")
        if self.pe_variant not in PE_VARIANTS:
            raise BadRequest(f"pe_variant must be one of {', '.join(PE_VARIANTS)}")
        if self.steps is not None and not isinstance(self.steps, int):
            raise BadRequest(f"--steps must be a whole number, got {self.steps!r}")
        preflight.check_sampling(self.seed, self.steps, self.cfg_scale)  # the one set of bounds
        preflight.check_number("--fps", self.fps, preflight.FPS_MIN, preflight.FPS_MAX)


@dataclass(frozen=True)
class RenderConfig(ConfigBase):
    """How the motion drives the portrait and how frames are framed and written."""

    region: str = "all"
    pose_strength: float = 1.0
    exp_strength: float = 1.0
    relative: bool = True
    stitching: bool = True
    driving_multiplier: float = 1.0
    normalize_lip: bool = True    # upstream's lip normalisation (needs the face mesh's lip-open ratio)
    animal: bool = False
    animal_models: str = "auto"   # auto (v1.1 if present, else v1) | v1 | v1.1 (LivePortrait's animal folders)
    upstream_cli: bool = False
    crop: str = "auto"            # auto | none | "X,Y,W,H" | "points:LX,LY,RX,RY,MX,MY"
    scale: float = 2.3            # framing (engine/framing): crop side / face size
    vx: float = 0.0
    vy: float = -0.125
    face_index: int | None = None  # None: the largest face
    pasteback: bool = True
    fps: float | None = None       # output frame rate (None = the motion's)
    upstream_timing: bool = False
    batch: int | None = None       # frames per W+G batch (None = engine.device.auto_batch_size)
    max_frames: int | None = None  # benchmarks/tests: cap rendered frames
    codec: str = "auto"            # auto | libx264 | h264_nvenc (engine/render/writers.py pick_video_codec)
    sequential: bool = False       # reference render path: CPU paste-back, no writer thread (tests, bench)

    def __post_init__(self) -> None:
        if self.region not in REGIONS:
            raise BadRequest(f"unknown region {self.region!r}; choose one of {', '.join(REGIONS)}")
        # numeric bounds: engine/preflight.py's, the one set every entry point uses
        preflight.check_number("--fps", self.fps, preflight.FPS_MIN, preflight.FPS_MAX)
        preflight.check_number("--batch", self.batch, 1, preflight.BATCH_MAX)
        for name in ("pose_strength", "exp_strength", "driving_multiplier"):
            preflight.check_number("--" + name.replace("_", "-"), getattr(self, name), 0.0, preflight.STRENGTH_MAX)
        if self.max_frames is not None and (not isinstance(self.max_frames, int) or self.max_frames < 1):
            raise BadRequest("--max-frames must be >= 1")
        from engine.render.writers import CODEC_CHOICES
        if self.codec not in CODEC_CHOICES:
            raise BadRequest(f"unknown --codec {self.codec!r}; choose one of {', '.join(CODEC_CHOICES)}")
        from engine.weights import ANIMAL_MODEL_CHOICES
        if self.animal_models not in ANIMAL_MODEL_CHOICES:
            raise BadRequest(f"--animal-models must be one of {', '.join(ANIMAL_MODEL_CHOICES)}, "
                             f"got {self.animal_models!r}")
        self.framing_options()  # --crop/--scale/--vx/--vy/--face-index: the framing's own checks

    def framing_options(self, weights_root: Any = None) -> Any:
        """engine.framing FramingOptions for this render (the same object ``engine crop`` builds)."""
        from engine.framing.frame import FramingOptions, parse_crop_arg

        return FramingOptions(crop=parse_crop_arg(self.crop_mode), scale=self.scale, vx=self.vx, vy=self.vy,
                              face_index=self.face_index, animal=self.animal,
                              weights_root=weights_root).validated()

    @property
    def crop_mode(self) -> str:
        """``--upstream-cli`` implies ``--crop none`` unless a crop was named explicitly."""
        return "none" if self.upstream_cli and self.crop == "auto" else self.crop


@dataclass(frozen=True)
class MotionJob(ConfigBase):
    """``engine motion``: speech audio → motion .npz."""

    audio: str
    out: str
    weights: str | None = None
    motion: MotionConfig = field(default_factory=MotionConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    controls: str | None = None    # art-direction controls file (engine/motion/controls.py)

    def __post_init__(self) -> None:
        if not str(self.out).lower().endswith(".npz"):
            raise BadRequest(f"--out must end in .npz, got {self.out}")

    def cli_view(self) -> SimpleNamespace:
        """The job under the CLI's option names (``--fps`` = ``motion_fps``...), for engine/preflight.py."""
        return SimpleNamespace(audio=self.audio, out=self.out, weights=self.weights, motion_fps=self.motion.fps,
                               controls=self.controls,
                               **{k: v for k, v in self.motion.to_dict().items() if k != "fps"},
                               device=self.runtime.device)


@dataclass(frozen=True)
class AnimateJob(ConfigBase):
    """``engine animate``: portrait + speech (or a motion file) → mp4 and/or PNG sequence."""

    image: str
    audio: str | None = None
    out: str | None = None
    frames_dir: str | None = None
    overwrite: bool = False        # --frames-dir may hold other files (only our frames are touched)
    motion_file: str | None = None
    save_motion: str | None = None
    weights: str | None = None
    preview: bool = False          # every 8th frame (<= 24) over the full soundtrack + a contact sheet
    render: RenderConfig = field(default_factory=RenderConfig)
    motion: MotionConfig = field(default_factory=MotionConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    controls: str | None = None    # art-direction controls file; region/strengths are shorthands for it
    save_driving: str | None = None  # also write the driving keypoints (.npy, N x 21 x 3)

    def __post_init__(self) -> None:
        if self.save_driving and not str(self.save_driving).lower().endswith(".npy"):
            raise BadRequest(f"--save-driving must end in .npy, got {self.save_driving}")

    def cli_view(self) -> SimpleNamespace:
        """The job under the CLI's option names (``--motion`` = ``motion_file``...), for engine/preflight.py."""
        return SimpleNamespace(image=self.image, audio=self.audio, out=self.out, frames_dir=self.frames_dir,
                               overwrite=self.overwrite, motion=self.motion_file, save_motion=self.save_motion,
                               preview=self.preview, controls=self.controls, save_driving=self.save_driving,
                               weights=self.weights, motion_fps=self.motion.fps,
                               **{k: v for k, v in self.motion.to_dict().items() if k != "fps"},
                               **self.render.to_dict(), device=self.runtime.device, dtype=self.runtime.dtype)
