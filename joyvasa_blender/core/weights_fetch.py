"""Download Weights, the bpy-free part: the ``engine fetch`` command line and what its events mean.

Why here: the preferences button (ops_weights.py) only starts an :class:`EngineProcess` with this
argv and feeds every event to :class:`FetchProgress`; the state and the text the panel shows are
plain Python, tested without Blender (tests/addon_core/test_weights_fetch.py).
"""
from __future__ import annotations

from typing import Any

#: what the panel says when Blender's "Allow Online Access" is off (Download Weights is refused)
OFFLINE_ACCESS_TEXT = ("Blender's Allow Online Access is off (Preferences > System > Network), so the add-on "
                       "downloads nothing. Turn it on and press Download Weights again, or download the files "
                       "listed below by hand, put them in one folder as shown and set Weights to it.")

#: the optional parts: (preference name, engine flag, label, licence note shown beside the check box)
OPTIONAL_PARTS = (
    ("fetch_animals", "--animals", "Animal Models", "LivePortrait animal models (MIT)"),
    ("fetch_xpose", "--xpose", "X-Pose (animal faces)", "NON-COMMERCIAL research use only"),
    ("fetch_detector", "--detector", "InsightFace Detector", "NON-COMMERCIAL research use only"),
)


def fetch_argv(python: str, dest: str, *, animals: bool = False, xpose: bool = False, detector: bool = False,
               plan_only: bool = False) -> list[str]:
    """``<python> -m engine fetch --out DEST [...] --progress json``."""
    argv = [python, "-m", "engine", "fetch", "--out", dest]
    for flag, on in (("--animals", animals), ("--xpose", xpose), ("--detector", detector), ("--plan-only", plan_only)):
        if on:
            argv.append(flag)
    return argv + ["--progress", "json"]


def human_bytes(n: float | None) -> str:
    if n is None:
        return "unknown"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


class FetchProgress:
    """Folds ``engine fetch`` events into what the preferences show.

    ``state``: starting | planned | downloading | verifying | done | error | cancelled.
    """

    def __init__(self, dest: str, plan_only: bool = False, online_access_off: bool = False) -> None:
        self.dest = dest
        self.plan_only = plan_only
        #: Blender forbids the network: the engine only lists the files (run with HF_HUB_OFFLINE=1)
        self.online_access_off = online_access_off
        self.state = "starting"
        self.plan: dict[str, Any] | None = None
        self.done_bytes = 0
        self.total_bytes = 0
        self.eta_s: float | None = None
        self.file = ""
        self.files_done = 0
        self.files_total = 0
        self.code: str | None = None
        self.message = ""
        self.weights_dir: str | None = None
        self.retry: str = ""     # "connection dropped: try 2 of 5 in 0.5 s" while the engine retries

    @property
    def finished(self) -> bool:
        return self.state in ("done", "error", "cancelled")

    @property
    def fraction(self) -> float:
        if self.state == "done":
            return 1.0
        return self.done_bytes / self.total_bytes if self.total_bytes else 0.0

    def apply(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "plan":
            self.plan = event
            self.total_bytes = int(event.get("download_bytes") or 0)
            self.files_total = int(event.get("download_files") or 0)
            self.state = "planned"
        elif kind == "progress" and event.get("stage") == "download":
            self.state = "downloading"
            self.done_bytes = int(event.get("done") or 0)
            self.total_bytes = int(event.get("total") or self.total_bytes)
            self.eta_s = event.get("eta_s")
            self.file = str(event.get("file") or "")
            self.files_done = int(event.get("files_done") or 0)
            self.files_total = int(event.get("files_total") or self.files_total)
            if event.get("retry"):     # the engine resumes a dropped connection itself (bounded tries)
                self.retry = (f"connection dropped: try {event['retry']} of {event.get('retries', '?')} "
                              f"in {float(event.get('retry_in_s') or 0):.1f} s")
            elif int(event.get("file_done") or 0) > 0:
                self.retry = ""
            if self.total_bytes and self.done_bytes >= self.total_bytes:
                self.state = "verifying"
        elif kind == "done":
            self.state = "done"
            self.weights_dir = (event.get("outputs") or {}).get("weights_dir") or (None if self.plan_only else self.dest)
            if self.plan_only and isinstance(event.get("plan"), dict):
                self.plan = event["plan"]
            self.message = self.plan_text() if self.plan_only else f"Weights ready in {self.weights_dir}"
        elif kind == "error":
            self.state = "error"
            self.code = str(event.get("code") or "error")
            self.message = str(event.get("message") or "")
            if self.online_access_off:
                route = self.message[self.message.find("Manual route:"):] if "Manual route:" in self.message else ""
                self.code, self.message = "online_access_off", OFFLINE_ACCESS_TEXT + ("\n" + route if route else "")
        elif kind == "cancelled":
            self.state = "cancelled"
            self.message = ("Cancelled: nothing half-written is in the weights folder; Download Weights again "
                            "resumes where it stopped")
        elif kind == "_watchdog":
            self.message = str(event.get("message") or "")

    def ended(self, returncode: int | None, stderr_tail: list[str]) -> None:
        """The process is gone: without a final event it crashed; say so with its log's end."""
        if not self.finished and self.online_access_off:
            self.apply({"type": "error", "code": "offline", "message": ""})
        elif not self.finished:
            self.state = "error"
            self.code = "crash"
            tail = " | ".join(line for line in stderr_tail if line.strip())[-300:]
            self.message = f"the engine stopped without an answer (exit {returncode}): {tail}"

    def plan_text(self) -> str:
        p = self.plan or {}
        if not p:
            return ""
        return (f"{p.get('download_files', 0)} of {len(p.get('files') or [])} files to download, "
                f"{human_bytes(p.get('download_bytes'))}; free: {human_bytes(p.get('free_bytes'))}")

    def bar_text(self) -> str:
        """The progress bar's text: bytes so far of the whole download, and the ETA."""
        if self.state == "verifying":
            return "Checking the files ..."
        eta = f", ETA {self.eta_s:.0f} s" if isinstance(self.eta_s, (int, float)) else ""
        return f"{human_bytes(self.done_bytes)} of {human_bytes(self.total_bytes)}{eta}"

    def lines(self) -> list[str]:
        """What the preferences show under the button, short lines."""
        out: list[str] = []
        if self.plan:
            out.append(self.plan_text())
        if self.state == "starting":
            out.append("Asking the host what to download ...")
        elif self.state in ("planned", "downloading"):
            out.append(self.bar_text())
            if self.file:
                out.append(f"file {min(self.files_done + 1, self.files_total)}/{self.files_total}: {self.file}")
            if self.retry:
                out.append(self.retry)
        elif self.state == "verifying":
            out.append("Checking every file with the engine's strict loaders ...")
        elif self.message:
            if self.code:
                out.append(f"[{self.code}]")
            out.extend(ln for ln in self.message.splitlines() if ln.strip())
        return out
