"""LivePortrait stage-one hyper-parameters: frozen dataclasses whose defaults are the official values.

The same dataclasses describe the tiny fixture sets (``models.yaml`` → ``model_params``), so a
weights folder with a ``models.yaml`` builds networks of its own size; without one the official
sizes are used. Upstream reference: LivePortrait ``src/config/models.yaml``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

#: ConvNeXt-V2 backbones known by name (depths, dims); others must carry depths/dims in the yaml
CONVNEXT_BACKBONES: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "convnextv2_tiny": ((3, 3, 9, 3), (96, 192, 384, 768)),
    "convnextv2_harness_tiny": ((1, 1, 1, 1), (8, 16, 32, 64)),
}


@dataclass(frozen=True)
class AppearanceConfig:
    image_channel: int = 3
    block_expansion: int = 64
    num_down_blocks: int = 2
    max_features: int = 512
    reshape_channel: int = 32
    reshape_depth: int = 16
    num_resblocks: int = 6


@dataclass(frozen=True)
class MotionExtractorConfig:
    num_kp: int = 21
    backbone: str = "convnextv2_tiny"
    depths: tuple[int, ...] = (3, 3, 9, 3)
    dims: tuple[int, ...] = (96, 192, 384, 768)
    num_bins: int = 66


@dataclass(frozen=True)
class DenseMotionConfig:
    block_expansion: int = 32
    max_features: int = 1024
    num_blocks: int = 5
    reshape_depth: int = 16
    compress: int = 4


@dataclass(frozen=True)
class WarpingConfig:
    num_kp: int = 21
    block_expansion: int = 64
    max_features: int = 512
    num_down_blocks: int = 2
    reshape_channel: int = 32
    estimate_occlusion_map: bool = True
    dense_motion_params: DenseMotionConfig = field(default_factory=DenseMotionConfig)


@dataclass(frozen=True)
class SpadeConfig:
    upscale: int = 2
    block_expansion: int = 64
    max_features: int = 512
    num_down_blocks: int = 2
    out_channels: int = 64


@dataclass(frozen=True)
class MLPConfig:
    input_size: int
    hidden_sizes: tuple[int, ...]
    output_size: int


def _default_mlps() -> dict[str, MLPConfig]:
    return {
        "stitching": MLPConfig(126, (128, 128, 64), 65),
        "lip": MLPConfig(65, (128, 128, 64), 63),
        "eye": MLPConfig(66, (256, 256, 128, 128, 64), 63),
    }


@dataclass(frozen=True)
class LivePortraitConfig:
    appearance: AppearanceConfig = field(default_factory=AppearanceConfig)
    motion: MotionExtractorConfig = field(default_factory=MotionExtractorConfig)
    warping: WarpingConfig = field(default_factory=WarpingConfig)
    spade: SpadeConfig = field(default_factory=SpadeConfig)
    stitching: dict[str, MLPConfig] = field(default_factory=_default_mlps)

    # ---------------------------------------------------------------- construction
    @classmethod
    def official(cls) -> "LivePortraitConfig":
        return cls()

    @classmethod
    def tiny(cls) -> "LivePortraitConfig":
        """The tiny fixture configuration (shared/fixtures/README.md, "Configs")."""
        return cls(
            appearance=AppearanceConfig(block_expansion=2, max_features=8, reshape_channel=2,
                                        reshape_depth=4, num_resblocks=1),
            motion=MotionExtractorConfig(backbone="convnextv2_harness_tiny", depths=(1, 1, 1, 1),
                                         dims=(8, 16, 32, 64)),
            warping=WarpingConfig(block_expansion=2, max_features=8, reshape_channel=2,
                                  dense_motion_params=DenseMotionConfig(
                                      block_expansion=2, max_features=8, num_blocks=2,
                                      reshape_depth=4, compress=1)),
            spade=SpadeConfig(block_expansion=2, max_features=8, out_channels=4),
        )

    @classmethod
    def named(cls, name: str) -> "LivePortraitConfig":
        if name == "official":
            return cls.official()
        if name == "tiny":
            return cls.tiny()
        raise ValueError(f"unknown config {name!r} (expected 'official' or 'tiny')")

    @classmethod
    def from_model_params(cls, params: dict[str, Any]) -> "LivePortraitConfig":
        """Build from a ``models.yaml`` ``model_params`` mapping; absent blocks keep official values."""
        app = _build(AppearanceConfig, params.get("appearance_feature_extractor_params"))
        mot_raw = dict(params.get("motion_extractor_params") or {})
        backbone = mot_raw.get("backbone", "convnextv2_tiny")
        if "depths" not in mot_raw or "dims" not in mot_raw:
            if backbone not in CONVNEXT_BACKBONES:
                raise ValueError(f"unknown motion-extractor backbone {backbone!r} without depths/dims")
            depths, dims = CONVNEXT_BACKBONES[backbone]
            mot_raw.setdefault("depths", depths)
            mot_raw.setdefault("dims", dims)
        mot = _build(MotionExtractorConfig, mot_raw)
        warp_raw = dict(params.get("warping_module_params") or {})
        dense = _build(DenseMotionConfig, warp_raw.pop("dense_motion_params", None))
        warp = _build(WarpingConfig, warp_raw, dense_motion_params=dense)
        spade = _build(SpadeConfig, params.get("spade_generator_params"))
        mlps = _default_mlps()
        for name, raw in (params.get("stitching_retargeting_module_params") or {}).items():
            mlps[name] = _build(MLPConfig, raw)
        return cls(app, mot, warp, spade, mlps)

    @classmethod
    def from_yaml(cls, path: str | Path) -> "LivePortraitConfig":
        import yaml

        from engine.errors import WeightsCorrupt

        try:
            with open(path, "r", encoding="utf-8") as fh:
                doc = yaml.safe_load(fh) or {}
            if not isinstance(doc, dict):
                raise ValueError(f"top level is a {type(doc).__name__}, expected a mapping")
            return cls.from_model_params(doc.get("model_params", doc))
        except (yaml.YAMLError, UnicodeDecodeError, ValueError, TypeError, KeyError, AttributeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise WeightsCorrupt(f"{path} is not a valid LivePortrait models.yaml ({first}); fix or delete it "
                                 "(without it the official network sizes are used)") from None

    @classmethod
    def for_weights(cls, models_yaml: Path) -> "LivePortraitConfig":
        """``models.yaml`` beside the weights if present, else the official sizes."""
        return cls.from_yaml(models_yaml) if Path(models_yaml).is_file() else cls.official()

    # ---------------------------------------------------------------- serialisation
    def to_model_params(self) -> dict[str, Any]:
        """The ``model_params`` mapping in upstream's models.yaml naming (lists, not tuples)."""
        return _plain({
            "appearance_feature_extractor_params": asdict(self.appearance),
            "motion_extractor_params": {k: v for k, v in asdict(self.motion).items() if k != "num_bins"},
            "warping_module_params": asdict(self.warping),
            "spade_generator_params": asdict(self.spade),
            "stitching_retargeting_module_params": {k: asdict(v) for k, v in self.stitching.items()},
        })


#: one of the network config dataclasses above
C = TypeVar("C")


def _build(kind: type[C], raw: dict[str, Any] | None, **extra: Any) -> C:
    raw = dict(raw or {})
    names = {f.name for f in fields(kind)}
    kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in raw.items() if k in names}
    kwargs.update(extra)
    return kind(**kwargs)


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj
