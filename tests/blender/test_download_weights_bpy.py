"""Runs tests/blender/inside_bpy/test_download_weights.py inside the oldest and the newest bpy the
matrix has (4.2 LTS and, once .ci/run sets it up, 5.3 on Python 3.13): Download Weights against a
local stand-in hub, with the real engine's fetcher."""
from __future__ import annotations

import pytest

from test_bpy_versions import VERSIONS, _check, run_inside


@pytest.mark.blender
@pytest.mark.slow
@pytest.mark.parametrize("version", sorted({VERSIONS[0], VERSIONS[-1]}))
def test_download_weights_in_bpy(version, tiny_weights):
    cp = run_inside(version, "tests/blender/inside_bpy/test_download_weights.py",
                    {"JOYVASA_TEST_WEIGHTS": str(tiny_weights)})
    _check(cp, version)
    assert "skipped" not in cp.stdout.splitlines()[-1], cp.stdout[-3000:]
