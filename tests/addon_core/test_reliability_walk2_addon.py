"""Issue #21 from the add-on's side: its warm worker (core/worker.py) against the real
``python -m engine serve``: hostile stdin lines do not stop the engine listening, an add-on request
whose output is its own input is refused with ``output_unwritable`` (the portrait unchanged), and
the next valid request is served by the same process."""
from __future__ import annotations

import hashlib
import shutil
import sys
from pathlib import Path

from joyvasa_blender.core import engine_client as ec
from joyvasa_blender.core.worker import EngineWorker

REPO = Path(__file__).resolve().parents[2]
PORTRAIT = REPO / "examples" / "portrait.jpg"


def test_addon_worker_survives_bad_lines_and_is_refused_overwriting_its_input(tmp_path: Path) -> None:
    image = tmp_path / "portrait.png"
    shutil.copyfile(PORTRAIT, image)
    before = hashlib.sha256(image.read_bytes()).hexdigest()
    env = ec.clean_env({"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "PYTHONIOENCODING": "utf-8:strict"})
    w = EngineWorker(sys.executable, REPO, env)
    try:
        w.start()
        assert w.send("[" * 100_000 + "]" * 100_000 + "\n")
        assert w.send('{"v":1,"type":"run","job":"n","command":"crop","args":{"scale":' + "7" * 5001 + "}}\n")
        events: list[dict] = []
        rc = w.submit("crop", {"image": str(image), "out": str(tmp_path / "." / "portrait.png"),
                               "crop": "none"}).run_sync(events.append, timeout=300)
        err = [e for e in events if e["type"] == "error"]
        assert rc == 1 and err and err[-1]["code"] == "output_unwritable", events
        assert "also an input" in err[-1]["message"]
        assert hashlib.sha256(image.read_bytes()).hexdigest() == before
        events = []
        rc = w.submit("crop", {"image": str(image), "out": str(tmp_path / "crop.png"), "crop": "none"}
                      ).run_sync(events.append, timeout=300)
        assert rc == 0 and (tmp_path / "crop.png").is_file(), events
        assert w.starts == 1 and w.alive()
    finally:
        assert w.stop() == 0


# -- the third walk (issue #28): rig presets are bounded, typed, listed when broken ------------------

import copy  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402

import pytest  # noqa: E402

from joyvasa_blender.core import retarget  # noqa: E402

PRESET = {"schema": "joyvasa.retarget", "version": 1, "name": "Studio",
          "head": {"bone": "head", "neck": "neck", "neck_share": 0.3},
          "channels": {"jawOpen": [{"shape_key": "JawOpen", "gain": 2}]}}


def _with(**changes) -> dict:
    d = copy.deepcopy(PRESET)
    for path, value in changes.items():
        obj = d
        keys = path.split("__")
        for k in keys[:-1]:
            obj = obj[int(k)] if isinstance(obj, list) else obj[k]
        obj[int(keys[-1]) if isinstance(obj, list) else keys[-1]] = value
    return d


@pytest.mark.parametrize("text,words", [
    (json.dumps(PRESET).replace('"gain": 2', '"gain": ' + "[" * 100_000 + "]" * 100_000), "nested"),
    (json.dumps(PRESET).replace('"gain": 2', '"gain": 1' + "0" * 5000), "number"),
    (json.dumps(PRESET).replace('"gain": 2', '"gain": 1e308'), "gain: must be a finite number between"),
    (json.dumps(PRESET).replace('"gain": 2', '"gain": Infinity'), "Infinity"),
    (json.dumps(PRESET).replace('"gain": 2', '"gain": NaN'), "NaN"),
    (json.dumps(_with(head__neck="head")), "head.neck: must be another bone"),
    (json.dumps(_with(version=True)), "version"),
])
def test_bad_preset_file_is_a_preset_error_and_listed_as_broken(text: str, words: str, tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text(text)
    with pytest.raises(retarget.PresetError, match="bad.json") as err:
        retarget.load_preset_file(tmp_path / "bad.json")
    assert words in str(err.value), str(err.value)
    presets, errors = retarget.list_presets(tmp_path)
    assert presets and len(errors) == 1 and "bad.json" in errors[0] and words in errors[0]


def test_preset_list_never_blocks_on_a_fifo_or_reads_dev_zero(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "x.json")                       # open() for reading would block every draw
    (tmp_path / "zero.json").symlink_to("/dev/zero")     # read() would never end
    (tmp_path / "huge.json").write_bytes(b" " * (retarget.MAX_PRESET_BYTES + 1))
    presets, errors = retarget.list_presets(tmp_path)
    assert presets and len(errors) == 3
    assert sum("not a regular file" in e for e in errors) == 2 and any("larger than a preset" in e for e in errors)


def test_name_map_gains_are_finite_and_bounded() -> None:
    arkit = retarget.find_preset("ARKit 52")
    for gain in ("1e308", "inf", "nan"):
        with pytest.raises(retarget.PresetError, match="gain"):
            retarget.with_name_map(arkit, f"jawOpen=jawOpen*{gain}")
    assert retarget.with_name_map(arkit, "jawOpen=jawOpen*2").channels["jawOpen"][0].gain == 2


def test_two_preset_names_on_one_file_name_are_refused(tmp_path: Path) -> None:
    first = retarget.parse_preset(_with(name="My Rig"))
    path = retarget.save_user_preset(first, tmp_path)
    with pytest.raises(retarget.PresetError, match="already holds the preset 'My Rig'"):
        retarget.save_user_preset(retarget.parse_preset(_with(name="My/Rig")), tmp_path)
    assert retarget.load_preset_file(path).name == "My Rig"
    assert retarget.save_user_preset(first, tmp_path) == path          # the same preset saves again


def test_controls_version_true_is_refused() -> None:
    from engine.motion.controls import ControlsError, parse_controls

    with pytest.raises(ControlsError, match="version"):
        parse_controls({"version": True})


# -- the add-on's motion reader is the engine's lazy, bounded one (issue #28 via the shared contract) --

import zipfile  # noqa: E402

import numpy as np  # noqa: E402

GOLDEN = REPO / "tests" / "contract" / "motion_v1.npz"


def _motion_with(path: Path, **values) -> Path:
    with np.load(GOLDEN, allow_pickle=False) as z:
        data = {k: z[k] for k in z.files}
    data.update(values)
    with open(path, "wb") as fh:
        np.savez(fh, **data)
    return path


@pytest.mark.parametrize("key,value", [
    ("audio_offset_s", np.float32(np.nan)), ("audio_offset_s", np.float32(np.inf)),
    ("audio_offset_s", np.float32(-1e9)), ("audio_duration_s", np.float32(4e5)),
    ("audio_duration_s", np.float32(-np.inf)), ("seed", np.float64(1e300)), ("steps", np.int64(2**40)),
])
def test_addon_reader_refuses_metadata_out_of_range(key: str, value, tmp_path: Path) -> None:
    """Apply Motion File: NaN/inf/-1e9 offsets and a 4e5 s duration raised IndexError/OverflowError or
    resampled to millions of frames; now one MotionFileError naming the key, before any resample."""
    from joyvasa_blender.core import motion_core

    path = _motion_with(tmp_path / "m.npz", **{key: value})
    with pytest.raises(motion_core.MotionFileError, match=key):
        motion_core.load_motion(path)


def test_addon_reader_never_inflates_an_unused_member(tmp_path: Path) -> None:
    import tracemalloc

    from joyvasa_blender.core import motion_core

    path = tmp_path / "m.npz"
    path.write_bytes(GOLDEN.read_bytes())
    big = 96 * 1024 * 1024                                     # deflates to ~100 kB
    import io

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (big // 4,)})
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("junk.npy", header.getvalue() + bytes(big))
    tracemalloc.start()
    m = motion_core.load_motion(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert m.n_frames > 0 and peak < 16 * 1024 * 1024, f"peak {peak / 2**20:.0f} MiB: the unused member was read"
