"""Whole-process benchmark: a cold one-shot command beside warm takes through ``engine serve``.

Why: per-window or per-frame speed-ups are invisible to a user who pays start-up on every take.
This measures what the user waits for: a fresh ``python -m engine <command>`` process (cold:
interpreter, imports, loading, work, writing), then the same work as requests to one warm worker:
take 1 (the worker's first request: loads the networks), take 2 (same audio, new seed: the
artist's re-take loop, audio features cached), take 3 (new audio). Each line has wall seconds
AND CPU seconds of the engine process (robust on a shared machine) and the ``breakdown`` the
engine reports in its ``done`` event. Used by ``bench motion --whole`` and ``bench animate --whole``.
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def _env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def _cpu_of(pid: int) -> float:
    """utime + stime of a live process in seconds (Linux /proc)."""
    with open(f"/proc/{pid}/stat", "rb") as fh:
        fields = fh.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _fmt_breakdown(done: dict[str, Any]) -> str:
    wall, cpu = done.get("breakdown") or {}, done.get("breakdown_cpu") or {}
    return ", ".join(f"{k} {v:.2f}/{cpu.get(k, 0.0):.2f}" for k, v in wall.items())


def cold_run(command: str, argv: list[str], threads: int) -> dict[str, Any]:
    """One fresh process; wall and CPU (children rusage) of the whole process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "engine", command, *argv, "--progress", "json"],
                          capture_output=True, text=True, env=_env(threads), stdin=subprocess.DEVNULL, cwd=REPO)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    events = [json.loads(x) for x in proc.stdout.splitlines() if x.strip()]
    done = next((e for e in events if e["type"] == "done"), None)
    if proc.returncode != 0 or done is None:
        raise RuntimeError(f"{command} failed (rc {proc.returncode}): {proc.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall": wall, "cpu": cpu, "done": done, "rss_mb": after.ru_maxrss / 1024}


class _Worker:
    def __init__(self, threads: int) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "engine", "serve"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                     env=_env(threads), cwd=REPO)
        self.events: list[dict[str, Any]] = []
        self.cond = threading.Condition()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self.cond:
                self.events.append(json.loads(line))
                self.cond.notify_all()

    def take(self, job: str, command: str, args: dict[str, Any]) -> dict[str, Any]:
        from engine.contract.protocol import make_request

        def end(e: dict[str, Any]) -> bool:
            return e.get("job") == job and e["type"] in ("done", "error", "cancelled")

        c0, t0 = _cpu_of(self.proc.pid), time.perf_counter()
        assert self.proc.stdin is not None
        self.proc.stdin.write(make_request("run", job, command=command, args=args))
        self.proc.stdin.flush()
        with self.cond:
            self.cond.wait_for(lambda: any(end(e) for e in self.events))
            last = next(e for e in self.events if end(e))
        wall, cpu = time.perf_counter() - t0, _cpu_of(self.proc.pid) - c0
        if last["type"] != "done":
            raise RuntimeError(f"take {job} failed: {last}")
        return {"wall": wall, "cpu": cpu, "done": last}

    def close(self) -> int:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        return self.proc.wait(120)


def run_takes(command: str, cold_argv: list[str], takes: list[tuple[str, dict[str, Any]]], threads: int,
              upstream_s: tuple[float, float] | None = None, repeat: int = 1) -> int:
    """Print the cold whole-process line and one line per warm take (see module docstring)."""
    load = os.getloadavg()[0]
    print(f"{command}: cold one-shot process vs warm takes through `engine serve`; threads "
          f"{threads or 'default'}; load average {load:.2f} (shared machine: compare CPU seconds)", flush=True)
    cold = min((cold_run(command, cold_argv, threads) for _ in range(max(1, repeat))), key=lambda r: r["wall"])
    print(f"  cold process          wall {cold['wall']:6.2f} s  CPU {cold['cpu']:6.2f} s  peak RSS "
          f"{cold['done']['peak_mem']['host_mb']:.0f} MiB   [{_fmt_breakdown(cold['done'])}]", flush=True)
    w = _Worker(threads)
    rows = []
    try:
        for i, (label, args) in enumerate(takes):
            r = w.take(f"t{i}", command, args)
            rows.append((label, r))
            print(f"  {label:21s} wall {r['wall']:6.2f} s  CPU {r['cpu']:6.2f} s  "
                  f"[{_fmt_breakdown(r['done'])}]", flush=True)
    finally:
        rc = w.close()
    print("  (breakdown: part wall/CPU seconds inside the engine; 'startup' = interpreter + imports before "
          f"the job; worker exit code {rc})", flush=True)
    if upstream_s:
        lo, hi = upstream_s
        print(f"  upstream whole process (issue #8 reference, same machine class, not re-run here): "
              f"{lo:.1f}-{hi:.1f} s", flush=True)
        print(f"  speed-up vs upstream (wall): cold {lo / cold['wall']:.2f}-{hi / cold['wall']:.2f}x"
              + "".join(f"; {label} {lo / r['wall']:.2f}-{hi / r['wall']:.2f}x" for label, r in rows), flush=True)
    return 0
