"""Runs tests/blender/inside_bpy in each bpy wheel's own interpreter (4.2, 4.5, 5.0).

The bpy venvs are made by tools/setup_bpy_envs.sh. A missing venv skips with the reason,
unless JOYVASA_REQUIRE_BPY=1 (CI), where it fails.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VERSIONS = ("4.2", "4.5", "5.0")
TIMEOUT_S = int(os.environ.get("JOYVASA_BPY_TIMEOUT", "900"))


def bpy_python(version: str) -> Path:
    py = REPO / ".venvs" / f"bpy-{version}" / "bin" / "python"
    if not py.exists():
        msg = f"bpy {version} venv missing: run tools/setup_bpy_envs.sh {version}"
        if os.environ.get("JOYVASA_REQUIRE_BPY") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
    return py


def run_inside(version: str, target: str, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env.update({"JOYVASA_INSIDE_BPY": "1", "JOYVASA_TEST_ENGINE_PYTHON": sys.executable, "OMP_NUM_THREADS": "1"})
    env.update(extra_env or {})
    cmd = [str(bpy_python(version)), "-m", "pytest", target, "-q", "-p", "no:cacheprovider", "-rs"]
    try:
        return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"bpy {version}: {target} timed out after {TIMEOUT_S}s\n{(exc.stdout or '')[-3000:]}")


def _check(cp: subprocess.CompletedProcess, version: str) -> None:
    tail = (cp.stdout + cp.stderr)[-6000:]
    assert cp.returncode == 0, f"bpy {version} inside tests failed (exit {cp.returncode}):\n{tail}"
    assert " passed" in cp.stdout, tail


@pytest.mark.blender
@pytest.mark.parametrize("version", VERSIONS)
def test_addon_in_bpy(version):
    """Extension install, register/unregister, apply, fake-engine operators, strips, batch."""
    cp = run_inside(version, "tests/blender/inside_bpy", {"JOYVASA_SKIP_REAL_ENGINE": "1"})
    _check(cp, version)


@pytest.mark.blender
@pytest.mark.slow
@pytest.mark.parametrize("version", VERSIONS)
def test_real_engine_in_bpy(version, tiny_weights):
    """Speech wav -> real engine on tiny synthetic weights -> keys, shape keys, strips."""
    cp = run_inside(version, "tests/blender/inside_bpy/test_real_engine.py", {"JOYVASA_TEST_WEIGHTS": str(tiny_weights)})
    _check(cp, version)
    assert "skipped" not in cp.stdout.splitlines()[-1], cp.stdout[-3000:]


@pytest.mark.blender
@pytest.mark.slow
@pytest.mark.parametrize("version", ["4.5", "5.0"])
def test_controls_real_engine_in_bpy(version, tiny_weights):
    """A keyed head-strength curve: still head bone AND still driving keypoints in the video's first half."""
    cp = run_inside(version, "tests/blender/inside_bpy/test_controls_real.py", {"JOYVASA_TEST_WEIGHTS": str(tiny_weights)})
    _check(cp, version)
    assert "skipped" not in cp.stdout.splitlines()[-1], cp.stdout[-3000:]

