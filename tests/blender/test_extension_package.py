"""The extension zip: layout, and Blender's own validator (blender_ext.py from the bpy wheels,
run with plain CPython)."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from test_bpy_versions import VERSIONS   # tools/bpy_versions.tsv (tests/blender is on sys.path)

REPO = Path(__file__).resolve().parents[2]


def _build_tool():
    spec = importlib.util.spec_from_file_location("build_extension", REPO / "tools" / "build_extension.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def zip_path(tmp_path_factory) -> Path:
    return _build_tool().build(tmp_path_factory.mktemp("dist"))


def test_zip_layout(zip_path):
    names = set(zipfile.ZipFile(zip_path).namelist())
    core = sorted(f"core/{f.relative_to(REPO / 'joyvasa_blender' / 'core').as_posix()}"
                  for f in (REPO / "joyvasa_blender" / "core").rglob("*.py"))
    assert "core/__init__.py" in core and "core/contract/protocol.py" in core
    for required in ("blender_manifest.toml", "__init__.py", *core, "core/contract/semantic_basis.json",
                     "engine_src/engine/__main__.py", "engine_src/engine/contract/protocol.py", "engine_src/requirements.txt"):
        assert required in names, required
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
    with zipfile.ZipFile(zip_path) as z:
        for name in ("protocol.py", "npz_reader.py", "semantic.py", "semantic_basis.json"):
            assert z.read(f"core/contract/{name}") == z.read(f"engine_src/engine/contract/{name}"), name
        reqs = z.read("engine_src/requirements.txt").decode()
    assert "torch" in reqs and "numpy" in reqs
    assert "huggingface_hub" in reqs                       # Download Weights runs `engine fetch` in that env
    assert {"engine_src/engine/commands/fetch.py", "engine_src/engine/fetch/transfer.py"} <= names


@pytest.mark.parametrize("version", VERSIONS)
def test_blender_validator_accepts_zip_and_manifest(zip_path, version):
    found = sorted(REPO.glob(f".venvs/bpy-{version}/lib/python3*/site-packages/bpy/*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
    if not found:
        msg = f"bpy {version} venv missing: run tools/setup_bpy_envs.sh {version}"
        if os.environ.get("JOYVASA_REQUIRE_BPY") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
    for target in (zip_path, REPO / "blender_manifest.toml"):
        if target.suffix == ".toml":   # validate the source folder layout: manifest + add-on files
            stage = zip_path.parent / "stage"
            if not stage.exists():
                with zipfile.ZipFile(zip_path) as z:
                    z.extractall(stage)
            target = stage
        cp = subprocess.run([sys.executable, str(found[0]), "validate", str(target)], capture_output=True, text=True,
                            timeout=120)
        assert cp.returncode == 0 and "Success" in cp.stdout, cp.stdout + cp.stderr


def test_validator_rejects_a_bad_manifest(tmp_path):
    found = sorted(REPO.glob(".venvs/bpy-*/lib/python3*/site-packages/bpy/*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
    if not found:
        pytest.skip("no bpy venv: run tools/setup_bpy_envs.sh")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "__init__.py").write_text("")
    (bad / "blender_manifest.toml").write_text("\n".join(
        'tagline = "A tagline that ends with a dot."' if line.startswith("tagline") else line
        for line in (REPO / "blender_manifest.toml").read_text().splitlines()))
    cp = subprocess.run([sys.executable, str(found[-1]), "validate", str(bad)], capture_output=True, text=True, timeout=120)
    assert cp.returncode != 0 and "tagline" in (cp.stdout + cp.stderr), cp.stdout + cp.stderr


def test_validate_finds_a_validator_on_its_own_or_says_how(monkeypatch, tmp_path, capsys):
    """--validate: a `blender` on PATH first, then the bpy venvs' blender_ext.py; with neither, exit 2
    with the ways to get one (README's Blender step says the same)."""
    tool = _build_tool()
    fake = tmp_path / "blender"
    fake.write_text("#!/bin/sh\necho validated \"$@\"\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ.get('PATH', '')}")
    assert tool.validator_command(tmp_path / "x.zip")[:4] == [str(fake), "--factory-startup", "--command", "extension"]
    assert tool.validate(tmp_path / "x.zip", None) == 0 and "validated" in capsys.readouterr().out
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr(tool, "find_blender_ext", lambda: tmp_path / "blender_ext.py")
    assert tool.validator_command(tmp_path / "x.zip")[1:3] == [str(tmp_path / "blender_ext.py"), "validate"]
    monkeypatch.setattr(tool, "find_blender_ext", lambda: None)
    assert tool.validate(tmp_path / "x.zip", None) == 2
    err = capsys.readouterr().err
    assert "blender" in err and "tools/setup_bpy_envs.sh" in err and "--blender-ext" in err
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "tools/setup_bpy_envs.sh" in readme[readme.index("build_extension.py --validate"):][:600]
