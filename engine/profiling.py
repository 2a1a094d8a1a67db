"""Timers, peak memory and the FLOP table used to report achieved GFLOP/s (architecture principle 9).

GFLOP = 2 × MACs of conv/matmul only, measured at official size (spec §7).
"""
from __future__ import annotations

import os
import resource
import sys
import time
from contextlib import contextmanager
from typing import Iterator

#: GFLOP per call at official size (spec §7)
GFLOP = {"F": 64.1, "M": 11.6, "W": 342.1, "G": 891.6, "WG": 1233.6}
#: upstream CPU seconds per call, float32, 2 threads on this machine class (spec §7)
UPSTREAM_SECONDS = {"F": 0.35, "M": 0.12, "W": 1.95, "G": 5.34, "WG": 7.40}


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def load_average() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


#: set by ``python -m engine``: this process runs one command, so its start-up is part of the job
COLD_PROCESS = False


def process_age_s() -> float | None:
    """Seconds since this process started (Linux /proc; None elsewhere): the interpreter start-up
    and module imports before any engine code ran are part of a cold start too."""
    try:
        with open("/proc/self/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
        start_ticks = int(fields[19])  # field 22 (starttime), counted after the ")" of comm
        with open("/proc/uptime", "rb") as fh:
            uptime = float(fh.read().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError, AttributeError):
        return None


class Breakdown:
    """Where a job's time goes, by part (import, construct, load, audio, encode, sample, write...).

    Wall and CPU seconds are summed per part; the ``done`` event and ``bench`` print them, so a
    cold start can be read as a list of costs instead of one number.
    """

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    @contextmanager
    def part(self, name: str) -> Iterator[None]:
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - t0, time.process_time() - c0)

    def add(self, name: str, wall: float, cpu: float = 0.0) -> None:
        self.wall[name] = self.wall.get(name, 0.0) + wall
        self.cpu[name] = self.cpu.get(name, 0.0) + cpu

    def as_dict(self) -> dict[str, float]:
        return {k: round(v, 3) for k, v in self.wall.items()}

    def cpu_dict(self) -> dict[str, float]:
        return {k: round(v, 3) for k, v in self.cpu.items()}

    def line(self) -> str:
        """``part wall (cpu)`` pairs: CPU seconds stay meaningful on a shared machine."""
        return ", ".join(f"{k} {v:.2f} ({self.cpu.get(k, 0.0):.2f})" for k, v in self.wall.items())


def gflops_per_s(gflop: float, seconds: float) -> float:
    return gflop / seconds if seconds > 0 else float("nan")


#: seconds one timed product of :func:`matmul_peak_gflops` may take when it sizes the matrices itself
PEAK_PRODUCT_BUDGET_S = 0.25


def matmul_peak_gflops(device: object = "cpu", dtype: object = None, n: int | None = None,
                       repeat: int = 3) -> float:
    """GFLOP/s of the fastest square matmul this device runs in ``dtype`` (best of ``repeat``).

    Why: an achieved GFLOP/s means little alone; beside the machine's own large-matmul speed in
    the same precision a reader sees how close the networks run to the hardware. ``n`` defaults
    to the largest of 2048 on CPU (a ~0.2 s product on 2 cores) or 8192 on a GPU whose product a
    256² probe predicts within :data:`PEAK_PRODUCT_BUDGET_S`: an emulated dtype (bfloat16 on a CPU
    without AVX512-BF16/AMX, ~100x slower) gets a smaller product instead of minutes of 2048³.
    """
    import torch

    dev = torch.device(device)  # type: ignore[arg-type]
    dt = dtype if isinstance(dtype, torch.dtype) else {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(
        str(dtype).replace("torch.", ""), torch.float32)

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    def fastest(size: int, calls: int) -> float:
        a = torch.randn(size, size, device=dev).to(dt)
        b = torch.randn(size, size, device=dev).to(dt)
        with torch.no_grad():
            torch.mm(a, b)  # warm-up: kernel selection, page faults
            sync()
            best = float("inf")
            for _ in range(max(1, calls)):
                t0 = time.perf_counter()
                torch.mm(a, b)
                sync()
                best = min(best, time.perf_counter() - t0)
        return best

    if n is None:
        cap, probe = (8192 if dev.type == "cuda" else 2048), 256
        fits = probe * (PEAK_PRODUCT_BUDGET_S / max(fastest(probe, 1), 1e-9)) ** (1 / 3)
        n = max(probe, min(cap, int(fits) // probe * probe))
    best = fastest(n, repeat)
    return 2.0 * n ** 3 / best / 1e9
