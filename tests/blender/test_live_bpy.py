"""Runs tests/blender/inside_bpy/test_live_real.py (a live take through the real engine on tiny
synthetic weights) inside the oldest and newest bpy. The fake-engine live tests (test_live.py)
run with the rest of inside_bpy/ (test_bpy_versions.py::test_addon_in_bpy)."""
from __future__ import annotations

import pytest

from test_bpy_versions import VERSIONS, _check, run_inside


@pytest.mark.blender
@pytest.mark.slow
@pytest.mark.parametrize("version", sorted({VERSIONS[0], VERSIONS[-1]}))
def test_live_real_engine_in_bpy(version, tiny_weights):
    cp = run_inside(version, "tests/blender/inside_bpy/test_live_real.py", {"JOYVASA_TEST_WEIGHTS": str(tiny_weights)})
    _check(cp, version)
    assert "skipped" not in cp.stdout.splitlines()[-1], cp.stdout[-3000:]
