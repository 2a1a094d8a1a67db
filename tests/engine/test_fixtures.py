"""The in-repo fixture archive (tools/fixtures.py): complete, verified, refused when damaged."""
from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _tool():
    spec = importlib.util.spec_from_file_location("fixtures_tool_under_test", REPO / "tools" / "fixtures.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_unpacked_folder_holds_every_manifest_file(tiny_reference: Path) -> None:
    manifest = json.loads((REPO / "tests/fixtures/upstream_tiny_seed0.tar.xz.sha256.json").read_text())
    found = sorted(str(f.relative_to(tiny_reference)) for f in tiny_reference.rglob("*") if f.is_file())
    assert found == manifest["files"]
    assert "reference.npz" in found and "liveportrait/base_models/spade_generator.pth" in found
    for part in manifest["parts"]:
        assert (REPO / "tests/fixtures" / part).stat().st_size < 2 * 1024 * 1024


def test_damaged_archive_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tool = _tool()
    fixtures = tmp_path / "fixtures"
    shutil.copytree(REPO / "tests/fixtures", fixtures, ignore=shutil.ignore_patterns("lp_*", "spec"))
    monkeypatch.setattr(tool, "FIXTURES", fixtures)
    monkeypatch.setattr(tool, "CACHE", tmp_path / "cache")
    part = fixtures / "upstream_tiny_seed0.tar.xz.03"
    data = bytearray(part.read_bytes())
    data[1000] ^= 0xFF
    part.write_bytes(bytes(data))
    with pytest.raises(tool.FixtureError, match="sha256"):
        tool.unpack("upstream_tiny_seed0")
    part.unlink()
    with pytest.raises(tool.FixtureError, match="parts"):
        tool.unpack("upstream_tiny_seed0")
    assert not list((tmp_path / "cache").glob("upstream_tiny_seed0-*"))
