"""Where the official weight files live inside a weights folder (upstream ``pretrained_weights/``).

The layout is the one upstream uses and the one ``python -m engine fetch`` and
``tools/make_synthetic_weights.py`` produce (:data:`FETCH_PARTS` says which Hugging Face file
lands where)::

    DIR/liveportrait/base_models/{appearance_feature_extractor,motion_extractor,
                                  warping_module,spade_generator}.pth
    DIR/liveportrait/retargeting_models/stitching_retargeting_module.pth
    DIR/JoyVASA/motion_generator/motion_generator_hubert_chinese.pt
    DIR/JoyVASA/motion_template/motion_template.pkl
    DIR/TencentGameMate:chinese-hubert-base/{config.json, ...}   (or chinese-hubert-base/)
    DIR/models.yaml   optional: LivePortrait constructor params (absent = official sizes)
    DIR/SYNTHETIC_WEIGHTS.json   written by our random-weight writers (never by upstream): the
                                 folder holds random numbers, not a model (doctor/animate say so)
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.contract.schema import SYNTHETIC_NOTE  # noqa: F401  (what every surface says of such a folder)
from engine.errors import BadRequest, WeightsMissing, OFFICIAL_WEIGHTS_HINT

if TYPE_CHECKING:
    from engine.runner import Reporter

ENV_VAR = "JOYVASA_WEIGHTS"

#: marker file our synthetic writers put at the root of every folder they write
SYNTHETIC_MARKER = "SYNTHETIC_WEIGHTS.json"


def mark_synthetic(root: Path, part: str, config: str, seed: int) -> None:
    """Record that ``part`` ('liveportrait' | 'joyvasa') under ``root`` is random. Called by the writers
    BEFORE they write any weight file, so even an interrupted folder is never mistaken for a model."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    path = root / SYNTHETIC_MARKER
    info = synthetic_info(root) or {}
    parts = dict(info.get("parts") or {})
    parts[part] = {"config": config, "seed": seed}
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(json.dumps({"synthetic": True, "note": SYNTHETIC_NOTE, "parts": parts,
                               "written_by": "JoyVASA for Blender synthetic-weight writer"}, indent=1) + "\n")
    tmp.replace(path)


def synthetic_info(root: Path | None) -> dict | None:
    """The marker's content if ``root`` holds synthetic weights, else None (an unreadable marker still
    counts as synthetic: err on the side of not calling random numbers a model)."""
    if root is None:
        return None
    path = Path(root) / SYNTHETIC_MARKER
    if not path.is_file():
        return None
    try:
        info = json.loads(path.read_text())
        return info if isinstance(info, dict) else {"synthetic": True}
    except (OSError, ValueError):
        return {"synthetic": True, "note": SYNTHETIC_NOTE}


@dataclass(frozen=True)
class WeightsLayout:
    root: Path

    @property
    def appearance_feature_extractor(self) -> Path:
        return self.root / "liveportrait/base_models/appearance_feature_extractor.pth"

    @property
    def motion_extractor(self) -> Path:
        return self.root / "liveportrait/base_models/motion_extractor.pth"

    @property
    def warping_module(self) -> Path:
        return self.root / "liveportrait/base_models/warping_module.pth"

    @property
    def spade_generator(self) -> Path:
        return self.root / "liveportrait/base_models/spade_generator.pth"

    @property
    def stitching_retargeting(self) -> Path:
        return self.root / "liveportrait/retargeting_models/stitching_retargeting_module.pth"

    @property
    def motion_generator(self) -> Path:
        """The JoyVASA motion generator; any ``*.pt`` in the folder if the usual name is absent."""
        folder = self.root / "JoyVASA/motion_generator"
        preferred = folder / "motion_generator_hubert_chinese.pt"
        if preferred.exists() or not folder.is_dir():
            return preferred
        candidates = sorted(folder.glob("*.pt"))
        return candidates[0] if candidates else preferred

    @property
    def motion_template(self) -> Path:
        return self.root / "JoyVASA/motion_template/motion_template.pkl"

    def audio_encoder_dir(self, audio_model: str = "hubert_zh") -> Path:
        """HF folder of the audio encoder named by the checkpoint's ``args.audio_model``."""
        names = {
            "hubert_zh": ["TencentGameMate:chinese-hubert-base", "chinese-hubert-base"],
            "hubert_zh_ori": ["TencentGameMate:chinese-hubert-base", "chinese-hubert-base"],
            "hubert": ["hubert-base-ls960"],
            "wav2vec2": ["wav2vec2-base-960h", "facebook/wav2vec2-base-960h"],
        }.get(audio_model, [audio_model])
        for name in names:
            if (self.root / name).is_dir():
                return self.root / name
        return self.root / names[0]

    @property
    def models_yaml(self) -> Path:
        return self.root / "models.yaml"

    def liveportrait_files(self) -> dict[str, Path]:
        return {
            "appearance_feature_extractor": self.appearance_feature_extractor,
            "motion_extractor": self.motion_extractor,
            "warping_module": self.warping_module,
            "spade_generator": self.spade_generator,
            "stitching_retargeting_module": self.stitching_retargeting,
        }

    def require(self, path: Path) -> Path:
        if path.is_dir():
            raise WeightsMissing(f"weight file {path} is a folder, expected a file. {OFFICIAL_WEIGHTS_HINT}")
        if not path.is_file():
            raise WeightsMissing(f"missing weight file {path}. {OFFICIAL_WEIGHTS_HINT}")
        return path


