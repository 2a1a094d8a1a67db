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


@contextmanager
def timed(store: dict[str, float], key: str) -> Iterator[None]:
    """Add the wall time of the block to ``store[key]``."""
    t0 = time.perf_counter()
    try:
        yield
    finally:
        store[key] = store.get(key, 0.0) + time.perf_counter() - t0


def gflops_per_s(gflop: float, seconds: float) -> float:
    return gflop / seconds if seconds > 0 else float("nan")
