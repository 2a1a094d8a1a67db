"""tools/demo.py: what it tells a new user (summary from the engine's events) and its dtype choice."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def demo():
    spec = importlib.util.spec_from_file_location("demo_under_test", REPO / "tools" / "demo.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


EVENTS = [{"type": "progress", "stage": "render", "done": 5, "total": 23, "rate": 0.5},
          {"type": "done", "outputs": {"video": str(REPO / "out/demo.mp4"), "contact_sheet": str(REPO / "out/demo_contact.png")}}]


def test_summary_without_weights_says_synthetic_preview_and_cost(demo) -> None:
    text = "\n".join(demo.summary(EVENTS, synthetic=True, preview=True, audio_s=8.96, wall_s=100))
    assert "SYNTHETIC WEIGHTS: RANDOM NUMBERS, NOT A FACE" in text
    assert "PREVIEW" in text and "23 of the 224 frames" in text
    assert "2.0 s per frame" in text and "~7 min" in text           # 224 frames / 0.5 fps = 448 s
    assert "-m engine fetch --out weights" in text and "demo.mp4" in text and "demo_contact.png" in text


def test_summary_with_official_weights_is_plain(demo) -> None:
    text = "\n".join(demo.summary(EVENTS[1:], synthetic=False, preview=False, audio_s=8.96, wall_s=100))
    assert "SYNTHETIC" not in text and "PREVIEW" not in text and "engine fetch" not in text


def test_dtype_choice(demo, monkeypatch: pytest.MonkeyPatch) -> None:
    import engine.device as device

    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: True)
    if device.select_device("auto").type == "cpu":
        assert demo.fast_dtype_args([]) == ["--dtype", "bfloat16"]
    assert demo.fast_dtype_args(["--dtype", "float32"]) == []        # the user's choice wins
    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: False)
    assert demo.fast_dtype_args([]) == []


def test_synthetic_folder_is_not_taken_for_official_weights(demo, tmp_path: Path, synthetic_tiny_lp: Path,
                                                            synthetic_tiny_joyvasa: Path) -> None:
    import shutil

    root = tmp_path / "w"
    shutil.copytree(synthetic_tiny_lp, root)
    shutil.copytree(synthetic_tiny_joyvasa, root, dirs_exist_ok=True)
    assert demo.official_weights(str(root)) is None                  # complete, but marked synthetic
    (root / "SYNTHETIC_WEIGHTS.json").unlink()
    assert demo.official_weights(str(root)) == root
