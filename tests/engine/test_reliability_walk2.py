"""The second bad-input walk (issue #21), the cases that are not one command line: the warm
worker and the one-shot cancel listener after hostile stdin lines, batch ids and shared outputs,
frames folders swapped all or nothing, immutable outputs, long legal names, the lp-pkl export in
a numpy-1.x interpreter, lazy motion reading and command-specific ``oom`` advice.

Each asserts the exit code / error code, that the user's files are byte-identical afterwards,
and (worker) that the next valid request is still answered. The single-command cases are rows of
tests/engine/test_reliability_matrix.py (``WALK_2``).
"""
from __future__ import annotations

import glob
import json
import os
import pickle
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from engine.errors import BadRequest, OutputError, classify_failure
from engine_testkit import engine_env, speech_clip

REPO = Path(__file__).resolve().parents[2]
GOLDEN_MOTION = REPO / "tests" / "contract" / "motion_v1.npz"
NESTED = b"[" * 100_000 + b"]" * 100_000


def _events(text: str) -> list[dict]:
    return [json.loads(x) for x in text.splitlines() if x.strip()]


# -- the warm worker never stops listening ------------------------------------------------------

def test_worker_answers_every_hostile_line_and_then_the_next_request() -> None:
    """Nested 100 000 deep, a 5001-digit integer, non-UTF-8 bytes (strict UTF-8 stdin, the desktop
    case), a line over the size cap: one non-fatal bad_request each, then the release is served."""
    from engine.contract.protocol import MAX_LINE_BYTES

    env = {**engine_env(), "PYTHONIOENCODING": "utf-8:strict", "LC_ALL": "C.UTF-8", "PYTHONUTF8": "1"}
    lines = [NESTED,
             b'{"v":1,"type":"run","job":"big","command":"crop","args":{"scale":' + b"9" * 5001 + b"}}",
             b'{"v":1,"type":"run","job":"enc","command":"crop","args":{"image":"\xff\xfe.png"}}',
             b"\xc3\x28 not utf-8 at all",
             b'{"v":1,"type":"cancel","job":"' + b"x" * (MAX_LINE_BYTES + 10) + b'"}',
             b'{"v":1,"type":"release","job":"after"}']
    proc = subprocess.run([sys.executable, "-m", "engine", "serve"], input=b"\n".join(lines) + b"\n",
                          capture_output=True, env=env, cwd=REPO, timeout=300)
    events = _events(proc.stdout.decode())
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    errors = [e for e in events if e["type"] == "error"]
    assert [e["code"] for e in errors] == ["bad_request"] * 5, errors
    assert all(e["fatal"] is False for e in errors)
    assert "nested" in errors[0]["message"] and "number" in errors[1]["message"]
    assert "UTF-8" in errors[2]["message"] and "UTF-8" in errors[3]["message"]
    assert "longer than" in errors[4]["message"]
    done = [e for e in events if e["type"] == "done"]
    assert len(done) == 1 and done[0]["job"] == "after", events
    assert "Traceback" not in proc.stderr.decode()


def test_worker_reader_survives_a_callback_that_raises() -> None:
    """The one reader function keeps going when its consumer fails (e.g. a closed stdout)."""
    import io

    from engine.stdin_requests import read_requests

    got: list[str] = []

    def on_request(req: dict) -> None:
        got.append(req["job"])
        if req["job"] == "1":
            raise OSError("stdout closed")

    stream = io.BytesIO(b'{"v":1,"type":"release","job":"1"}\n' + NESTED + b'\n{"v":1,"type":"release","job":"2"}\n')
    read_requests(stream, on_request, lambda message, job: got.append("bad"))
    assert got == ["1", "bad", "2"]


