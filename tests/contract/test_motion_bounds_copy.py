"""The motion-file sanity limits are a deliberate copy (engine reader / add-on reader): they must agree,
and both readers must refuse the same files with the file named (issue #13 defect 7)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.motion import npz as engine_npz
from joyvasa_blender.core import motion_core as addon

GOLDEN = Path(__file__).with_name("motion_v1.npz")


def test_limits_are_the_same_on_both_sides() -> None:
    assert engine_npz.PLAUSIBLE_ABS_MAX == addon.PLAUSIBLE_ABS_MAX
    assert engine_npz.FPS_RANGE == addon.FPS_RANGE


def _variant(tmp: Path, name: str, **changes) -> Path:
    with np.load(GOLDEN, allow_pickle=False) as z:
        data = {k: z[k] for k in z.files}
    for key, fn in changes.items():
        data[key] = fn(data[key])
    path = tmp / name
    np.savez(path, **data)
    return path


@pytest.mark.parametrize("name,changes,match", [
    ("zero.npz", {k: (lambda a: a[:0]) for k in ("exp", "scale", "t", "pitch", "yaw", "roll", "R", "coef")}
     | {"n_frames": lambda a: np.array(0, np.int32)}, "no frames"),
    ("huge.npz", {"exp": lambda a: a * np.float32(1e30)}, "plausible"),
    ("fps.npz", {"fps": lambda a: np.array(1e6, np.float32)}, "fps must be between"),
])
def test_both_readers_refuse_with_the_file_named(tmp_path: Path, name: str, changes, match: str) -> None:
    path = _variant(tmp_path, name, **changes)
    with pytest.raises(engine_npz.MotionFileError, match=match) as e1:
        engine_npz.load_motion(path)
    with pytest.raises(addon.MotionFileError, match=match) as e2:
        addon.load_motion(path)
    assert str(path) in str(e1.value) and str(path) in str(e2.value)


def test_text_file_named_npz_is_not_advised_to_load_unsafely(tmp_path: Path) -> None:
    path = tmp_path / "notes.npz"
    path.write_text("just some text\n" * 20)
    for reader, err in ((engine_npz.load_motion, engine_npz.MotionFileError), (addon.load_motion, addon.MotionFileError)):
        with pytest.raises(err) as info:
            reader(path)
        assert "allow_pickle" not in str(info.value) and str(path) in str(info.value)
