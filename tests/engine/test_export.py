"""``engine export``: Live Link Face CSV, LivePortrait template pickle and BVH, read back by
independent readers (csv module, a restricted unpickler, the ``bvh`` package)."""
from __future__ import annotations

import csv
import io
import json
import pickle
import re
from pathlib import Path

import numpy as np
import pytest

from engine.cli import main
from engine.motion.npz import load_motion, save_motion

GOLDEN = Path(__file__).resolve().parents[1] / "contract" / "motion_v1.npz"
LEAD = 2   # frames before audio time 0 (audio_offset_s = -0.08 at 25 fps)

#: the header line of a Live Link Face take CSV, written out independently of the engine
LLF_HEADER = (
    "Timecode,BlendShapeCount,EyeBlinkLeft,EyeLookDownLeft,EyeLookInLeft,EyeLookOutLeft,EyeLookUpLeft,"
    "EyeSquintLeft,EyeWideLeft,EyeBlinkRight,EyeLookDownRight,EyeLookInRight,EyeLookOutRight,EyeLookUpRight,"
    "EyeSquintRight,EyeWideRight,JawForward,JawRight,JawLeft,JawOpen,MouthClose,MouthFunnel,MouthPucker,"
    "MouthRight,MouthLeft,MouthSmileLeft,MouthSmileRight,MouthFrownLeft,MouthFrownRight,MouthDimpleLeft,"
    "MouthDimpleRight,MouthStretchLeft,MouthStretchRight,MouthRollLower,MouthRollUpper,MouthShrugLower,"
    "MouthShrugUpper,MouthPressLeft,MouthPressRight,MouthLowerDownLeft,MouthLowerDownRight,MouthUpperUpLeft,"
    "MouthUpperUpRight,BrowDownLeft,BrowDownRight,BrowInnerUp,BrowOuterUpLeft,BrowOuterUpRight,CheekPuff,"
    "CheekSquintLeft,CheekSquintRight,NoseSneerLeft,NoseSneerRight,TongueOut,HeadYaw,HeadPitch,HeadRoll,"
    "LeftEyeYaw,LeftEyePitch,LeftEyeRoll,RightEyeYaw,RightEyePitch,RightEyeRoll").split(",")


@pytest.fixture()
def motion_file(tmp_path: Path) -> Path:
    """The golden motion (jaw, blink, smile, head turn) with upstream's 2 lead frames of silence."""
    m = load_motion(GOLDEN)
    m.meta.update(audio_offset_s=-0.08, audio_duration_s=(m.n_frames - LEAD) / m.fps)
    return save_motion(tmp_path / "take.npz", m)


def export(capsys, motion: Path, fmt: str, out: Path, *extra: str) -> tuple[int, list[dict]]:
    code = main(["export", "--motion", str(motion), "--format", fmt, "--out", str(out), "--progress", "json", *extra])
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    return code, events


def test_csv_columns(tmp_path: Path, motion_file: Path, capsys) -> None:
    out = tmp_path / "take.csv"
    code, events = export(capsys, motion_file, "livelinkface-csv", out)
    assert code == 0 and events[-1]["type"] == "done" and events[-1]["outputs"]["motion_export"] == str(out)
    m = load_motion(motion_file)
    with open(out, newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == LLF_HEADER
    body = rows[1:]
    assert len(body) == m.n_frames - LEAD                                 # audio timeline, as long as the audio
    for k, row in enumerate(body):
        assert len(row) == len(LLF_HEADER)
        assert re.fullmatch(r"\d\d:\d\d:\d\d:\d\d\.\d{3}", row[0])
        h, mi, s, rest = row[0].split(":")
        assert (int(h) * 3600 + int(mi) * 60 + int(s)) * 25 + int(rest.split(".")[0]) == k
        assert row[1] == "61"
    col = {name: np.array([float(r[i]) for r in body]) for i, name in enumerate(LLF_HEADER) if i >= 2}
    for name in LLF_HEADER[2:54]:
        assert np.all((col[name] >= 0) & (col[name] <= 1)), name
    # the golden take opens the jaw, blinks and smiles: those columns move, unrelated ones stay 0
    assert col["JawOpen"].max() > 0.3 and col["EyeBlinkLeft"].max() > 0.3 and col["MouthSmileLeft"].max() > 0.3
    assert np.array_equal(col["MouthSmileLeft"], col["MouthSmileRight"])
    for name in ("TongueOut", "CheekPuff", "JawForward", "LeftEyeYaw", "RightEyePitch"):
        assert not col[name].any(), name
    # head rotation: radians of the file's angles, frame k + LEAD
    np.testing.assert_allclose(col["HeadYaw"], np.radians(m.yaw[LEAD:]), atol=2e-6)
    np.testing.assert_allclose(col["HeadPitch"], np.radians(m.pitch[LEAD:]), atol=2e-6)
    np.testing.assert_allclose(col["HeadRoll"], np.radians(m.roll[LEAD:]), atol=2e-6)


class ArraysOnly(pickle.Unpickler):
    """Admits numpy arrays and built-ins only: a template that needs anything else fails."""
    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module: str, name: str):  # type: ignore[no-untyped-def]
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed")
        return super().find_class(module, name)