def resolve_weights_dir(arg: str | os.PathLike[str] | None, reporter: "Reporter | None" = None) -> WeightsLayout:
    """``--weights`` if given, else ``$JOYVASA_WEIGHTS``; clear error if neither exists. With a
    reporter, a synthetic folder is announced as a ``synthetic_weights`` warning (the output of a
    run on random weights must never be taken for the model's)."""
    raw = str(arg) if arg else os.environ.get(ENV_VAR, "")
    if not raw:
        raise BadRequest(f"no weights folder: pass --weights DIR or set ${ENV_VAR}. {OFFICIAL_WEIGHTS_HINT}")
    root = Path(raw).expanduser()
    if root.is_file():
        raise WeightsMissing(f"weights folder {root} is a file; --weights takes the folder that holds "
                             f"liveportrait/ and JoyVASA/. {OFFICIAL_WEIGHTS_HINT}")
    if not root.is_dir():
        raise WeightsMissing(f"weights folder {root} does not exist. {OFFICIAL_WEIGHTS_HINT}")
    if reporter is not None and synthetic_info(root) is not None:
        reporter.warning("synthetic_weights", f"{SYNTHETIC_NOTE} ({root}): the output only proves that the "
                                              "pipeline runs. Real weights: python -m engine fetch --out DIR")
    return WeightsLayout(root)


#: LivePortrait's animal stage-one folders: v1 (JoyVASA's, 2024) and v1.1 (LivePortrait's default since 2025)
ANIMAL_MODEL_DIRS = {"v1": "liveportrait_animals/base_models", "v1.1": "liveportrait_animals/base_models_v1.1"}
ANIMAL_MODEL_CHOICES = ("auto", *ANIMAL_MODEL_DIRS)


def choose_animal_models(root: Path, requested: str = "auto") -> str | None:
    """Which animal models to load: ``v1.1`` when present (better on dogs), else ``v1``; None when
    neither folder is there. An explicit ``requested`` version that is missing is an error."""
    if requested not in ANIMAL_MODEL_CHOICES:
        raise BadRequest(f"--animal-models must be one of {', '.join(ANIMAL_MODEL_CHOICES)}, got {requested!r}")
    if requested != "auto":
        if not (Path(root) / ANIMAL_MODEL_DIRS[requested]).is_dir():
            raise WeightsMissing(f"--animal-models {requested}: {Path(root) / ANIMAL_MODEL_DIRS[requested]} not found. "
                                 f"{OFFICIAL_WEIGHTS_HINT}")
        return requested
    for version in ("v1.1", "v1"):
        if (Path(root) / ANIMAL_MODEL_DIRS[version]).is_dir():
            return version
    return None


class _AnimalLayout:
    """Stage-one weights from ``liveportrait_animals/`` (stitching stays human, as upstream)."""

    def __init__(self, layout: WeightsLayout, version: str = "v1") -> None:
        self._layout = layout
        self.root = layout.root
        self.version = version
        self._dir = ANIMAL_MODEL_DIRS[version]

    def __getattr__(self, name: str) -> object:
        value = getattr(self._layout, name)
        if isinstance(value, Path) and "liveportrait/base_models" in value.as_posix():
            return Path(str(value).replace("liveportrait/base_models", self._dir))
        return value

    def liveportrait_files(self) -> dict[str, Path]:
        files = self._layout.liveportrait_files()
        return {k: (getattr(self, k) if k != "stitching_retargeting_module" else v) for k, v in files.items()}


