"""``python -m engine fetch`` against a stand-in hub on 127.0.0.1 (tests/hub_server.py) serving the
tiny synthetic weights (tools/make_synthetic_weights.py) in the official repository layouts.

The official repositories hold no ``models.yaml``; the tiny networks need one, so each weights
folder starts with the synthetic set's ``models.yaml`` (a user's custom-size file, as doctor reads it).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import namedtuple
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))
from hub_server import HubServer, official_layout, with_animals  # noqa: E402

sys.path.pop(0)

SPADE = ("KwaiVGI/LivePortrait", "liveportrait/base_models/spade_generator.pth")
SPADE_DEST = "liveportrait/base_models/spade_generator.pth"


@pytest.fixture(scope="module")
def hub_files(tiny_weights: Path) -> dict:
    return official_layout(tiny_weights)


@pytest.fixture()
def hub(hub_files):
    with HubServer(hub_files) as server:
        yield server


@pytest.fixture()
def out(tmp_path: Path, tiny_weights: Path) -> Path:
    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / "models.yaml").write_bytes((tiny_weights / "models.yaml").read_bytes())
    return folder


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "PYTEST_"))}
    env.update({"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "HF_HOME": str(Path(extra.pop("home", "/tmp")) / "hf")})
    env.update(extra)
    return env


Run = namedtuple("Run", "rc events stderr seconds")


def fetch(out: Path, endpoint: str | None, *args: str, timeout: float = 120, **env: str) -> Run:
    if endpoint is not None:
        env["HF_ENDPOINT"] = endpoint
    t0 = time.monotonic()
    cp = subprocess.run([sys.executable, "-m", "engine", "fetch", "--out", str(out), "--progress", "json", *args],
                        capture_output=True, text=True, timeout=timeout, env=_env(home=str(out.parent), **env), cwd=REPO)
    events = [json.loads(line) for line in cp.stdout.splitlines() if line.strip()]
    return Run(cp.returncode, events, cp.stderr, time.monotonic() - t0)


def of(events: list[dict], kind: str) -> list[dict]:
    return [e for e in events if e["type"] == kind]


def staging(out: Path) -> Path:
    return out.parent / f".{out.name}.joyvasa-fetch"


def test_full_fetch_verifies_and_events_have_the_contract_shape(hub, hub_files, out: Path) -> None:
    from engine.pipeline.doctor import build_report
    from engine.contract.protocol import ERROR_CODES, EVENT_TYPES, STAGES

    run = fetch(out, hub.url)
    assert run.rc == 0, run.stderr[-3000:]
    ev = run.events
    assert ev[0]["type"] == "hello" and ev[0]["command"] == "fetch" and ev[0]["endpoint"] == hub.url
    assert ev[-1]["type"] == "done" and ev[-1]["outputs"] == {"weights_dir": str(out)}
    assert ev[-1]["groups"] == {"liveportrait": True, "joyvasa": True}
    assert {e["type"] for e in ev} <= set(EVENT_TYPES) and "download" in STAGES
    assert {"offline", "download_failed", "disk_full"} <= set(ERROR_CODES)
    [plan] = of(ev, "plan")
    assert plan["download_files"] == 9 and plan["download_bytes"] == sum(len(d) for d in hub_files.values())
    assert plan["free_bytes"] > plan["download_bytes"] and plan["licences"][0]["part"] == "core"
    assert {f["hash"] for f in plan["files"]} == {"sha256", "git-sha1"}     # LFS and plain git files both checked
    assert all(not f["present"] for f in plan["files"])
    progress = of(ev, "progress")
    assert progress and all(p["stage"] == "download" and p["unit"] == "byte" and "eta_s" in p for p in progress)
    assert all({"file", "file_done", "file_total", "files_done", "files_total"} <= set(p) for p in progress)
    assert progress[-1]["done"] == progress[-1]["total"] == plan["download_bytes"]
    assert [p["done"] for p in progress] == sorted(p["done"] for p in progress)
    artifacts = of(ev, "artifact")
    assert len(artifacts) == 9 and {a["kind"] for a in artifacts} == {"weight_file"}
    for (repo, path), data in hub_files.items():
        dest = {"jdh-algo/JoyVASA": f"JoyVASA/{path}",
                "TencentGameMate/chinese-hubert-base": f"TencentGameMate:chinese-hubert-base/{path}"}.get(repo, path)
        assert (out / dest).read_bytes() == data, dest
    assert not staging(out).exists()                     # nothing left beside DIR
    report = build_report(str(out))
    assert report["ok"], report["next"]

    again = fetch(out, hub.url)                          # a re-run downloads nothing
    assert again.rc == 0 and of(again.events, "plan")[0]["download_files"] == 0
    assert not of(again.events, "artifact")


def test_hf_hub_offline_is_reported_at_once_with_the_manual_route(out: Path) -> None:
    run = fetch(out / "new", "http://127.0.0.1:9", HF_HUB_OFFLINE="1")
    assert run.rc == 1 and run.seconds < 5
    [err] = of(run.events, "error")
    assert err["code"] == "offline" and "HF_HUB_OFFLINE" in err["message"]
    assert "Manual route" in err["message"] and "DIR/JoyVASA/motion_template/motion_template.pkl" in err["message"]
    assert not (out / "new").exists() and not staging(out / "new").exists()


@pytest.mark.parametrize("endpoint", ["http://127.0.0.1:9", "http://192.0.2.1:9"])  # refused; TEST-NET black hole
def test_unreachable_endpoint_is_offline_in_seconds(out: Path, endpoint: str) -> None:
    run = fetch(out / "new", endpoint)
    assert run.rc == 1 and run.seconds < 5, run.stderr[-2000:]
    [err] = of(run.events, "error")
    assert err["code"] == "offline" and endpoint in err["message"] and "Manual route" in err["message"]
    assert not (out / "new").exists()


def test_hash_mismatch_is_refused_and_never_placed(hub, out: Path) -> None:
    hub.corrupt.add(SPADE)
    run = fetch(out, hub.url)
    assert run.rc == 1
    [err] = of(run.events, "error")
    assert err["code"] == "download_failed" and "sha256" in err["message"] and SPADE_DEST in err["message"]
    assert not (out / SPADE_DEST).exists()
    assert not list(staging(out).rglob("spade_generator.pth*"))   # the bad bytes are gone, not resumed


def test_more_bytes_than_announced_are_refused_and_removed(hub, out: Path) -> None:
    hub.announce[SPADE] = len(hub.files[SPADE]) - 1000      # the hub's X-Linked-Size is wrong
    run = fetch(out, hub.url)
    assert run.rc == 1
    [err] = of(run.events, "error")
    assert err["code"] == "download_failed" and "more than" in err["message"] and SPADE_DEST in err["message"]
    assert not (out / SPADE_DEST).exists() and not list(staging(out).rglob("spade_generator.pth*"))


def test_truncated_file_is_refused_then_resumed(hub, out: Path) -> None:
    hub.truncate.add(SPADE)
    run = fetch(out, hub.url)
    assert run.rc == 1 and of(run.events, "error")[0]["code"] == "download_failed", run.stderr[-2000:]
    assert not (out / SPADE_DEST).exists()
    [part] = list(staging(out).rglob("spade_generator.pth.*.part"))
    assert 0 < part.stat().st_size < len(hub.files[SPADE])
    kept = part.stat().st_size
    hub.truncate.clear()
    again = fetch(out, hub.url)
    assert again.rc == 0, again.stderr[-2000:]
    assert (out / SPADE_DEST).read_bytes() == hub.files[SPADE]
    assert ("GET", f"/cdn/{hub.sha256(SPADE)}", f"bytes={kept}-") in hub.requests   # resumed, not restarted


@pytest.mark.parametrize("how", ["kill", "cancel"])
def test_stopped_mid_file_leaves_nothing_in_dir_and_resumes(hub_files, out: Path, how: str) -> None:
    with HubServer(hub_files, bytes_per_s=2e6) as hub:              # spade: 3 MB at 2 MB/s
        proc = subprocess.Popen([sys.executable, "-m", "engine", "fetch", "--out", str(out), "--progress", "json"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                env=_env(home=str(out.parent), HF_ENDPOINT=hub.url), cwd=REPO)
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                e = json.loads(line)
                if e["type"] == "progress" and e["file"] == SPADE_DEST and 0 < e["file_done"] < e["file_total"]:
                    break
            else:
                pytest.fail("no progress inside spade_generator.pth")
            if how == "kill":
                proc.kill()
            else:
                proc.stdin.write('{"v":1,"type":"cancel"}\n')
                proc.stdin.flush()
                proc.send_signal(signal.SIGINT)
            rest = [json.loads(line) for line in proc.stdout if line.strip()]
            rc = proc.wait(30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if how == "kill":
            assert rc == -signal.SIGKILL
        else:
            assert rc == 130 and rest[-1]["type"] == "cancelled"
        assert not (out / SPADE_DEST).exists()                        # nothing that looks complete
        assert (out / "liveportrait/base_models/warping_module.pth").is_file()   # finished files stay
        [part] = list(staging(out).rglob("spade_generator.pth.*.part"))
        kept = part.stat().st_size
        assert 0 < kept < len(hub_files[SPADE])
        hub.bytes_per_s = None
        hub.requests.clear()
        again = fetch(out, hub.url)
    assert again.rc == 0, again.stderr[-2000:]
    plan = of(again.events, "plan")[0]
    spade = next(f for f in plan["files"] if f["path"] == SPADE_DEST)
    assert spade["resume_from"] == kept and plan["download_files"] == 6   # spade + the five after it
    assert ("GET", f"/cdn/{hub.sha256(SPADE)}", f"bytes={kept}-") in hub.requests
    assert (out / SPADE_DEST).read_bytes() == hub_files[SPADE]
    assert not staging(out).exists()


def test_disk_full_before_any_write(hub, out: Path, monkeypatch, capsys) -> None:
    import shutil

    from engine.cli import main

    target = out / "sub"
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda p: real(p)._replace(free=1_000_000))  # 1 MB "free"
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert main(["fetch", "--out", str(target), "--progress", "json"]) == 1
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert events[-1]["type"] == "error" and events[-1]["code"] == "disk_full"
    assert "MiB" in events[-1]["message"] and of(events, "plan")[0]["free_bytes"] == 1_000_000
    assert not target.exists() and not staging(target).exists()
    assert not [m for m, p, _r in hub.requests if m == "GET" and p.startswith("/cdn/")]   # not one byte fetched


def test_plan_only_and_verify_only(hub, out: Path, tiny_weights: Path) -> None:
    run = fetch(out, hub.url, "--plan-only")
    assert run.rc == 0 and run.events[-1]["plan"]["download_files"] == 9
    assert sorted(p.name for p in out.iterdir()) == ["models.yaml"] and not staging(out).exists()
    run = fetch(out, None, "--verify-only")
    assert run.rc == 1 and of(run.events, "error")[0]["code"] == "weights_missing"
    wrapper = subprocess.run([sys.executable, str(REPO / "tools/fetch_weights.py"), "--out", str(tiny_weights),
                              "--verify-only"], capture_output=True, text=True, timeout=120, env=_env(), cwd=REPO)
    assert wrapper.returncode == 0, wrapper.stderr[-2000:]
    assert wrapper.stdout.strip() == str(tiny_weights)                # the folder to use, on stdout


def _tiny_onnx() -> bytes:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "tiny",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)]).SerializeToString()


def _xpose_bytes(tmp: Path) -> bytes:
    """A tiny X-Pose checkpoint when the engine has the X-Pose loader (then doctor loads it strictly),
    else any bytes (then only size and hash can be checked, and doctor says so)."""
    from engine.pipeline.doctor import xpose_loader

    if xpose_loader() is None:
        return os.urandom(50_000)
    from engine.framing.xpose_synthetic import write_xpose_weights

    return write_xpose_weights(tmp, "tiny").read_bytes()


def test_optional_parts_print_licences_first_and_load(hub_files, out: Path) -> None:
    files = with_animals(hub_files)
    onnx_bytes = _tiny_onnx()
    for name in ("insightface/models/buffalo_l/det_10g.onnx", "insightface/models/buffalo_l/2d106det.onnx"):
        files[("KwaiVGI/LivePortrait", name)] = onnx_bytes
    files[("KwaiVGI/LivePortrait", "liveportrait_animals/xpose.pth")] = _xpose_bytes(out.parent / "xpose")
    with HubServer(files) as hub:
        run = fetch(out, hub.url, "--animals", "--xpose", "--detector")
    assert run.rc == 0, run.stderr[-3000:]
    log = run.stderr
    for words in ("X-Pose model: NON-COMMERCIAL", "InsightFace buffalo_l models: NON-COMMERCIAL"):
        assert log.index(words) < log.index("[download]")           # licence shown before any byte comes
    groups = run.events[-1]["groups"]
    assert groups["liveportrait_animals"] and groups["detector"] and groups["xpose"]
    from engine.pipeline.doctor import check_weights, xpose_loader

    xpose = check_weights(out)["groups"]["xpose"]
    assert ("seconds" in xpose) == (xpose_loader() is not None), xpose     # loaded strictly when a loader exists
    assert (out / "liveportrait_animals/xpose.pth").is_file()
    assert (out / "liveportrait_animals/base_models/warping_module.pth").is_file()


def test_a_file_the_mirror_lacks_is_named(hub_files, out: Path) -> None:
    with HubServer(hub_files) as hub:                                 # no animal files on this "mirror"
        run = fetch(out, hub.url, "--animals")
    assert run.rc == 1
    [err] = of(run.events, "error")
    assert err["code"] == "download_failed" and "liveportrait_animals/base_models" in err["message"]
    assert "404" in err["message"] and sorted(p.name for p in out.iterdir()) == ["models.yaml"]


def test_advice_names_the_fetcher_the_zip_has(tmp_path: Path) -> None:
    """doctor and every weights error name `python -m engine fetch` (in the extension), never tools/."""
    from engine.pipeline.doctor import build_report
    from engine.errors import OFFICIAL_WEIGHTS_HINT

    (tmp_path / "w").mkdir()
    report = build_report(str(tmp_path / "w"), load=False)
    assert any("python -m engine fetch --out DIR" in step for step in report["next"])
    assert "Download Weights" in OFFICIAL_WEIGHTS_HINT
    for path in [*(REPO / "engine").rglob("*.py"), *(REPO / "joyvasa_blender").rglob("*.py")]:
        assert "fetch_weights" not in path.read_text(encoding="utf-8"), path


def test_addon_cancel_through_its_engine_process(hub_files, out: Path) -> None:
    """The add-on's own machinery (EngineProcess + FetchProgress, as ops_weights runs it): Cancel in
    the middle of a file ends with ``cancelled``, the file is not in DIR, and its bytes wait in staging."""
    from joyvasa_blender.core.engine_client import EngineProcess
    from joyvasa_blender.core.weights_fetch import FetchProgress, fetch_argv

    with HubServer(hub_files, bytes_per_s=2e6) as hub:
        progress = FetchProgress(str(out))
        proc = EngineProcess(fetch_argv(sys.executable, str(out)), cwd=REPO,
                             env=_env(home=str(out.parent), HF_ENDPOINT=hub.url))

        def on_event(event: dict) -> None:
            progress.apply(event)

        def mid_spade() -> bool:
            return progress.file == SPADE_DEST and 0 < progress.done_bytes < progress.total_bytes

        rc = proc.run_sync(on_event, should_cancel=mid_spade, timeout=120)
    assert rc == 130 and progress.state == "cancelled", progress.lines()
    assert not (out / SPADE_DEST).exists() and list(staging(out).rglob("spade_generator.pth.*.part"))


def test_disk_filling_up_mid_file_is_disk_full_and_dir_stays_clean(hub, out: Path, monkeypatch, capsys) -> None:
    """ENOSPC from the write of a partial (the estimate was right but something else filled the disk)."""
    import builtins
    import errno

    from engine.cli import main
    from engine.fetch import transfer

    class FullDisk:
        def __init__(self, fh):
            self._fh, self._n = fh, 0

        def write(self, data: bytes) -> int:
            self._n += len(data)
            if self._n > 200_000:
                raise OSError(errno.ENOSPC, "No space left on device", self._fh.name)
            return self._fh.write(data)

        def __getattr__(self, name):
            return getattr(self._fh, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self._fh.close()

    def full_open(path, mode="r", *a, **k):
        fh = builtins.open(path, mode, *a, **k)
        return FullDisk(fh) if "a" in mode or "w" in mode else fh

    monkeypatch.setattr(transfer, "open", full_open, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert main(["fetch", "--out", str(out), "--progress", "json"]) == 1
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert events[-1]["code"] == "disk_full", events[-1]
    assert sorted(p.name for p in out.iterdir()) == ["liveportrait", "models.yaml"]
    assert [p.name for p in out.rglob("*.pth")] == ["appearance_feature_extractor.pth"]   # the one that fit


def test_a_differing_file_is_replaced_only_once_the_new_one_is_complete(hub, hub_files, out: Path) -> None:
    """An older upload in DIR (other size) stays usable until the host's file has fully arrived."""
    old = out / SPADE_DEST
    old.parent.mkdir(parents=True)
    old.write_bytes(b"an older upload")
    hub.corrupt.add(SPADE)                       # first try: the new bytes are bad
    run = fetch(out, hub.url)
    plan = of(run.events, "plan")[0]
    assert next(f for f in plan["files"] if f["path"] == SPADE_DEST)["replaces"] is True
    assert run.rc == 1 and old.read_bytes() == b"an older upload"
    hub.corrupt.clear()
    assert fetch(out, hub.url).rc == 0 and old.read_bytes() == hub_files[SPADE]


def test_a_second_fetch_into_the_same_folder_is_refused_while_one_runs(hub_files, out: Path) -> None:
    with HubServer(hub_files, bytes_per_s=2e6) as hub:
        first = subprocess.Popen([sys.executable, "-m", "engine", "fetch", "--out", str(out), "--progress", "json"],
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                 env=_env(home=str(out.parent), HF_ENDPOINT=hub.url), cwd=REPO)
        try:
            assert first.stdout is not None
            for line in first.stdout:
                if json.loads(line)["type"] == "progress":
                    break
            second = fetch(out, hub.url)
            rest = [json.loads(line) for line in first.stdout if line.strip()]
            assert first.wait(120) == 0 and rest[-1]["type"] == "done"
        finally:
            if first.poll() is None:
                first.kill()
                first.wait()
    assert second.rc == 1
    [err] = of(second.events, "error")
    assert err["code"] == "download_failed" and "another `engine fetch`" in err["message"]
    assert (out / SPADE_DEST).read_bytes() == hub_files[SPADE] and not staging(out).exists()