def test_one_shot_cancel_listener_survives_hostile_lines(tiny_weights: Path, tmp_path: Path) -> None:
    """After junk on stdin a one-shot run still obeys ``cancel`` (its listener used to die)."""
    clip = speech_clip(tmp_path, 2.0)
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "engine", "motion", "--audio", str(clip), "--out",
                             str(out / "m.npz"), "--weights", str(tiny_weights), "--sampler", "ancestral",
                             "--progress", "json"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, env={**engine_env(), "PYTHONIOENCODING": "utf-8:strict"},
                            cwd=REPO)
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(NESTED + b"\n\xff\xfe\xfd\n" + b'{"v":1,"type":"x","n":' + b"1" * 5001 + b"}\n")
    proc.stdin.flush()
    events = []
    for line in proc.stdout:
        events.append(json.loads(line))
        if events[-1]["type"] == "progress" and events[-1]["stage"] in ("audio", "motion"):
            proc.stdin.write(b'{"v":1,"type":"cancel"}\n')
            proc.stdin.flush()
            break
    events += _events(proc.stdout.read().decode())
    assert proc.wait(timeout=120) == 130, events[-3:]
    assert events[-1]["type"] == "cancelled"
    assert list(out.iterdir()) == []


# -- batch: ids are never paths, two jobs never share an output -----------------------------------

def _batch(capsys, jobs_file: Path) -> tuple[int, list[dict]]:
    from engine.cli import main

    capsys.readouterr()
    rc = main(["batch", str(jobs_file), "--progress", "json"])
    return rc, _events(capsys.readouterr().out)


@pytest.mark.parametrize("job_id", ["../../victim", "/tmp/victim", "a/b", "..", "CON", ".hidden", "x" * 300])
def test_batch_job_id_that_is_a_path_is_refused(job_id: str, capsys, tmp_path: Path) -> None:
    victim = tmp_path / "victim.done.json"
    victim.write_bytes(b"the user's file")
    jobs = tmp_path / "a" / "jobs.json"
    jobs.parent.mkdir()
    jobs.write_text(json.dumps([{"id": job_id, "command": "motion", "audio": "missing.wav", "out": "m.npz"}]))
    rc, events = _batch(capsys, jobs)
    assert rc == 1 and events[0]["type"] == "hello" and events[-1]["type"] == "error", events
    assert events[-1]["code"] == "bad_request" and "job id" in events[-1]["message"], events[-1]
    assert victim.read_bytes() == b"the user's file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "victim.done.json"]
    assert sorted(p.name for p in jobs.parent.iterdir()) == ["jobs.json"]  # no state folder, nothing ran


@pytest.mark.parametrize("second", [
    {"command": "motion", "audio": "b.wav", "out": "sub/../take.npz"},
    {"command": "animate", "image": "p.png", "audio": "b.wav", "out": "v.mp4", "save_motion": "sub/../take.npz"},
], ids=["same-out", "save-motion-is-other-out"])
def test_batch_two_jobs_with_one_output_are_refused_before_any_job(second: dict, capsys, tmp_path: Path) -> None:
    jobs = tmp_path / "jobs.json"
    (tmp_path / "sub").mkdir()
    jobs.write_text(json.dumps([{"id": "one", "command": "motion", "audio": "a.wav", "out": "take.npz"},
                                {"id": "two", **second}]))
    rc, events = _batch(capsys, jobs)
    assert rc == 1 and events[0]["type"] == "hello"
    err = events[-1]
    assert err["code"] == "bad_request" and "'one'" in err["message"] and "'two'" in err["message"], err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["jobs.json", "sub"]


def test_batch_nested_job_file_is_bad_request_with_hello(capsys, tmp_path: Path) -> None:
    jobs = tmp_path / "jobs.json"
    jobs.write_bytes(b'{"jobs": ' + NESTED + b"}")
    rc, events = _batch(capsys, jobs)
    assert rc == 1 and [e["type"] for e in events] == ["hello", "error"], events
    assert events[-1]["code"] == "bad_request" and "nested" in events[-1]["message"]


# -- frames folders: staged and swapped, never mixed -------------------------------------------

FRAME = np.zeros((8, 8, 3), np.uint8)


def _old_frames(folder: Path, n: int) -> dict[str, bytes]:
    folder.mkdir(parents=True, exist_ok=True)
    old = {f"frame_{i:05d}.png": f"old frame {i}".encode() for i in range(n)}
    for name, data in old.items():
        (folder / name).write_bytes(data)
    (folder / "notes.txt").write_bytes(b"user notes")
    return {**old, "notes.txt": b"user notes"}


