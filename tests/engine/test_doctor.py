"""doctor: versions, devices, per-file presence, strict loading, exit codes."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest


@pytest.fixture()
def weights(tmp_path: Path, synthetic_tiny_lp: Path, synthetic_tiny_joyvasa: Path) -> Path:
    root = tmp_path / "w"
    shutil.copytree(synthetic_tiny_lp, root)
    shutil.copytree(synthetic_tiny_joyvasa, root, dirs_exist_ok=True)
    return root


def _run(capsys, *args: str) -> tuple[int, dict]:
    from engine.cli import main

    rc = main(["doctor", *args, "--json"])
    return rc, json.loads(capsys.readouterr().out)


def test_doctor_ready(capsys, weights: Path) -> None:
    rc, report = _run(capsys, "--weights", str(weights))
    assert rc == 0 and report["ok"]
    assert report["versions"]["torch"] and report["versions"]["av"] and report["versions"]["cv2"]
    assert "cpu" in report["devices"]["available"]
    groups = report["weights"]["groups"]
    assert groups["liveportrait"]["loads"] and groups["liveportrait"]["size"] == "custom (models.yaml)"
    assert groups["joyvasa"]["loads"]
    assert report["next"][0].startswith("Ready")


def test_doctor_missing_file(capsys, weights: Path) -> None:
    (weights / "liveportrait/base_models/spade_generator.pth").unlink()
    rc, report = _run(capsys, "--weights", str(weights))
    assert rc == 1 and not report["ok"]
    assert report["weights"]["files"]["spade_generator"]["present"] is False
    assert any("spade_generator" in s for s in report["next"])


def test_doctor_corrupt_file(capsys, weights: Path) -> None:
    p = weights / "JoyVASA/motion_generator/motion_generator_hubert_chinese.pt"
    p.write_bytes(p.read_bytes()[:2048])
    rc, report = _run(capsys, "--weights", str(weights))
    assert rc == 1
    assert report["weights"]["groups"]["joyvasa"]["loads"] is False
    assert report["weights"]["groups"]["liveportrait"]["loads"] is True


def test_doctor_no_folder(capsys, tmp_path: Path) -> None:
    rc, report = _run(capsys, "--weights", str(tmp_path / "absent"))
    assert rc == 1 and "does not exist" in report["next"][0]


def test_doctor_text_output(capsys, weights: Path) -> None:
    from engine.cli import main

    assert main(["doctor", "--weights", str(weights), "--no-load"]) == 0
    out = capsys.readouterr().out
    assert "status: OK" in out and "motion_generator" in out


def test_doctor_flags_synthetic_weights(capsys, weights: Path) -> None:
    """Folders from our writers carry the marker; doctor --json says so, text output too."""
    from engine.cli import main
    from engine.weights import SYNTHETIC_MARKER, SYNTHETIC_NOTE

    marker = json.loads((weights / SYNTHETIC_MARKER).read_text())
    assert marker["synthetic"] is True and "joyvasa" in marker["parts"]  # (the fixture copies two folders)
    rc, report = _run(capsys, "--weights", str(weights))
    assert rc == 0 and report["ok"] and report["synthetic"] is True
    assert any(SYNTHETIC_NOTE in step for step in report["next"])
    assert main(["doctor", "--weights", str(weights)]) == 0
    text = capsys.readouterr().out
    assert f"status: OK ({SYNTHETIC_NOTE})" in text and "SYNTHETIC" in text

    (weights / SYNTHETIC_MARKER).unlink()  # the same files without the marker: not flagged
    rc, report = _run(capsys, "--weights", str(weights))
    assert rc == 0 and report["synthetic"] is False
    assert not any(SYNTHETIC_NOTE in step for step in report["next"])


def test_synthetic_marker_written_before_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An interrupted writer still leaves a folder flagged as synthetic."""
    import torch

    from engine.models import synthetic_lp
    from engine.weights import synthetic_info

    def boom(*_a, **_k):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError):
        synthetic_lp.write_liveportrait_weights(tmp_path / "w", "tiny", seed=0)
    assert synthetic_info(tmp_path / "w")["parts"] == {"liveportrait": {"config": "tiny", "seed": 0}}
