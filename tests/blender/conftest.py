"""tests/blender/: the outer tests run in the main venv and spawn each bpy venv; the
inside_bpy/ folder is collected only inside a bpy interpreter (JOYVASA_INSIDE_BPY=1)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
collect_ignore = [] if os.environ.get("JOYVASA_INSIDE_BPY") == "1" else ["inside_bpy"]


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> Path:
    """Tiny synthetic weights made by tools/make_synthetic_weights.py (once per session)."""
    tool = REPO / "tools" / "make_synthetic_weights.py"
    if not tool.exists():
        pytest.skip("tools/make_synthetic_weights.py does not exist yet")
    out = tmp_path_factory.mktemp("tiny_weights")
    cp = subprocess.run([sys.executable, str(tool), "--config", "tiny", "--out", str(out)], cwd=REPO,
                        capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert cp.returncode == 0, cp.stdout[-2000:] + cp.stderr[-2000:]
    return out