def _folder_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_frames_swap_failure_leaves_the_folder_exactly_as_it_was(monkeypatch, tmp_path: Path) -> None:
    """A rename failing half way through the swap (e.g. an immutable frame) undoes every move."""
    from engine import fileio
    from engine.render.writers import PngSequenceWriter

    folder = tmp_path / "frames"
    before = _old_frames(folder, 4)
    real_replace = os.replace
    calls = {"n": 0}

    def flaky(src, dst):  # type: ignore[no-untyped-def]
        if Path(dst).parent == folder and Path(src).parent != folder:  # moving a new frame in
            calls["n"] += 1
            if calls["n"] == 3:
                raise PermissionError(1, "Operation not permitted", str(dst))
        return real_replace(src, dst)

    monkeypatch.setattr(fileio.os, "replace", flaky)
    with pytest.raises(OutputError, match="left exactly as it was"):
        with PngSequenceWriter(folder, overwrite=True) as w:
            for _ in range(6):
                w.write(FRAME)
    assert _folder_bytes(folder) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames"]  # no staging folder left


def test_frames_swap_success_replaces_old_frames_and_keeps_user_files(tmp_path: Path) -> None:
    from engine.render.writers import PngSequenceWriter

    folder = tmp_path / "frames"
    _old_frames(folder, 5)
    with PngSequenceWriter(folder, overwrite=True) as w:
        for _ in range(2):
            w.write(FRAME)
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["frame_00000.png", "frame_00001.png", "notes.txt"]
    assert (folder / "frame_00000.png").read_bytes().startswith(b"\x89PNG")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames"]


def _chattr(path: Path, flag: str) -> bool:
    if shutil.which("chattr") is None:
        return False
    return subprocess.run(["chattr", flag, str(path)], capture_output=True).returncode == 0


