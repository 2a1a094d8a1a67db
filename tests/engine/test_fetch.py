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


def test_truncated_file_is_refused_then_resumed(hub, out: Path, monkeypatch, capsys) -> None:
    from engine.fetch import transfer

    monkeypatch.setattr(transfer, "BACKOFF_S", 0.01)      # every try of this run ends early: no waiting
    hub.truncate.add(SPADE)
    rc, events = _fetch_here(monkeypatch, capsys, out, hub.url)
    assert rc == 1 and of(events, "error")[0]["code"] == "download_failed", events[-1]
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


# -- issue #28: the hub is untrusted; the destination is checked before the first byte ------------------

CONFIG = ("TencentGameMate/chinese-hubert-base", "config.json")
CONFIG_DEST = "TencentGameMate:chinese-hubert-base/config.json"


def _fetch_here(monkeypatch, capsys, out: Path, endpoint: str, *args: str, verify: bool = False,
                **env: str) -> tuple[int, list[dict]]:
    """``engine fetch`` in this process (no interpreter start-up: these cases are about the transfer);
    ``verify=False`` skips the strict loaders' check, which other tests cover."""
    from engine.cli import main
    from engine.commands import fetch as fetch_cmd

    if not verify:
        monkeypatch.setattr(fetch_cmd, "verify", lambda reporter, out, parts: {})
    for k in [k for k in os.environ if k.startswith("HF_")]:
        monkeypatch.delenv(k)
    monkeypatch.setenv("HF_HOME", str(out.parent / "hf"))
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    capsys.readouterr()
    try:
        rc = main(["fetch", "--out", str(out), "--progress", "json", *args])
    finally:
        for s, h in handlers.items():
            signal.signal(s, h)
    return rc, [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.strip()]


def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): ("link" if p.is_symlink() else "dir" if p.is_dir() else p.read_bytes().hex()[:64])
            for p in sorted(root.rglob("*"))}


def test_hostile_etag_never_names_a_path_outside_staging(hub, hub_files, out: Path, monkeypatch, capsys) -> None:
    victim = out.parent / "victim.txt"
    victim.write_bytes(b"the user's file")
    hub.headers[SPADE] = {"X-Linked-Etag": '"/../../../../../victim.txt"'}
    rc, events = _fetch_here(monkeypatch, capsys, out, hub.url)
    assert rc == 0, events[-1]
    assert victim.read_bytes() == b"the user's file"
    assert (out / SPADE_DEST).read_bytes() == hub_files[SPADE]
    assert sorted(p.name for p in out.parent.iterdir() if p.name != "hf") == ["victim.txt", "weights"]


def test_staging_folder_that_is_a_symlink_is_refused_and_its_target_untouched(hub, out: Path, tmp_path: Path,
                                                                                monkeypatch, capsys) -> None:
    projects = tmp_path / "projects"
    (projects / "empty" / "deeper").mkdir(parents=True)
    (projects / "liveportrait" / "base_models").mkdir(parents=True)
    before = _tree(projects)
    staging(out).symlink_to(projects, target_is_directory=True)
    rc, events = _fetch_here(monkeypatch, capsys, out, hub.url)
    assert rc == 1 and events[-1]["code"] == "output_unwritable" and "symbolic link" in events[-1]["message"]
    assert _tree(projects) == before
    assert not [e for e in events if e["type"] == "progress"]


@pytest.mark.parametrize("layout", ["file-for-folder", "folder-for-file", "staging-is-file"])
def test_destination_layout_is_checked_before_the_first_byte(layout: str, hub, out: Path, monkeypatch,
                                                             capsys) -> None:
    if layout == "file-for-folder":
        (out / "liveportrait").write_bytes(b"a file")
        words = "is a file where the weights need a folder"
    elif layout == "folder-for-file":
        (out / CONFIG_DEST).mkdir(parents=True)
        words = "is a folder where the weight file"
    else:
        staging(out).write_bytes(b"left over")
        words = "is a file, not the folder"
    rc, events = _fetch_here(monkeypatch, capsys, out, hub.url)
    assert rc == 1 and events[-1]["code"] == "output_unwritable" and words in events[-1]["message"], events[-1]
    assert not [m for m, p, _r in hub.requests if m == "GET"]        # not one byte fetched


@pytest.mark.parametrize("headers,words", [
    ({"X-Linked-Size": "-5"}, "not a possible size"),
    ({"X-Linked-Size": "99999999999999999999"}, "not a possible size"),
    ({"Location": "file:///etc/hostname"}, "not an http(s) address"),
])
def test_hostile_headers_are_refused_before_any_byte(headers: dict, words: str, hub, out: Path, monkeypatch,
                                                     capsys) -> None:
    hub.headers[SPADE] = headers
    rc, events = _fetch_here(monkeypatch, capsys, out, hub.url)
    assert rc == 1 and events[-1]["code"] == "download_failed" and words in events[-1]["message"], events[-1]
    assert sorted(p.name for p in out.iterdir()) == ["models.yaml"]