def animal_layout(layout: WeightsLayout, version: str = "v1") -> _AnimalLayout:
    """The layout the animal pipeline loads stage one from (``liveportrait_animals/base_models[_v1.1]``)."""
    return _AnimalLayout(layout, version)


# -- what ``python -m engine fetch`` downloads, and from where -------------------------------------
#: the HuBERT folder name upstream uses; Windows cannot have ':' in a file name
HUBERT_DIR = "chinese-hubert-base" if os.name == "nt" else "TencentGameMate:chinese-hubert-base"
LIVEPORTRAIT_REPO = "KwaiVGI/LivePortrait"
JOYVASA_REPO = "jdh-algo/JoyVASA"
HUBERT_REPO = "TencentGameMate/chinese-hubert-base"


@dataclass(frozen=True)
class HubFile:
    """One file of a Hugging Face model repository and where it goes inside the weights folder."""

    repo: str
    path: str     # path inside the repository
    dest: str     # path relative to the weights folder (always '/'-separated)


@dataclass(frozen=True)
class WeightPart:
    """A group of files the user fetches together; ``licence`` is shown before it downloads."""

    name: str
    title: str
    licence: str
    files: tuple[HubFile, ...]
    optional: bool = True


def _lp(path: str) -> HubFile:
    return HubFile(LIVEPORTRAIT_REPO, path, path)


_BASE = ("appearance_feature_extractor", "motion_extractor", "warping_module", "spade_generator")

#: every part ``engine fetch`` knows; "core" is always fetched, the others with --animals/--xpose/--detector
FETCH_PARTS: dict[str, WeightPart] = {
    "core": WeightPart(
        "core", "LivePortrait stage one + JoyVASA motion generator + chinese-hubert-base config",
        "LivePortrait and JoyVASA models: MIT (model cards of KwaiVGI/LivePortrait and jdh-algo/JoyVASA); "
        "chinese-hubert-base: see the TencentGameMate/chinese-hubert-base model card",
        tuple([_lp(f"liveportrait/base_models/{n}.pth") for n in _BASE]
              + [_lp("liveportrait/retargeting_models/stitching_retargeting_module.pth"),
                 HubFile(JOYVASA_REPO, "motion_generator/motion_generator_hubert_chinese.pt",
                         "JoyVASA/motion_generator/motion_generator_hubert_chinese.pt"),
                 HubFile(JOYVASA_REPO, "motion_template/motion_template.pkl",
                         "JoyVASA/motion_template/motion_template.pkl"),
                 HubFile(HUBERT_REPO, "config.json", f"{HUBERT_DIR}/config.json"),
                 HubFile(HUBERT_REPO, "preprocessor_config.json", f"{HUBERT_DIR}/preprocessor_config.json")]),
        optional=False),
    "animals": WeightPart(
        "animals", "LivePortrait animal models (liveportrait_animals/, for --animal)",
        "LivePortrait animal models: MIT, as LivePortrait (model card of KwaiVGI/LivePortrait)",
        tuple(_lp(f"liveportrait_animals/base_models/{n}.pth") for n in _BASE)),
    "xpose": WeightPart(
        "xpose", "X-Pose animal-face keypoint model (liveportrait_animals/xpose.pth)",
        "X-Pose model: NON-COMMERCIAL scientific research use only (X-Pose licence); "
        "do not use it for commercial work",
        (_lp("liveportrait_animals/xpose.pth"),)),
    "detector": WeightPart(
        "detector", "InsightFace face detector + landmarks (upstream's face crop)",
        "InsightFace buffalo_l models: NON-COMMERCIAL research use only (InsightFace licence); "
        "the engine's default MTCNN detector (MIT) needs none of these",
        (_lp("insightface/models/buffalo_l/det_10g.onnx"), _lp("insightface/models/buffalo_l/2d106det.onnx"))),
}


def fetch_parts(animals: bool = False, xpose: bool = False, detector: bool = False) -> list[WeightPart]:
    """The parts one ``engine fetch`` run downloads, in download order (core first)."""
    wanted = {"animals": animals, "xpose": xpose, "detector": detector}
    return [part for name, part in FETCH_PARTS.items() if not part.optional or wanted.get(name)]
