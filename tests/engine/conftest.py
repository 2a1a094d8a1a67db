"""Shared engine-test fixtures: the upstream reference folder and synthetic weight folders.

Synthetic weights are generated once per session into pytest tmp dirs (never committed).
"""
from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO / ".." / "shared"
TINY_REFERENCE = SHARED / "fixtures" / "upstream_tiny_seed0"


@pytest.fixture(scope="session")
def tiny_reference() -> Path:
    """The upstream tiny reference folder (checkpoints + reference.npz); skip if /work/shared is absent."""
    if not (TINY_REFERENCE / "reference.npz").is_file():
        pytest.skip(f"shared fixtures not found at {TINY_REFERENCE.resolve()} (need <repo>/../shared)")
    return TINY_REFERENCE


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
