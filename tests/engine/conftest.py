"""Shared engine-test fixtures: the upstream reference folder and synthetic weight folders.

Synthetic weights are generated once per session into pytest tmp dirs (never committed).
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def unpack_fixture(name: str) -> Path:
    """A fixture shipped in tests/fixtures as a split .tar.xz, unpacked once into .cache/fixtures."""
    spec = importlib.util.spec_from_file_location("joyvasa_tools_fixtures", REPO / "tools" / "fixtures.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.unpack(name)


@pytest.fixture(scope="session")
def tiny_reference() -> Path:
    """The upstream tiny reference folder (checkpoints + reference.npz), from the repository itself."""
    return unpack_fixture("upstream_tiny_seed0")


@pytest.fixture(scope="session")
def xpose_reference() -> Path:
    """The upstream X-Pose tiny reference (xpose.pth, prompt pickles, animal.png, xpose_reference.npz)."""
    return unpack_fixture("upstream_xpose_tiny_seed0")


@pytest.fixture(scope="session")
def synthetic_tiny_lp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random tiny LivePortrait weights (official containers, models.yaml) in a session tmp dir."""
    from engine.models.synthetic_lp import write_liveportrait_weights

    root = tmp_path_factory.mktemp("synthetic_tiny_lp")
    write_liveportrait_weights(root, "tiny", seed=1)
    return root


@pytest.fixture(scope="session")
def synthetic_official_lp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random official-size LivePortrait weights (~500 MB on disk; a few seconds to write)."""
    from engine.models.synthetic_lp import write_liveportrait_weights

    root = tmp_path_factory.mktemp("synthetic_official_lp")
    write_liveportrait_weights(root, "official", seed=0)
    return root


@pytest.fixture(scope="session")
def synthetic_tiny_joyvasa(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random tiny JoyVASA motion generator + template + HuBERT folder (official containers)."""
    from engine.motion.synthetic import write_joyvasa_weights

    root = tmp_path_factory.mktemp("synthetic_tiny_joyvasa")
    write_joyvasa_weights(root, "tiny", seed=3)
    return root


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Both halves of the tiny synthetic weights in one folder (tools/make_synthetic_weights.py)."""
    sys.path.insert(0, str(REPO / "tools"))
    try:
        import make_synthetic_weights
    finally:
        sys.path.pop(0)
    root = tmp_path_factory.mktemp("tiny_weights")
    assert make_synthetic_weights.main(["--config", "tiny", "--out", str(root)]) == 0
    if not (root / "JoyVASA/motion_generator").is_dir():
        pytest.fail("synthetic JoyVASA weights were not written")
    return root
