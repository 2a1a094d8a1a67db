"""``bench motion --whole`` runs end to end on tiny weights and prints the cold and warm lines (no timing asserted)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_bench_motion_whole_prints_cold_and_warm_lines(tmp_path: Path) -> None:
    sys.path.insert(0, str(REPO / "tools"))
    try:
        import make_synthetic_weights
    finally:
        sys.path.pop(0)
    assert make_synthetic_weights.main(["--config", "tiny", "--out", str(tmp_path / "w"), "--only", "joyvasa"]) == 0
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cp = subprocess.run([sys.executable, "-m", "engine", "bench", "motion", "--whole", "--weights", str(tmp_path / "w"),
                         "--seconds", "1", "--repeat", "1", "--threads", "1"], capture_output=True, text=True,
                        env=env, cwd=REPO, timeout=600)
    assert cp.returncode == 0, cp.stderr[-3000:]
    out = cp.stdout
    for label in ("cold process", "warm take 1 (loads)", "warm re-take new seed", "warm take new audio"):
        assert label in out, out
    lines = {ln.split(" wall")[0].strip(): ln for ln in out.splitlines() if " wall " in ln}
    assert "load " in lines["warm take 1 (loads)"] and "load " not in lines["warm re-take new seed"]
    assert "encode " not in lines["warm re-take new seed"]          # audio features came from the cache
    assert "upstream whole process" in out and "CPU" in lines["cold process"]