def test_token_goes_only_to_the_hub_and_redirects_only_to_http(hub, hub_files, out: Path, monkeypatch,
                                                               capsys) -> None:
    hub.redirect_get[CONFIG] = f"{hub.cdn_url}/{CONFIG[0]}/resolve/main/{CONFIG[1]}"   # another origin
    rc, events = _fetch_here(monkeypatch, capsys, out, hub.url, HF_TOKEN="hf_secret_token")
    assert rc == 0, events[-1]["message"]
    cdn_port = int(hub.cdn_url.rsplit(":", 1)[1])
    assert any(port != cdn_port and auth for port, _p, auth in hub.auth)       # the hub itself gets it
    assert not [a for port, _p, a in hub.auth if port == cdn_port and a], "the token left the hub"
    assert (out / CONFIG_DEST).read_bytes() == hub_files[CONFIG]

    (out / CONFIG_DEST).unlink()
    hub.redirect_get[CONFIG] = "file:///etc/hostname"
    rc, events = _fetch_here(monkeypatch, capsys, out, hub.url)
    assert rc == 1 and events[-1]["code"] == "download_failed" and "not http(s)" in events[-1]["message"]
    assert not (out / CONFIG_DEST).exists()


@pytest.mark.parametrize("endpoint", ["http://127.0.0.1:99999", "http://[::1"])
def test_malformed_endpoint_is_coded(endpoint: str, out: Path, monkeypatch, capsys) -> None:
    rc, events = _fetch_here(monkeypatch, capsys, out / "new", endpoint)
    assert rc == 1 and events[0]["type"] == "hello"
    assert events[-1]["code"] == "offline" and "not a valid address" in events[-1]["message"]
    assert not (out / "new").exists()


@pytest.mark.parametrize("value,words", [("", "--out is empty"), ("w" * 4200, "4200 characters"),
                                         ("a\x00b", "NUL")])
def test_bad_out_is_refused_at_the_job_boundary(value: str, words: str, out: Path, monkeypatch, capsys,
                                                tmp_path: Path) -> None:
    from engine.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    capsys.readouterr()
    rc = main(["fetch", "--out", value, "--progress", "json"])
    events = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.strip()]
    assert rc == 1 and events[0]["type"] == "hello" and events[-1]["code"] == "bad_request", events
    assert words in events[-1]["message"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["weights"]


def test_dropped_connections_resume_within_the_run(hub, hub_files, out: Path, monkeypatch, capsys) -> None:
    """A hub that hangs up the first GET of every file after 200 kB: one run, every file in place,
    the retries shown in progress."""
    from engine.fetch import transfer

    monkeypatch.setattr(transfer, "BACKOFF_S", 0.05)
    hub.drop_after = 200_000
    rc, events = _fetch_here(monkeypatch, capsys, out, hub.url)
    assert rc == 0, events[-1]
    retries = [e for e in events if e["type"] == "progress" and e.get("retry")]
    big = [k for k, d in hub_files.items() if len(d) > 200_000]
    assert len(retries) == len(big) and all(e["retry"] == 2 and e["retries"] == transfer.MAX_TRIES for e in retries)
    for (repo, path), data in hub_files.items():
        if (repo, path) == SPADE:
            assert (out / SPADE_DEST).read_bytes() == data
    assert any(r and r.startswith("bytes=200000-") for _m, _p, r in hub.requests)   # resumed, not restarted
    assert not staging(out).exists()


def test_retries_are_bounded_then_download_failed(hub, out: Path, monkeypatch, capsys) -> None:
    from engine.fetch import transfer

    monkeypatch.setattr(transfer, "BACKOFF_S", 0.01)
    hub.truncate.add(SPADE)                      # every try ends early
    rc, events = _fetch_here(monkeypatch, capsys, out, hub.url)
    assert rc == 1 and events[-1]["code"] == "download_failed" and f"{transfer.MAX_TRIES} tries" in events[-1]["message"]
    gets = [r for m, p, r in hub.requests if m == "GET" and p == f"/cdn/{hub.sha256(SPADE)}"]
    assert len(gets) == transfer.MAX_TRIES


def test_cancel_interrupts_a_stalled_read(hub_files, tmp_path: Path) -> None:
    """The host stops sending mid-file; a cancel (the token's flag) ends the read at once, not after
    READ_TIMEOUT_S: the watcher hangs up the socket and the next progress check raises."""
    import threading

    from engine.errors import Cancelled
    from engine.fetch import hub as hubmod, transfer

    flag = threading.Event()

    def on_bytes(have: int) -> None:
        if flag.is_set():
            raise Cancelled("download", have)

    with HubServer(hub_files) as hub:
        hub.stall_after = 100_000
        remote = hubmod.describe(next(f for f in _core_files() if f.path == SPADE[1]), hub.url)
        timer = threading.Timer(0.5, flag.set)
        timer.start()
        t0 = time.monotonic()
        with pytest.raises(Cancelled):
            transfer.download(remote, tmp_path / "s.part", hub.url, on_bytes, flag.is_set)
        waited = time.monotonic() - t0
    print(f"cancel of a stalled read took {waited - 0.5:.2f} s after the cancel")
    assert waited < transfer.READ_TIMEOUT_S / 2
    assert (tmp_path / "s.part").stat().st_size == 100_000          # the bytes so far stay for a resume


def _core_files() -> list:
    from engine.weights import fetch_parts

    return [f for part in fetch_parts(animals=False, xpose=False, detector=False) for f in part.files]