@pytest.mark.parametrize("upstream", [False, True])
def test_lp_pkl_equals_motion(tmp_path: Path, motion_file: Path, capsys, upstream: bool) -> None:
    out = tmp_path / "take.pkl"
    code, _ = export(capsys, motion_file, "lp-pkl", out, *(["--upstream-timing"] if upstream else []))
    assert code == 0
    d = ArraysOnly(io.BytesIO(out.read_bytes())).load()
    m = load_motion(motion_file)
    first = 0 if upstream else LEAD
    n = m.n_frames - first
    assert set(d) == {"n_frames", "output_fps", "motion", "c_eyes_lst", "c_lip_lst"}
    assert type(d["n_frames"]) is int and d["n_frames"] == n and len(d["motion"]) == n
    assert type(d["output_fps"]) is int and d["output_fps"] == 25
    shapes = {"scale": (1, 1), "R": (1, 3, 3), "exp": (1, 21, 3), "t": (1, 3)}
    for i, item in enumerate(d["motion"]):
        assert set(item) == set(shapes)
        for key, shape in shapes.items():
            assert item[key].shape == shape and item[key].dtype == np.float32, key
        src = first + i
        np.testing.assert_array_equal(item["exp"][0], m.exp[src])
        np.testing.assert_array_equal(item["t"][0], m.t[src])
        np.testing.assert_array_equal(item["scale"][0, 0], m.scale[src])
        np.testing.assert_allclose(item["R"][0], m.R[src], atol=1e-6)
    eyes = np.concatenate(d["c_eyes_lst"])
    lips = np.concatenate(d["c_lip_lst"])
    assert eyes.shape == (n, 2) and lips.shape == (n, 1) and eyes.dtype == lips.dtype == np.float32
    assert eyes.min() < 0.8 * eyes.max()     # the golden take blinks: the eye-open ratio dips


def bvh_rot(angles_deg: dict[str, float], order: list[str]) -> np.ndarray:
    """Rotation of a BVH joint: channels in file order, R = R_first @ R_second @ R_third."""
    out = np.eye(3)
    for ch in order:
        a = np.radians(angles_deg[ch])
        c, s = np.cos(a), np.sin(a)
        r = {"Xrotation": [[1, 0, 0], [0, c, -s], [0, s, c]], "Yrotation": [[c, 0, s], [0, 1, 0], [-s, 0, c]],
             "Zrotation": [[c, -s, 0], [s, c, 0], [0, 0, 1]]}[ch]
        out = out @ np.array(r)
    return out


