"""Runs tests/blender/inside_bpy/test_download_weights.py inside bpy 4.2 LTS and 5.3 (Python 3.11 and
3.13): Download Weights against a local stand-in hub, with the real engine's fetcher."""
from __future__ import annotations

import pytest

from test_bpy_versions import _check, run_inside


@pytest.mark.blender
@pytest.mark.slow
@pytest.mark.parametrize("version", ["4.2", "5.3"])
def test_download_weights_in_bpy(version, tiny_weights):
    cp = run_inside(version, "tests/blender/inside_bpy/test_download_weights.py",
                    {"JOYVASA_TEST_WEIGHTS": str(tiny_weights)})
    _check(cp, version)
    assert "skipped" not in cp.stdout.splitlines()[-1], cp.stdout[-3000:]
