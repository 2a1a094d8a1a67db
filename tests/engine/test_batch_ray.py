"""``engine batch --ray`` against a real Ray cluster on this machine.

The fixture starts a head node bound to 127.0.0.1 (``ray start --head --block`` in its own
process group: 2 CPUs, no dashboard, small object store) and always tears it down: SIGTERM to
the process it started, then SIGKILL to that process group. Jobs: tiny synthetic weights, 1 s
of audio, one worker thread each, so a Ray run and a serial local run compute the same bits.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from engine_testkit import write_wav

if os.environ.get("CI") != "true":     # CI installs the extra (.ci/run): there a missing Ray fails
    pytest.importorskip("ray", reason="Ray is the optional extra: pip install -e '.[ray]'")

REPO = Path(__file__).resolve().parents[2]
KEYS = ("exp", "pitch", "yaw", "roll", "t", "scale", "R")
pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# The cluster's token: made here for this module's head node and its clients, so the test never reads
# or writes the user's ~/.ray/auth_token (a fresh machine has none, and `ray start` in token mode then
# refuses to start; Ray's own generator is 32 random bytes as hex, the same as this).
RAY_TOKEN = secrets.token_hex(32)


def env() -> dict[str, str]:
    """Ray's single-machine mode (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``): node address 127.0.0.1,
    every port bound to loopback; without it Ray replaces 127.0.0.1 by the machine's address.
    Token authentication on, with this module's own token (``RAY_AUTH_TOKEN`` wins over any file)."""
    base = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_TOKEN_PATH"}
    return {**base, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "RAY_USAGE_STATS_ENABLED": "0",
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": RAY_TOKEN}


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (from /proc), so teardown ends exactly what the fixture started,
    including processes that start their own sessions (Ray's workers do)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


@pytest.fixture(scope="module")
def ray_head():
    """HOST:PORT of a fresh single-node Ray cluster (torn down after the module, whatever happens)."""
    port = free_port()
    temp = Path(tempfile.mkdtemp(prefix="jvray-", dir="/tmp"))        # short: Ray's socket paths are limited
    ray_cli = Path(sys.executable).with_name("ray")
    cmd = [str(ray_cli), "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}",
           "--num-cpus=2", "--num-gpus=0", "--include-dashboard=false", "--disable-usage-stats",
           "--object-store-memory=100000000", f"--temp-dir={temp}"]
    log = open(temp / "head.log", "w")
    head = subprocess.Popen(cmd, env=env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while True:
            if head.poll() is not None:
                pytest.fail(f"ray start exited with {head.returncode}: {(temp / 'head.log').read_text()[-3000:]}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("the Ray head did not come up within 90 s")
                time.sleep(0.5)
        time.sleep(2)      # GCS listens before the raylet has registered
        yield f"127.0.0.1:{port}"
    finally:
        started = descendants(head.pid)
        head.send_signal(signal.SIGTERM)        # ray start --block stops its cluster on SIGTERM
        try:
            head.wait(timeout=30)
        except subprocess.TimeoutExpired:
            head.kill()
            head.wait(timeout=10)
        for pid in started + descendants(head.pid):   # whatever of that tree is still alive
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        log.close()
        shutil.rmtree(temp, ignore_errors=True)


def batch(jobs: Path, *extra: str, timeout: float = 300) -> tuple[int, list[dict], str]:
    cp = subprocess.run([sys.executable, "-m", "engine", "batch", str(jobs), "--progress", "json", *extra],
                        capture_output=True, text=True, timeout=timeout, env=env(), cwd=REPO)
    events = [json.loads(line) for line in cp.stdout.splitlines() if line.strip()]
    return cp.returncode, events, cp.stderr


def jobs_file(folder: Path, jobs: list[dict], weights: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_wav(folder / "line.wav")
    path = folder / "jobs.json"
    path.write_text(json.dumps({"defaults": {"command": "motion", "audio": "line.wav", "weights": str(weights)},
                                "jobs": jobs}))
    return path


FOUR = [{"id": "s1", "out": "out/s1.npz", "seed": 1},
        {"id": "s2", "out": "out/s2.npz", "seed": 2, "sampler": "ddim"},
        {"id": "s3", "out": "out/s3.npz", "seed": 3, "smooth": False},
        {"id": "s4", "out": "out/s4.npz", "seed": 4, "cfg_scale": 1.0}]


def test_ray_batch_equals_serial_skips_and_reports_bad_job(tmp_path, ray_head, synthetic_tiny_joyvasa) -> None:
    bad = {"id": "bad", "out": "out/bad.npz", "audio": "missing.wav"}
    ray_jobs = jobs_file(tmp_path / "ray", FOUR + [bad], synthetic_tiny_joyvasa)
    code, events, err = batch(ray_jobs, "--ray", ray_head, "--workers", "2")
    assert code == 1, err[-4000:]                                   # the bad job failed ...
    assert events and events[-1]["type"] == "done", (events[-3:], err[-4000:])
    summary = events[-1]["summary"]
    assert sorted(summary["ok"]) == ["s1", "s2", "s3", "s4"], err[-4000:]    # ... and the others finished
    assert [(f["id"], f["code"]) for f in summary["failed"]] == [("bad", "audio_invalid")]
    pids = {int(line.split("worker pid ")[1].split()[0]) for line in err.splitlines() if "started on worker pid" in line}
    assert len(pids) == 2                                           # two actors shared the jobs
    assert pids.isdisjoint({os.getpid()})
    workers = summary["workers"]
    assert {int(p) for p in workers} == pids and sum(w["jobs"] for w in workers.values()) == 5
    for w in workers.values():                                      # each actor loaded each network once
        assert w["model_loads"] and all(n == 1 for n in w["model_loads"].values()), workers
    assert any(e["type"] == "progress" and e["stage"] == "batch" and e["eta_s"] is not None for e in events)

    serial_jobs = jobs_file(tmp_path / "serial", FOUR, synthetic_tiny_joyvasa)
    code, _, err = batch(serial_jobs)
    assert code == 0, err[-3000:]
    for job in FOUR:
        with np.load(tmp_path / "ray" / job["out"]) as a, np.load(tmp_path / "serial" / job["out"]) as b:
            for key in KEYS:
                np.testing.assert_array_equal(a[key], b[key], err_msg=f"{job['id']} {key}")
            assert int(a["seed"]) == job["seed"]

    stamps = {j["id"]: (tmp_path / "ray" / j["out"]).stat().st_mtime_ns for j in FOUR}
    code, events, err = batch(ray_jobs, "--ray", ray_head)          # re-run: finished jobs are skipped
    summary = events[-1]["summary"]
    assert code == 1 and sorted(summary["skipped"]) == ["s1", "s2", "s3", "s4"] and summary["ok"] == []
    assert [f["id"] for f in summary["failed"]] == ["bad"]
    assert stamps == {j["id"]: (tmp_path / "ray" / j["out"]).stat().st_mtime_ns for j in FOUR}


def test_killed_worker_is_retried(tmp_path, ray_head, synthetic_tiny_joyvasa) -> None:
    jobs = jobs_file(tmp_path, [dict(FOUR[0], audio="long.wav"), FOUR[1]], synthetic_tiny_joyvasa)
    write_wav(tmp_path / "long.wav", seconds=30.0)          # s1 runs long enough to be killed inside
    proc = subprocess.Popen([sys.executable, "-m", "engine", "batch", str(jobs), "--ray", ray_head, "--workers", "1",
                             "--progress", "json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env(), cwd=REPO)
    killed: list[int] = []
    err_lines: list[str] = []

    def watch_stderr() -> None:
        for line in proc.stderr:
            err_lines.append(line)
            if not killed and "s1: motion started on worker pid" in line:
                pid = int(line.split("worker pid ")[1].split()[0])
                time.sleep(0.5)                       # the actor is now inside the job
                os.kill(pid, signal.SIGKILL)          # the actor's process, mid-job
                killed.append(pid)

    watcher = threading.Thread(target=watch_stderr, daemon=True)
    watcher.start()
    try:
        out = proc.stdout.read()
        proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    watcher.join(timeout=10)
    err = "".join(err_lines)
    assert killed, err[-3000:]
    bad = [line for line in out.splitlines() if line.strip() and not line.startswith("{")]
    assert not bad, f"non-protocol lines on stdout: {bad[:5]}"
    events = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert proc.returncode == 0, err[-4000:]
    summary = events[-1]["summary"]
    assert sorted(summary["ok"]) == ["s1", "s2"] and summary["retries"] == 1 and not summary["failed"], err[-3000:]
    retried = [e for e in events if e["type"] == "warning" and e["code"] == "job_retried"]
    assert [e["job"] for e in retried] == ["s1"] and str(killed[0]) in retried[0]["message"]
    second = [line for line in err.splitlines() if "s1: motion started" in line][-1]
    assert str(killed[0]) not in second and "attempt 2" in second       # retried on a fresh worker
    from engine.motion.npz import load_motion

    assert load_motion(tmp_path / "out" / "s1.npz").n_frames > 25 * 29   # the whole 30 s line
    assert load_motion(tmp_path / "out" / "s2.npz").n_frames > 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["s1.npz", "s2.npz"]   # no partial left behind
