"""LivePortrait's animal models: v1.1 (base_models_v1.1) when present, else v1 (base_models);
``--animal-models v1|v1.1`` overrides; the choice is logged (issue 22, item 5)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from engine.errors import BadRequest, WeightsMissing
from engine.runner import NullReporter
from engine.weights import ANIMAL_MODEL_DIRS, WeightsLayout, animal_layout, choose_animal_models

FILES = ("appearance_feature_extractor", "motion_extractor", "warping_module", "spade_generator")


def _folder(tmp: Path, src: Path, versions: tuple[str, ...]) -> Path:
    root = tmp / "w"
    shutil.copytree(src, root, symlinks=True)
    for v in versions:
        d = root / ANIMAL_MODEL_DIRS[v]
        d.mkdir(parents=True, exist_ok=True)
        for name in FILES:
            shutil.copy(root / "liveportrait/base_models" / f"{name}.pth", d / f"{name}.pth")
    return root


@pytest.mark.parametrize("present, requested, want", [
    (("v1", "v1.1"), "auto", "v1.1"), (("v1",), "auto", "v1"), (("v1.1",), "auto", "v1.1"), ((), "auto", None),
    (("v1", "v1.1"), "v1", "v1"), (("v1", "v1.1"), "v1.1", "v1.1")])
def test_choice(tmp_path: Path, present: tuple[str, ...], requested: str, want: str | None) -> None:
    for v in present:
        (tmp_path / ANIMAL_MODEL_DIRS[v]).mkdir(parents=True)
    assert choose_animal_models(tmp_path, requested) == want


def test_a_missing_requested_version_or_a_bad_name_is_an_error(tmp_path: Path) -> None:
    (tmp_path / ANIMAL_MODEL_DIRS["v1"]).mkdir(parents=True)
    with pytest.raises(WeightsMissing, match="base_models_v1.1"):
        choose_animal_models(tmp_path, "v1.1")
    with pytest.raises(BadRequest, match="--animal-models"):
        choose_animal_models(tmp_path, "v2")
    from engine.jobs import RenderConfig

    with pytest.raises(BadRequest, match="--animal-models"):
        RenderConfig(animal=True, animal_models="v2")
    assert RenderConfig(animal=True, animal_models="v1.1").animal_models == "v1.1"


def test_layout_points_at_the_chosen_folder(tmp_path: Path) -> None:
    layout = WeightsLayout(tmp_path)
    v11 = animal_layout(layout, "v1.1").liveportrait_files()
    v1 = animal_layout(layout).liveportrait_files()
    assert v11["warping_module"] == tmp_path / "liveportrait_animals/base_models_v1.1/warping_module.pth"
    assert v1["warping_module"] == tmp_path / "liveportrait_animals/base_models/warping_module.pth"
    assert v11["stitching_retargeting_module"] == layout.stitching_retargeting  # stitching stays human


class _Rep(NullReporter):
    def __init__(self) -> None:
        super().__init__()
        self.logs: list[str] = []
        self.warnings: list[str] = []

    def log(self, message: str) -> None:
        self.logs.append(message)

    def warning(self, code: str, message: str) -> None:
        self.warnings.append(code)


def test_stage_one_loads_the_chosen_animal_models(synthetic_tiny_lp: Path, tmp_path: Path) -> None:
    import torch

    from engine.device import select_precision
    from engine.pipeline.animate import load_stage_one

    root = _folder(tmp_path, synthetic_tiny_lp, ("v1", "v1.1"))
    # make v1.1 distinguishable: zero one generator weight there
    path = root / ANIMAL_MODEL_DIRS["v1.1"] / "spade_generator.pth"
    sd = torch.load(path, weights_only=True)
    key = next(k for k, v in sd.items() if v.dtype.is_floating_point and v.numel() > 4)
    sd[key] = torch.zeros_like(sd[key])
    torch.save(sd, path)
    precision = select_precision(torch.device("cpu"), "float32")
    layout = WeightsLayout(root)
    got = {}
    for requested in ("auto", "v1"):
        rep = _Rep()
        s1 = load_stage_one(layout, "cpu", precision, rep, animal=True, animal_models=requested)
        got[requested] = s1
        assert rep.logs == [f"animal models: {'v1.1' if requested == 'auto' else 'v1'} "
                            f"({ANIMAL_MODEL_DIRS['v1.1' if requested == 'auto' else 'v1']})"]
    zeroed = [float(p.abs().sum()) for p in got["auto"].G.state_dict().values() if p.dtype.is_floating_point]
    plain = [float(p.abs().sum()) for p in got["v1"].G.state_dict().values() if p.dtype.is_floating_point]
    assert zeroed != plain and 0.0 in zeroed and 0.0 not in plain   # the generator came from base_models_v1.1


def test_the_job_and_the_cli_know_the_same_choices() -> None:
    from engine.cli import build_parser
    from engine.jobs import ANIMAL_MODELS, AnimateJob
    from engine.weights import ANIMAL_MODEL_CHOICES

    assert ANIMAL_MODELS == ANIMAL_MODEL_CHOICES          # jobs.py stays free of engine.weights on purpose
    args = build_parser(load_commands=["animate"]).parse_args(
        ["animate", "--image", "a.png", "--audio", "a.wav", "--out", "o.mp4", "--animal", "--animal-models", "v1"])
    job = AnimateJob.from_args(args)
    assert job.render.animal_models == "v1" and job.to_dict()["animal_models"] == "v1"


def test_doctor_checks_both_animal_model_folders(synthetic_tiny_lp: Path, tmp_path: Path) -> None:
    from engine.pipeline.doctor import check_optional_parts

    root = _folder(tmp_path, synthetic_tiny_lp, ("v1", "v1.1"))
    (root / ANIMAL_MODEL_DIRS["v1.1"] / "motion_extractor.pth").write_bytes(b"broken")
    files: dict = {}
    groups = check_optional_parts(WeightsLayout(root), files)
    assert groups["liveportrait_animals"]["loads"] is True
    assert groups["liveportrait_animals_v1.1"]["loads"] is False and groups["liveportrait_animals_v1.1"]["error"]
    assert files["animal_v1.1_warping_module"]["present"] and files["animal_warping_module"]["present"]
