"""Download Weights' bpy-free core: the fetch command line and how its events become panel state."""
from __future__ import annotations

from joyvasa_blender.core.weights_fetch import FetchProgress, fetch_argv, human_bytes

PLAN = {"type": "plan", "dir": "/w", "files": [{"path": "a"}, {"path": "b"}, {"path": "c"}], "download_files": 2,
        "download_bytes": 3 * 2**20, "free_bytes": 5 * 2**30}


def test_argv_names_the_flags_the_engine_has() -> None:
    from engine.commands.fetch import add_arguments
    import argparse

    argv = fetch_argv("/py", "/w", animals=True, xpose=True, detector=True, plan_only=True)
    assert argv[:6] == ["/py", "-m", "engine", "fetch", "--out", "/w"] and argv[-2:] == ["--progress", "json"]
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(argv[4:])            # the engine's own parser accepts every flag
    assert args.animals and args.xpose and args.detector and args.plan_only and args.progress == "json"
    assert fetch_argv("/py", "/w") == ["/py", "-m", "engine", "fetch", "--out", "/w", "--progress", "json"]


def test_events_fold_into_progress_then_done() -> None:
    p = FetchProgress("/w")
    assert p.lines() == ["Asking the host what to download ..."] and p.fraction == 0.0
    p.apply(PLAN)
    assert p.state == "planned" and p.lines()[0] == "2 of 3 files to download, 3.0 MiB; free: 5.0 GiB"
    p.apply({"type": "progress", "stage": "download", "done": 2**20, "total": 3 * 2**20, "eta_s": 4.2,
             "file": "JoyVASA/m.pt", "files_done": 0, "files_total": 2})
    assert p.state == "downloading" and abs(p.fraction - 1 / 3) < 1e-9
    assert p.bar_text() == "1.0 MiB of 3.0 MiB, ETA 4 s" and "file 1/2: JoyVASA/m.pt" in p.lines()
    p.apply({"type": "progress", "stage": "download", "done": 3 * 2**20, "total": 3 * 2**20, "eta_s": 0})
    assert p.state == "verifying" and not p.finished
    p.apply({"type": "done", "outputs": {"weights_dir": "/w"}})
    assert p.finished and p.weights_dir == "/w" and p.fraction == 1.0 and "Weights ready in /w" in p.lines()


def test_errors_cancel_and_crash_are_final_with_a_message() -> None:
    p = FetchProgress("/w")
    p.apply({"type": "error", "code": "offline", "message": "offline: no answer.\nManual route: ...\n  url -> DIR/x"})
    assert p.state == "error" and p.lines()[:3] == ["[offline]", "offline: no answer.", "Manual route: ..."]
    c = FetchProgress("/w")
    c.apply({"type": "cancelled", "at": {}})
    assert c.state == "cancelled" and "resumes" in c.message and c.weights_dir is None
    k = FetchProgress("/w")
    k.ended(-9, ["Traceback", "Killed"])
    assert k.state == "error" and k.code == "crash" and "exit -9" in k.message


def test_plan_only_never_claims_a_weights_folder() -> None:
    p = FetchProgress("/w", plan_only=True)
    p.apply(PLAN)
    p.apply({"type": "done", "outputs": {}, "plan": {k: v for k, v in PLAN.items() if k != "type"}})
    assert p.state == "done" and p.weights_dir is None and p.message.startswith("2 of 3 files")


def test_human_bytes() -> None:
    assert [human_bytes(n) for n in (None, 5, 2048, 3 * 2**30, 5 * 2**40)] == ["unknown", "5 B", "2.0 KiB", "3.0 GiB",
                                                                                "5120.0 GiB"]


def test_online_access_off_turns_the_engines_offline_answer_into_the_manual_route() -> None:
    from joyvasa_blender.core.weights_fetch import OFFLINE_ACCESS_TEXT

    p = FetchProgress("/w", plan_only=True, online_access_off=True)
    p.apply({"type": "error", "code": "offline", "message": "offline: HF_HUB_OFFLINE is set. Manual route: get these\n"
                                                            "  https://h/r/resolve/main/a.pth  ->  DIR/a.pth"})
    assert p.code == "online_access_off" and p.message.startswith(OFFLINE_ACCESS_TEXT)
    assert p.lines()[-2:] == ["Manual route: get these", "  https://h/r/resolve/main/a.pth  ->  DIR/a.pth"]
    q = FetchProgress("", online_access_off=True)     # no engine to ask: the text alone
    q.ended(None, [])
    assert q.code == "online_access_off" and q.message == OFFLINE_ACCESS_TEXT


def test_retries_of_a_dropped_connection_are_shown() -> None:
    """The engine resumes a dropped connection within the run; the preferences say so (issue #28)."""
    p = FetchProgress("/w")
    p.apply({"type": "progress", "stage": "download", "done": 10, "total": 100, "file": "a.pth", "file_done": 10,
             "file_total": 50, "files_done": 0, "files_total": 2, "retry": 2, "retries": 5, "retry_in_s": 0.5})
    assert "connection dropped: try 2 of 5 in 0.5 s" in p.lines()
    p.apply({"type": "progress", "stage": "download", "done": 20, "total": 100, "file": "a.pth", "file_done": 20,
             "file_total": 50, "files_done": 0, "files_total": 2})
    assert not [ln for ln in p.lines() if "dropped" in ln]
