"""tools/batch.py --shard I/N (bpy-free parts): the shards of a job list cover it exactly once."""
from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def batch_module():
    spec = importlib.util.spec_from_file_location("batch_tool", REPO / "tools" / "batch.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("n_jobs", [0, 1, 5, 12, 13])
@pytest.mark.parametrize("n_shards", [1, 2, 3, 5, 16])
def test_shards_partition_the_job_list(tmp_path: Path, n_jobs: int, n_shards: int) -> None:
    batch = batch_module()
    path = tmp_path / "jobs.json"
    path.write_text(json.dumps({"defaults": {"rig": "Rig"}, "jobs": [{"audio": f"{k}.wav"} for k in range(n_jobs)]}))
    jobs = batch.load_jobs(path)
    seen: list[str] = []
    for i in range(n_shards):
        args = batch.parse_args(["--jobs", str(path), "--shard", f"{i}/{n_shards}"])
        part = batch.shard(batch.load_jobs(args.jobs), *args.shard)
        assert [j["name"] for j in part] == [f"job{k}" for k in range(i, n_jobs, n_shards)]   # every N-th from I
        seen += [j["name"] for j in part]
    assert sorted(seen) == sorted(j["name"] for j in jobs)      # no gap
    assert len(seen) == len(set(seen))                          # no overlap


def test_default_is_everything_and_bad_shards_are_refused(tmp_path: Path) -> None:
    batch = batch_module()
    assert batch.parse_args(["--jobs", "j.json"]).shard == (0, 1)
    for bad in ("2/2", "-1/3", "1/0", "a/b", "3", "1/2/3"):
        with pytest.raises(argparse.ArgumentTypeError):
            batch.parse_shard(bad)


def test_docs_flamenco_job_type_emits_the_shards(tmp_path: Path) -> None:
    """Runs the Flamenco job type of docs/batches.md (JavaScript, under node with a stand-in ``author``
    API) and parses each task's command line with batch.py's own parser: N tasks, shards 0..N-1."""
    import re
    import shutil
    import subprocess

    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    page = (REPO / "docs" / "batches.md").read_text(encoding="utf-8")
    js = re.search(r"```javascript\n(.*?)```", page, re.S).group(1)
    harness = """
const author = {Task: (name, type) => ({name, type, cmds: [], addCommand(c) { this.cmds.push(c); }}),
                Command: (type, params) => Object.assign({type}, params)};
""" + js + """
const tasks = [];
compileJob({settings: {blendfile: "/farm/shot.blend", jobs: "/farm/jobs.json", batch_script: "/farm/batch.py",
                       shards: 3}, addTask: (t) => tasks.push(t)});
console.log(JSON.stringify(tasks));
"""
    script = tmp_path / "jobtype.js"
    script.write_text(harness)
    tasks = json.loads(subprocess.run([node, str(script)], capture_output=True, text=True, check=True,
                                      timeout=60).stdout)
    batch = batch_module()
    assert [t["name"] for t in tasks] == ["joyvasa-shard-0", "joyvasa-shard-1", "joyvasa-shard-2"]
    for i, t in enumerate(tasks):
        (cmd,) = t["cmds"]
        assert cmd["type"] == "blender-render" and cmd["blendfile"] == "/farm/shot.blend"
        args = cmd["args"]
        assert args[:4] == ["--python-exit-code", "1", "-P", "/farm/batch.py"] and args[4] == "--"
        ns = batch.parse_args(args[5:])
        assert ns.shard == (i, 3) and str(ns.jobs) == "/farm/jobs.json"
        assert str(ns.save_as) == "/farm/shot_{shard}.blend"
