"""Both halves read expressions through the contract's semantic projection (engine/contract/semantic.py):
the Live Link Face CSV the engine exports carries exactly the shape-key values the add-on keys
for the same take."""
from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from engine.export import arkit, export_frames  # noqa: E402
from engine.export.livelink import HEADER, arkit_column  # noqa: E402
from engine.motion.npz import load_motion, save_motion  # noqa: E402

from joyvasa_blender.core import motion_core, retarget  # noqa: E402
from joyvasa_blender.core.contract import semantic  # noqa: E402

GOLDEN = REPO / "tests" / "contract" / "motion_v1.npz"


def test_csv_equals_the_addon_keys(tmp_path: Path) -> None:
    """Default export vs the add-on's keying path (apply_motion: resample to the scene rate ->
    project with the default neutral -> the ARKit preset with Gaze on), column by column."""
    from engine.cli import main

    m = load_motion(GOLDEN)
    m.meta.update(audio_offset_s=-0.08, audio_duration_s=(m.n_frames - 2) / m.fps)
    path = save_motion(tmp_path / "take.npz", m)
    for fps in (25.0, 24.0):
        out = tmp_path / f"take{int(fps)}.csv"
        assert main(["export", "--motion", str(path), "--format", "livelinkface-csv", "--out", str(out),
                     "--fps", str(fps)]) == 0
        with open(out, newline="") as fh:
            rows = list(csv.reader(fh))
        assert tuple(rows[0]) == HEADER
        col = {name: np.array([float(r[i]) for r in rows[1:]]) for i, name in enumerate(rows[0]) if i >= 2}

        s = motion_core.resample(motion_core.load_motion(path), fps)          # what the add-on keys
        assert len(rows) - 1 == s.n_frames
        # the ARKit preset with Gaze on: the default name map + eyeLook* (gaze projected apart from the lids)
        proj = semantic.project(s.exp, reference_mode="auto", groups=("mouth", "eyes", "brows", "gaze"))
        preset = retarget.with_name_map(retarget.find_preset(retarget.ARKIT), semantic.default_name_map(), gaze=True)
        keys = retarget.evaluate(preset, semantic.readout(proj)).shape_keys
        assert len(keys) >= 18 and "eyeLookInLeft" in keys
        no_gaze = semantic.shape_key_curves(semantic.project(s.exp, groups=("mouth", "eyes", "brows")),
                                            semantic.parse_name_map(semantic.default_name_map()))
        for key, values in no_gaze.items():          # the blinks (and all) equal the keys without gaze
            np.testing.assert_array_equal(keys[key], values, err_msg=key)
        for key, values in keys.items():
            np.testing.assert_allclose(col[arkit_column(key)], values, atol=2e-5, err_msg=key)
        for name in HEADER[2:54]:
            if name not in {arkit_column(k) for k in keys}:
                assert not col[name].any(), name
        np.testing.assert_allclose(col["HeadYaw"], np.radians(s.yaw), atol=1e-4)
        np.testing.assert_allclose(col["HeadPitch"], np.radians(s.pitch), atol=1e-4)
        assert export_frames(load_motion(path), fps).n_frames == s.n_frames