@pytest.fixture
def immutable(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Marks files immutable (chattr +i) and always clears the flag again."""
    marked: list[Path] = []

    def mark(path: Path) -> Path:
        if not _chattr(path, "+i"):
            pytest.skip("chattr +i is not available here (needs root and ext4/xfs/btrfs)")
        marked.append(path)
        return path

    yield mark
    for path in marked:
        _chattr(path, "-i")


def _run_cli(capsys, argv: list[str]) -> tuple[int, list[dict]]:
    import signal

    from engine.cli import main

    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    capsys.readouterr()
    try:
        rc = main([*argv, "--progress", "json"])
    finally:
        for s, h in handlers.items():
            signal.signal(s, h)
    return rc, _events(capsys.readouterr().out)


def test_immutable_old_frame_is_refused_before_work(capsys, immutable, tiny_weights: Path, tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    before = _old_frames(folder, 3)
    immutable(folder / "frame_00001.png")
    clip = speech_clip(tmp_path, 0.3)
    rc, events = _run_cli(capsys, ["animate", "--image", str(REPO / "examples/portrait.jpg"), "--audio", str(clip),
                                   "--weights", str(tiny_weights), "--frames-dir", str(folder), "--overwrite",
                                   "--crop", "none"])
    assert rc == 1 and events[-1]["code"] == "output_unwritable", events[-1]
    assert "frame_00001.png" in events[-1]["message"]
    assert not [e for e in events if e["type"] == "progress"]
    assert _folder_bytes(folder) == before


def test_immutable_existing_output_is_refused_before_work(capsys, immutable, tiny_weights: Path,
                                                          tmp_path: Path) -> None:
    out = tmp_path / "m.npz"
    out.write_bytes(b"yesterday's motion")
    immutable(out)
    clip = speech_clip(tmp_path, 0.3)
    rc, events = _run_cli(capsys, ["motion", "--audio", str(clip), "--out", str(out), "--weights", str(tiny_weights)])
    assert rc == 1 and events[-1]["code"] == "output_unwritable", events[-1]
    assert "cannot be replaced" in events[-1]["message"] and str(out) in events[-1]["message"]
    assert not [e for e in events if e["type"] == "progress"]
    assert out.read_bytes() == b"yesterday's motion"


def test_a_legal_250_byte_output_name_gets_a_legal_temp_name(capsys, tiny_weights: Path, tmp_path: Path) -> None:
    """The temp name embeds the output's name: it is shortened so a 250-byte name still works."""
    out = tmp_path / ("a" * 246 + ".npz")
    clip = speech_clip(tmp_path, 0.3)
    rc, events = _run_cli(capsys, ["motion", "--audio", str(clip), "--out", str(out), "--weights", str(tiny_weights)])
    assert rc == 0, events[-1]
    assert out.is_file() and sorted(p.name for p in tmp_path.iterdir()) == sorted([out.name, clip.name])


# -- exports every client reads -----------------------------------------------------------------

def _numpy1_python() -> str | None:
    for py in sorted(glob.glob(str(REPO / ".venvs" / "bpy-*" / "bin" / "python"))):
        cp = subprocess.run([py, "-c", "import numpy; print(numpy.__version__)"], capture_output=True, text=True)
        if cp.returncode == 0 and cp.stdout.strip().startswith("1."):
            return py
    return None


def test_lp_pkl_loads_under_numpy_1_and_2(capsys, tmp_path: Path) -> None:
    out = tmp_path / "take.pkl"
    rc, events = _run_cli(capsys, ["export", "--motion", str(GOLDEN_MOTION), "--format", "lp-pkl", "--out", str(out)])
    assert rc == 0, events[-1]
    assert b"numpy._core" not in out.read_bytes()  # the module numpy 1.x lacks
    data = pickle.loads(out.read_bytes())          # numpy 2 (this interpreter)
    assert data["motion"][0]["exp"].shape == (1, 21, 3)
    py = _numpy1_python()
    if py is None:
        pytest.skip("no numpy-1.x interpreter under .venvs/ (tools/setup_bpy_envs.sh makes the bpy 4.x ones)")
    code = ("import pickle, sys, numpy; d = pickle.load(open(sys.argv[1], 'rb')); "
            "assert numpy.__version__.startswith('1.'); "
            "print(d['n_frames'], d['output_fps'], 'x'.join(map(str, d['motion'][-1]['R'].shape)), d['c_lip_lst'][0].dtype)")
    cp = subprocess.run([py, "-c", code, str(out)], capture_output=True, text=True, timeout=120)
    assert cp.returncode == 0, cp.stderr[-1500:]
    n, fps, shape, dtype = cp.stdout.split()
    assert int(n) == data["n_frames"] and int(fps) == data["output_fps"] and shape == "1x3x3" and dtype == "float32"


def test_lp_pkl_with_fractional_fps_lasts_as_long_as_the_audio(capsys, tmp_path: Path) -> None:
    from engine.motion.npz import load_motion

    m = load_motion(GOLDEN_MOTION)
    duration = float(m.meta["audio_duration_s"])
    out = tmp_path / "take.pkl"
    rc, events = _run_cli(capsys, ["export", "--motion", str(GOLDEN_MOTION), "--format", "lp-pkl", "--out", str(out),
                                   "--fps", "12.5"])
    assert rc == 0, events[-1]
    data = pickle.loads(out.read_bytes())
    assert isinstance(data["output_fps"], int) and data["output_fps"] in (12, 13)
    assert abs(data["n_frames"] / data["output_fps"] - duration) <= 0.5 / data["output_fps"] + 1e-6


# -- motion files are read lazily and typed -------------------------------------------------------

def _append_member(path: Path, name: str, payload: bytes, compress: bool = True) -> None:
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED) as z:
        z.writestr(name, payload)


