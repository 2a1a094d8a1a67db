"""Runs tests/blender/inside_bpy/test_rigs_real.py (a real-engine take on tiny synthetic weights
keyed onto a generated Rigify rig, a VRoid and a VRM 1.0 mesh) inside the oldest and newest bpy
of the base matrix. The synthetic-motion rig tests (test_rigs.py) run in every version with the
rest of inside_bpy/ (test_bpy_versions.py::test_addon_in_bpy)."""
from __future__ import annotations

import pytest

from test_bpy_versions import VERSIONS, _check, run_inside


@pytest.mark.blender
@pytest.mark.slow
@pytest.mark.parametrize("version", sorted({VERSIONS[0], VERSIONS[-1]}))
def test_rig_presets_real_engine_in_bpy(version, tiny_weights):
    cp = run_inside(version, "tests/blender/inside_bpy/test_rigs_real.py", {"JOYVASA_TEST_WEIGHTS": str(tiny_weights)})
    _check(cp, version)
    assert "skipped" not in cp.stdout.splitlines()[-1], cp.stdout[-3000:]


#: the bpy versions whose venv has the VRM Add-on for Blender (bpy-vrm-format, tools/setup_bpy_envs.sh)
VRM_VERSIONS = VERSIONS[-2:]


@pytest.mark.blender
@pytest.mark.parametrize("version", VRM_VERSIONS)
def test_vrm_addon_avatars_in_bpy(version):
    """inside_bpy/test_rigs_vrm.py: VRM 1.0 and 0.x avatars made with the VRM add-on, exported and
    imported as .vrm, keyed through its expressions (the newest two versions)."""
    cp = run_inside(version, "tests/blender/inside_bpy/test_rigs_vrm.py", {"JOYVASA_VRM_TESTS": "1"})
    _check(cp, version, 4, 0)