@pytest.mark.parametrize("fps", [None, 30.0])
def test_bvh_parsed_by_independent_reader(tmp_path: Path, motion_file: Path, capsys, fps) -> None:
    from bvh import Bvh

    out = tmp_path / "take.bvh"
    code, _ = export(capsys, motion_file, "bvh", out, *(["--fps", str(fps)] if fps else []))
    assert code == 0
    doc = Bvh(out.read_text())
    assert doc.get_joints_names() == ["Root", "Head"]
    rate = fps or 25.0
    m = load_motion(motion_file)
    duration = (m.n_frames - LEAD) / 25.0
    assert doc.nframes == int(np.floor(duration * rate + 0.5))
    assert abs(doc.frame_time - 1 / rate) < 1e-7
    order = doc.joint_channels("Head")
    assert sorted(order) == ["Xrotation", "Yrotation", "Zrotation"]
    flip = np.diag([1.0, -1.0, -1.0])              # LivePortrait camera (y down, z away) -> BVH (y up, z to viewer)
    for k in range(doc.nframes):
        angles = dict(zip(order, doc.frame_joint_channels(k, "Head", order)))
        got = bvh_rot(angles, order)
        src = k * 25.0 / rate + LEAD                 # source frame on the audio timeline
        if float(src).is_integer():
            M = m.R[int(src)].astype(np.float64).T   # file R is row-vector: M = R^T
            np.testing.assert_allclose(got, flip @ M @ flip, atol=1e-5)
        assert doc.frame_joint_channels(k, "Root", ["Xposition", "Yposition", "Zposition"]) == [0.0, 0.0, 0.0]


def test_bad_requests_write_nothing(tmp_path: Path, motion_file: Path, capsys) -> None:
    cases = [
        (motion_file, "bvh", tmp_path / "take.csv", []),                    # suffix does not match the format
        (tmp_path / "missing.npz", "lp-pkl", tmp_path / "x.pkl", []),      # no motion file
        (GOLDEN.parent / "motion_ok.jsonl", "bvh", tmp_path / "x.bvh", []),  # not a motion file
        (motion_file, "livelinkface-csv", tmp_path / "x.csv", ["--fps", "0"]),
    ]
    for motion, fmt, out, extra in cases:
        code, events = export(capsys, motion, fmt, out, *extra)
        assert code == 1
        assert events[-1]["type"] == "error" and events[-1]["code"] == "bad_request", events[-1]
        assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["take.npz"]     # no temp files left


def test_exports_use_the_edited_motion_not_the_raw(tmp_path: Path, capsys) -> None:
    """A motion with controls keeps the sampled motion in raw_* and the edited one in the usual
    keys: every export reads the edited keys (what the add-on keys and animate renders)."""
    import dataclasses

    from bvh import Bvh

    m = load_motion(GOLDEN)
    raw = {"exp": m.exp.copy(), "pitch": m.pitch.copy(), "yaw": m.yaw.copy(), "roll": m.roll.copy(),
           "t": m.t.copy(), "scale": m.scale.copy(), "R": m.R.copy()}
    zero = np.zeros_like(m.yaw)
    edited = dataclasses.replace(m, pitch=zero, yaw=zero, roll=zero,                  # head pose strength 0
                                 R=np.repeat(np.eye(3, dtype=np.float32)[None], m.n_frames, 0),
                                 raw=raw, controls='{"v": 1}')
    path = save_motion(tmp_path / "edited.npz", edited)
    assert load_motion(path).raw is not None
    assert export(capsys, path, "livelinkface-csv", tmp_path / "e.csv")[0] == 0
    with open(tmp_path / "e.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert not any(float(r[rows[0].index("HeadYaw")]) for r in rows[1:])
    assert export(capsys, path, "bvh", tmp_path / "e.bvh")[0] == 0
    doc = Bvh((tmp_path / "e.bvh").read_text())
    assert not any(any(doc.frame_joint_channels(k, "Head", ["Zrotation", "Yrotation", "Xrotation"]))
                   for k in range(doc.nframes))
    assert export(capsys, path, "lp-pkl", tmp_path / "e.pkl")[0] == 0
    d = ArraysOnly(io.BytesIO((tmp_path / "e.pkl").read_bytes())).load()
    assert all(np.allclose(item["R"][0], np.eye(3)) for item in d["motion"])
    assert max(abs(float(y)) for y in m.yaw) > 5          # the raw take did turn the head