def _npy_header(shape: tuple[int, ...], dtype: str = "<f4") -> bytes:
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def test_an_unused_key_that_inflates_is_never_read(tmp_path: Path) -> None:
    import tracemalloc

    from engine.motion.npz import load_motion

    path = tmp_path / "m.npz"
    shutil.copyfile(GOLDEN_MOTION, path)
    big = 96 * 1024 * 1024  # deflates to ~100 kB, inflates to 96 MiB
    _append_member(path, "junk.npy", _npy_header((big // 4,)) + bytes(big))
    assert path.stat().st_size < 2 * 1024 * 1024
    tracemalloc.start()
    t0 = time.perf_counter()
    m = load_motion(path)
    elapsed = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert m.n_frames > 0
    assert peak < 16 * 1024 * 1024, f"peak {peak / 2**20:.0f} MiB: the unused key was read"
    print(f"load_motion with a 96 MiB unused key: {elapsed * 1000:.0f} ms, peak {peak / 2**20:.1f} MiB")


def test_a_damaged_header_is_bad_request_without_oom_advice(capsys, tmp_path: Path) -> None:
    """A used key whose header claims 10^12 values: bad_request naming file and key (was oom
    with --batch/--dtype advice that ``edit`` does not have)."""
    with np.load(GOLDEN_MOTION, allow_pickle=False) as z:
        data = {k: z[k] for k in z.files if k != "yaw"}
    path = tmp_path / "m.npz"
    with open(path, "wb") as fh:
        np.savez(fh, **data)
    _append_member(path, "yaw.npy", _npy_header((10**6, 10**6)) + bytes(64), compress=False)
    controls = tmp_path / "c.json"
    controls.write_text("{}")
    rc, events = _run_cli(capsys, ["edit", "--motion", str(path), "--controls", str(controls),
                                   "--out", str(tmp_path / "e.npz")])
    err = events[-1]
    assert rc == 1 and err["code"] == "bad_request", err
    assert "yaw" in err["message"] and "m.npz" in err["message"] and "--batch" not in err["message"]
    assert not (tmp_path / "e.npz").exists()


@pytest.mark.parametrize("command,has_batch", [("animate", True), ("motion", False), ("edit", False),
                                               ("export", False)])
def test_oom_advice_names_only_the_commands_options(command: str, has_batch: bool) -> None:
    coded = classify_failure(MemoryError(), command)
    assert coded is not None and coded.code == "oom"
    assert ("--batch" in str(coded)) is has_batch
    assert ("--dtype" in str(coded)) is (command in ("animate", "motion"))


# -- the two functions every path and name goes through ---------------------------------------------

def test_same_file_sees_through_dotdot_symlinks_and_hard_links(tmp_path: Path) -> None:
    from engine.pathguard import same_file

    (tmp_path / "a").mkdir()
    f = tmp_path / "a" / "p.png"
    f.write_bytes(b"x")
    (tmp_path / "link").symlink_to(tmp_path / "a", target_is_directory=True)
    os.link(f, tmp_path / "hard.png")
    assert same_file(f, tmp_path / "a" / ".." / "a" / "p.png")
    assert same_file(f, tmp_path / "link" / "p.png")
    assert same_file(f, tmp_path / "hard.png")
    assert same_file(tmp_path / "new.mp4", tmp_path / "link" / ".." / "new.mp4")  # neither exists yet
    assert not same_file(f, tmp_path / "a" / "q.png")


@pytest.mark.parametrize("name", ["", "..", ".", "a/b", "a\\b", "../x", "nul", "COM1.json", "x.", " x", "a\x00b",
                                  "a:b", ".git", "é" * 130])
def test_safe_name_refuses_what_is_not_one_plain_file_name(name: str) -> None:
    from engine.pathguard import safe_name

    with pytest.raises(BadRequest, match="cannot be used as a file name"):
        safe_name(name, "job id", ".done.json")


def test_safe_name_keeps_ordinary_ids() -> None:
    from engine.pathguard import safe_name

    assert safe_name("take-07_v2.final", "job id", ".done.json") == "take-07_v2.final.done.json"


@pytest.mark.parametrize("text,words", [
    (b"[" * 65 + b"]" * 65, "nested"),
    (b'{"a": 1' + b"0" * 100 + b"}", "number"),
    (b'{"a": NaN}', "NaN"),
    (b'{"a": "\xff"}', "UTF-8"),
    (b'{"a": ', "not valid JSON"),
])
def test_loads_limited_refuses_with_a_reason(text: bytes, words: str) -> None:
    from engine.contract.protocol import JSONLimitError, loads_limited

    with pytest.raises(JSONLimitError, match=words):
        loads_limited(text, "the thing")


def test_loads_limited_reads_brackets_inside_strings_and_deep_enough_json() -> None:
    from engine.contract.protocol import MAX_JSON_DEPTH, loads_limited

    assert loads_limited('{"a": "[[[[{{{{"}') == {"a": "[[[[{{{{"}
    deep = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    assert loads_limited(deep) is not None
    assert loads_limited(b"\xef\xbb\xbf{}".decode("utf-8")) == {}


# -- the third walk (issue #28): one bounded reader for job files, paths checked at the job boundary --

def _run_job(capsys, source: str) -> tuple[int, list[dict]]:
    from engine.cli import main

    capsys.readouterr()
    rc = main(["run", "--job", source, "--progress", "json"])
    return rc, _events(capsys.readouterr().out)


@pytest.mark.parametrize("content,words", [
    (b'{"command": "crop", "image": "\xff\xfe.png"}', "UTF-8"),
    (b'{"command": "crop", "image": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested"),
    (b"[" * 100_000, "nested"),
    ("huge", "larger than"),
    ("fifo", "pipe"),
])
def test_run_job_file_is_read_by_the_limited_loader(content, words: str, capsys, tmp_path: Path) -> None:
    job = tmp_path / "job.json"
    if content == "fifo":
        os.mkfifo(job)                       # reading it would block forever
    elif content == "huge":
        from engine.contract.protocol import MAX_LINE_BYTES

        with open(job, "wb") as fh:          # sparse: read no further than the limit
            fh.write(b"{")
            fh.truncate(MAX_LINE_BYTES * 4)
    else:
        job.write_bytes(content)
    rc, events = _run_job(capsys, str(job))
    assert rc == 1 and [e["type"] for e in events] == ["hello", "error"], events
    assert events[-1]["code"] == "bad_request" and words in events[-1]["message"], events[-1]


@pytest.mark.parametrize("field,value,words", [
    ("image", "a\x00b.png", "NUL"),
    ("image", "/tmp/" + "p" * 4200 + ".png", "4209 characters"),
    ("out", "x\x00.png", "NUL"),
])
def test_run_job_paths_with_nul_or_over_long_are_bad_request_naming_the_field(field: str, value: str, words: str,
                                                                              capsys, tmp_path: Path) -> None:
    job = tmp_path / "job.json"
    args = {"command": "crop", "image": str(REPO / "examples" / "portrait.jpg"), "out": str(tmp_path / "c.png"),
            field: value}
    job.write_text(json.dumps(args))
    rc, events = _run_job(capsys, str(job))
    assert rc == 1 and events[0]["type"] == "hello" and events[-1]["code"] == "bad_request", events
    assert f"--{field}" in events[-1]["message"] and words in events[-1]["message"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["job.json"]


def test_worker_refuses_nul_and_long_paths_and_then_serves_the_next(tmp_path: Path) -> None:
    """Through ``serve``: a NUL byte and a 4200-character path are one bad_request each, naming the
    field; the worker then answers ``release``."""
    image = str(REPO / "examples" / "portrait.jpg")
    lines = [{"v": 1, "type": "run", "job": "nul", "command": "crop",
              "args": {"image": "a\x00.png", "out": str(tmp_path / "c.png")}},
             {"v": 1, "type": "run", "job": "long", "command": "crop",
              "args": {"image": image, "out": str(tmp_path / ("d" * 4200 + ".png"))}},
             {"v": 1, "type": "release", "job": "after"}]
    proc = subprocess.run([sys.executable, "-m", "engine", "serve"], input="\n".join(map(json.dumps, lines)) + "\n",
                          capture_output=True, text=True, env=engine_env(), cwd=REPO, timeout=300)
    events = _events(proc.stdout)
    assert proc.returncode == 0, proc.stderr[-2000:]
    errors = {e["job"]: e for e in events if e["type"] == "error"}
    assert {j: e["code"] for j, e in errors.items()} == {"nul": "bad_request", "long": "bad_request"}, errors
    assert "--image" in errors["nul"]["message"] and "NUL" in errors["nul"]["message"]
    assert "--out" in errors["long"]["message"]
    assert [e["job"] for e in events if e["type"] == "done"] == ["after"]
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("via", ["run", "serve"])
def test_fetch_through_run_job_or_serve_is_bad_request(via: str, tmp_path: Path) -> None:
    """``fetch`` is one-shot only (``python -m engine fetch``): through ``run --job`` or ``serve`` it is
    one bad_request, never a KeyError (the dispatch fix is issue #25's; this walk owns the test)."""
    args = {"out": str(tmp_path / "w")}
    if via == "run":
        (tmp_path / "job.json").write_text(json.dumps({"command": "fetch", **args}))
        proc = subprocess.run([sys.executable, "-m", "engine", "run", "--job", str(tmp_path / "job.json"),
                               "--progress", "json"], capture_output=True, text=True, env=engine_env(), cwd=REPO,
                              timeout=300)
        assert proc.returncode == 1
    else:
        req = {"v": 1, "type": "run", "job": "f", "command": "fetch", "args": args}
        proc = subprocess.run([sys.executable, "-m", "engine", "serve"], input=json.dumps(req) + "\n",
                              capture_output=True, text=True, env=engine_env(), cwd=REPO, timeout=300)
        assert proc.returncode == 0
    errors = [e for e in _events(proc.stdout) if e["type"] == "error"]
    assert [e["code"] for e in errors] == ["bad_request"], errors
    assert "Traceback" not in proc.stderr and not (tmp_path / "w").exists()


def test_a_member_claiming_23_gb_is_refused_before_allocating(tmp_path: Path) -> None:
    """A crafted archive: a 1 MB member whose .npy header and zip directory both claim 23 GB (what a
    ZIP64 central directory can say). Refused as a damaged file (bad_request), never allocated (was oom)."""
    from engine.motion.npz import MotionFileError
    from engine.contract.npz_reader import MemberSpec, NpzReader

    path = tmp_path / "m.npz"
    shutil.copyfile(GOLDEN_MOTION, path)
    rows = 22_500_256
    header = _npy_header((rows, 128), "<f8")
    _append_member(path, "huge.npy", header + bytes(1 << 20))
    with NpzReader(path) as z:
        info = z._members["huge"]
        info.file_size = len(header) + rows * 128 * 8           # the directory's claim
        with pytest.raises(MotionFileError, match="more than it can hold"):
            z.get("huge", MemberSpec.numbers((None, None), max_items=2**40))


@pytest.mark.parametrize("change", ["removed", "replaced by a file"])
def test_output_folder_changed_during_the_work_is_output_unwritable(change: str, tmp_path: Path) -> None:
    """The final rename re-checks the output's folder (a render used to end in FileNotFoundError or
    NotADirectoryError after rendering everything); the frames folder's rename likewise."""
    from engine.errors import classify_failure
    from engine.fileio import atomic_path, frames_output

    folder = tmp_path / "renders"
    folder.mkdir()
    for target in ("file", "frames"):
        with pytest.raises(OutputError) as info:
            with atomic_path(folder / "o.mp4") if target == "file" else frames_output(folder / "frames") as tmp:
                (tmp / "frame_00000.png" if target == "frames" else tmp).write_bytes(b"rendered")
                shutil.rmtree(folder)
                if change != "removed":
                    folder.write_bytes(b"someone's file")
        assert change in str(info.value) and classify_failure(info.value).code == "output_unwritable"
        assert sorted(p.name for p in tmp_path.iterdir()) == (["renders"] if change != "removed" else [])
        if folder.is_file():
            folder.unlink()
        folder.mkdir()


def test_motion_meta_bounds_are_the_jobs_bounds() -> None:
    """The shared reader (a contract file: no engine imports) keeps its own copy of the job bounds."""
    from engine import jobs
    from engine.contract import npz_reader

    assert (npz_reader.SEED_MAX, npz_reader.STEPS_MAX, npz_reader.CFG_MAX) == (jobs.SEED_MAX, jobs.STEPS_MAX, jobs.CFG_MAX)
