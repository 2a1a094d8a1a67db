"""Outputs never destroy what the user did not ask to replace (issue #13, defects 1 and 4).

A PNG sequence goes into a new folder, or into an existing one only by writing its own
``frame_NNNNN.png`` files; partial outputs carry one recognisable prefix and a new run of the
same output cleans what a killed run left behind.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from engine.errors import Cancelled, OutputError
from engine.fileio import PART_PREFIX, FramesOutput, atomic_path, clean_stale_partials
from engine.render.writers import PngSequenceWriter
from engine_testkit import engine_env, speech_clip

FRAME = np.zeros((8, 8, 3), np.uint8)


def _write_frames(folder: Path, n: int, **kw) -> None:
    with PngSequenceWriter(folder, **kw) as w:
        for _ in range(n):
            w.write(FRAME)


def test_existing_folder_with_foreign_files_is_refused_and_untouched(tmp_path: Path) -> None:
    folder = tmp_path / "p"
    folder.mkdir()
    (folder / "keep.blend").write_bytes(b"user work")
    with pytest.raises(OutputError, match="keep.blend"):
        _write_frames(folder, 3)
    assert sorted(p.name for p in folder.iterdir()) == ["keep.blend"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p"]


def test_overwrite_writes_frames_next_to_foreign_files_and_never_deletes_them(tmp_path: Path) -> None:
    folder = tmp_path / "p"
    folder.mkdir()
    (folder / "keep.blend").write_bytes(b"user work")
    (folder / "frame_00007.png").write_bytes(b"stale frame of ours")
    (folder / "frame_notes.txt").write_bytes(b"not a frame")
    _write_frames(folder, 3, overwrite=True)
    assert sorted(p.name for p in folder.iterdir()) == [
        "frame_00000.png", "frame_00001.png", "frame_00002.png", "frame_notes.txt", "keep.blend"]
    assert (folder / "keep.blend").read_bytes() == b"user work"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p"]


def test_folder_of_our_frames_is_refreshed_and_stale_frames_removed(tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    _write_frames(folder, 5)
    _write_frames(folder, 2)  # a shorter re-run: frames 2..4 are stale and go away
    assert sorted(p.name for p in folder.iterdir()) == ["frame_00000.png", "frame_00001.png"]


def test_empty_existing_folder_is_used(tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    _write_frames(folder, 2)
    assert len(list(folder.glob("frame_*.png"))) == 2


def test_cancel_leaves_existing_folder_as_it_was(tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    _write_frames(folder, 3)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    with pytest.raises(Cancelled):
        with PngSequenceWriter(folder) as w:
            w.write(np.full((8, 8, 3), 255, np.uint8))
            raise Cancelled("render", 1)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames"]


def test_frames_dir_that_is_a_file_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "frames"
    target.write_bytes(b"x")
    with pytest.raises(OutputError, match="is a file"):
        FramesOutput(target).check()
    assert target.read_bytes() == b"x"


def test_partials_carry_one_prefix(tmp_path: Path) -> None:
    target = tmp_path / "out.mp4"
    with atomic_path(target) as tmp:
        assert tmp.name.startswith(PART_PREFIX) and tmp.parent == tmp_path
        tmp.write_bytes(b"x")
    with PngSequenceWriter(tmp_path / "fr") as w:
        assert w._tmp is not None and w._tmp.name.startswith(PART_PREFIX)
        w.write(FRAME)


_KILLED = """
import os, sys
from pathlib import Path
from engine.fileio import atomic_path
from engine.render.writers import PngSequenceWriter
import numpy as np
with atomic_path(Path(sys.argv[1])) as tmp:
    tmp.write_bytes(b"partial")
    w = PngSequenceWriter(Path(sys.argv[2])).__enter__()
    w.write(np.zeros((4, 4, 3), np.uint8))
    os.kill(os.getpid(), 9)
