"""tools/batch.py --shard I/N end to end: two shards of one job list, each on its own .blend,
run every job exactly once between them."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import bpy

from conftest import REPO, TESTS

GOLDEN = TESTS / "contract" / "motion_v1.npz"


def test_two_shards_cover_the_list(scene, fake_python, tmp_path):
    blend = tmp_path / "shot.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    jobs = tmp_path / "jobs.json"
    jobs.write_text(json.dumps({"defaults": {"rig": "Rig", "channels": "NONE", "motion": str(GOLDEN)},
                                "jobs": [{"start_frame": 1 + 100 * k} for k in range(5)]}))
    env = {k: v for k, v in os.environ.items() if k != "JOYVASA_INSIDE_BPY"}
    env["JOYVASA_ENGINE_PYTHON"] = fake_python
    ran = {}
    for i in range(2):
        cp = subprocess.run([sys.executable, str(REPO / "tools" / "batch.py"), "--blend", str(blend), "--jobs",
                             str(jobs), "--shard", f"{i}/2", "--save-as", str(tmp_path / "shot_{shard}.blend")],
                            capture_output=True, text=True, timeout=300, env=env, cwd=str(REPO))
        assert cp.returncode == 0, (cp.stdout + cp.stderr)[-4000:]
        bpy.ops.wm.open_mainfile(filepath=str(tmp_path / f"shot_{i}.blend"))
        ran[i] = sorted(a.get("joyvasa_start_frame") for a in bpy.data.actions if a.get("joyvasa_take"))
    assert ran == {0: [1, 201, 401], 1: [101, 301]}
    markers = sorted(p.name for p in (tmp_path / "jobs_logs").glob("*.done.json"))
    assert markers == [f"job{k}.done.json" for k in range(5)]