"""


def test_partials_of_a_killed_run_are_cleaned_by_the_next_run(tmp_path: Path) -> None:
    repo = Path(__file__).resolve().parents[2]
    out, frames = tmp_path / "clip.mp4", tmp_path / "frames"
    (tmp_path / "notes.txt").write_text("user file")
    env = dict(os.environ, PYTHONPATH=str(repo))
    proc = subprocess.run([sys.executable, "-c", _KILLED, str(out), str(frames)], env=env, cwd=repo)
    assert proc.returncode == -9
    left = sorted(p.name for p in tmp_path.iterdir())
    assert len(left) == 3 and all(n.startswith(PART_PREFIX) for n in left if n != "notes.txt")
    removed = clean_stale_partials(out) + clean_stale_partials(frames)
    assert len(removed) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    # and the writers do it themselves at the start of a run
    subprocess.run([sys.executable, "-c", _KILLED, str(out), str(frames)], env=env, cwd=repo)
    with atomic_path(out) as tmp:
        tmp.write_bytes(b"ok")
    _write_frames(frames, 1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "frames", "notes.txt"]


def test_legacy_partials_of_older_versions_are_cleaned(tmp_path: Path) -> None:
    out = tmp_path / "clip.mp4"
    (tmp_path / ".clip.ab12_x9z.part.mp4").write_bytes(b"old partial")
    (tmp_path / ".frames.part-k2j4h5g6").mkdir()
    (tmp_path / ".clip.mp4.bak").write_bytes(b"not ours")
    clean_stale_partials(out)
    clean_stale_partials(tmp_path / "frames")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".clip.mp4.bak"]


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)


def test_partials_of_a_live_run_or_another_machine_are_kept(tmp_path: Path) -> None:
    from engine.fileio import _host

    out = tmp_path / "clip.mp4"
    live = tmp_path / f"{PART_PREFIX}clip.mp4.{_host()}.{os.getppid()}.abcd1234.mp4"
    live.write_bytes(b"another run is writing this")
    elsewhere = tmp_path / f"{PART_PREFIX}clip.mp4.some-other-machine.{_dead_pid()}.abcd1234.mp4"
    elsewhere.write_bytes(b"a farm node writes this to the shared folder")
    clean_stale_partials(out)
    assert live.exists() and elsewhere.exists()
    day_old = time.time() - 2 * 24 * 3600
    os.utime(elsewhere, (day_old, day_old))
    assert clean_stale_partials(out) == [elsewhere]


def test_stale_partials_of_other_outputs_in_the_folder_are_cleaned(tmp_path: Path) -> None:
    """The add-on names renders by time: a partial killed at 10:00 must go when 10:05 renders."""
    from engine.fileio import _host

    old = tmp_path / f"{PART_PREFIX}portrait_seed0_20261127-100000.mp4.{_host()}.{_dead_pid()}.x1y2z3.mp4"
    old.write_bytes(b"killed")
    (tmp_path / ".hidden-user-file").write_bytes(b"keep")
    with atomic_path(tmp_path / "portrait_seed0_20261127-100500.mp4") as tmp:
        tmp.write_bytes(b"new")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".hidden-user-file", "portrait_seed0_20261127-100500.mp4"]


# -- end to end through ``python -m engine animate`` ------------------------------------------

PORTRAIT = Path(__file__).resolve().parents[2] / "examples" / "portrait.jpg"
SPEECH = Path(__file__).resolve().parents[2] / "examples" / "speech.wav"


def _animate(*args: str) -> tuple[int, list[dict]]:
    import json

    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "-m", "engine", "animate", *args, "--progress", "json"],
                          capture_output=True, text=True, timeout=300, env=engine_env(), cwd=repo,
                          stdin=subprocess.DEVNULL)
    return proc.returncode, [json.loads(x) for x in proc.stdout.splitlines() if x.strip()]


def test_animate_frames_dir_never_deletes_user_files(tiny_weights: Path, tmp_path: Path) -> None:
    """Defect 1 repro: ``mkdir p; touch p/keep.blend; animate --frames-dir p`` deleted keep.blend."""
    audio = speech_clip(tmp_path, 0.2)
    p = tmp_path / "p"
    p.mkdir()
    (p / "keep.blend").write_bytes(b"hours of work")
    base = ["--image", str(PORTRAIT), "--audio", str(audio), "--weights", str(tiny_weights),
            "--frames-dir", str(p), "--batch", "4", "--crop", "none"]
    rc, events = _animate(*base)
    assert (p / "keep.blend").read_bytes() == b"hours of work"
    assert rc == 1 and events[0]["type"] == "hello"
    assert events[-1]["type"] == "error" and events[-1]["code"] == "output_unwritable"
    assert "keep.blend" in events[-1]["message"] and "--overwrite" in events[-1]["message"]
    assert not [e for e in events if e["type"] == "progress"], "refused before any work"
    rc, events = _animate(*base, "--overwrite")
    assert rc == 0, events[-1]
    assert (p / "keep.blend").read_bytes() == b"hours of work"
    assert len(list(p.glob("frame_*.png"))) == 5
    assert sorted(x.name for x in tmp_path.iterdir()) == ["clip.wav", "p"]


def test_sighup_cancels_like_sigterm_and_leaves_nothing(tiny_weights: Path, tmp_path: Path) -> None:
    import json
    import signal

    repo = Path(__file__).resolve().parents[2]
    audio = speech_clip(tmp_path, 2.0)
    out = tmp_path / "out"
    out.mkdir()
    cmd = [sys.executable, "-m", "engine", "animate", "--image", str(PORTRAIT), "--audio", str(audio),
           "--weights", str(tiny_weights), "--out", str(out / "c.mp4"), "--frames-dir", str(out / "fr"),
           "--batch", "1", "--crop", "none", "--progress", "json"]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, env=engine_env(), cwd=repo)
    events = []
    assert proc.stdout is not None
    for line in proc.stdout:
        events.append(json.loads(line))
        if events[-1]["type"] == "progress" and events[-1]["stage"] == "render" and events[-1]["done"] > 0:
            proc.send_signal(signal.SIGHUP)
            break
    events += [json.loads(x) for x in proc.stdout if x.strip()]
    assert proc.wait(timeout=60) == 130
    assert events[-1]["type"] == "cancelled"
    assert list(out.iterdir()) == []
