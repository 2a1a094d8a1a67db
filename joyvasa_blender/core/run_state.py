"""Run state of one engine run (bpy-free): the state machine from its events to done, failed or cancelled.

Why separate: the panel, the modal/timer path and the synchronous background path must agree
on what an event sequence means (done, failed, cancelled, crashed) and on the text shown to
the user. ``idle -> running -> done | failed | cancelled``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .contract.protocol import EXIT_CANCELLED, format_event_for_humans

STAGE_LABELS = {"load": "Loading models", "audio": "Reading audio", "motion": "Generating motion",
                "render": "Rendering frames", "encode": "Encoding video", "export": "Exporting",
                "batch": "Batch"}


@dataclass
class JobState:
    kind: str = "motion"                 # motion | animate | doctor
    state: str = "idle"                  # idle | running | done | failed | cancelled
    stage: str = ""
    done_units: float = 0
    total_units: float = 0
    eta_s: float | None = None
    device: str = ""
    message: str = ""                    # one line for the status bar / panel
    error_code: str = ""
    error_message: str = ""
    warnings: list[str] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)
    framing: dict[str, Any] = field(default_factory=dict)   # the ``framing`` event (crop, animate)
    timings: dict[str, Any] = field(default_factory=dict)
    stderr_tail: list[str] = field(default_factory=list)
    cancelling: bool = False             # cancel requested, engine not stopped yet
    got_done: bool = False
    got_cancelled: bool = False
    watchdog: str = ""                   # set when the watchdog stopped a silent engine
    returncode: int | None = None

    @property
    def progress(self) -> float:
        """Fraction 0..1 of the current stage (the panel shows stage label + ETA next to it)."""
        if self.state == "done":
            return 1.0
        return min(1.0, self.done_units / self.total_units) if self.total_units else 0.0

    @property
    def progress_text(self) -> str:
        if self.state != "running":
            return self.message
        if self.cancelling:
            return "Cancelling..."
        label = STAGE_LABELS.get(self.stage, self.stage or "Starting engine")
        txt = f"{label} {int(self.done_units)}/{int(self.total_units)}" if self.total_units else label
        if self.eta_s is not None:
            txt += f", ETA {self.eta_s:.0f}s"
        return txt

    def start(self) -> None:
        self.state = "running"
        self.message = "Starting engine..."

    def feed(self, ev: dict[str, Any]) -> None:
        kind = ev.get("type")
        if kind == "hello":
            self.device = str(ev.get("device", ""))
            self.message = format_event_for_humans(ev)
        elif kind == "progress":
            self.stage = str(ev.get("stage", ""))
            self.done_units = float(ev.get("done") or 0)
            self.total_units = float(ev.get("total") or 0)
            eta = ev.get("eta_s")
            self.eta_s = float(eta) if isinstance(eta, (int, float)) else None
            self.message = self.progress_text
        elif kind == "framing":
            self.framing = {k: v for k, v in ev.items() if k not in ("v", "type", "seq", "t", "job")}
        elif kind == "artifact":
            self.artifacts[str(ev.get("kind"))] = str(ev.get("path"))
        elif kind == "warning":
            self.warnings.append(format_event_for_humans(ev))
        elif kind == "error":
            self.error_code = str(ev.get("code", "internal"))
            self.error_message = str(ev.get("message", ""))
            self.message = format_event_for_humans(ev)
        elif kind == "done":
            self.got_done = True
            self.outputs = dict(ev.get("outputs") or {})
            self.timings = dict(ev.get("timings") or {})
        elif kind == "cancelled":
            self.got_cancelled = True
        elif kind == "_watchdog":
            self.watchdog = str(ev.get("message", "the engine looked hung"))

    def finish(self, returncode: int | None, stderr_tail: list[str], cancel_requested: bool = False) -> None:
        """Decide the final state from the events seen and the exit code."""
        self.returncode = returncode
        self.stderr_tail = list(stderr_tail)
        if self.watchdog:  # our cancel, not the user's: a failure to report
            self.state, self.error_code, self.error_message = "failed", "hang", self.watchdog
            self.message = f"Engine hung: {self.watchdog}"
        elif self.error_code == "protocol":  # the engine was stopped because it speaks another protocol
            self.state = "failed"
            self.message = f"Engine error [{self.error_code}]: {self.error_message}"
        elif self.got_cancelled or returncode == EXIT_CANCELLED or (cancel_requested and not self.got_done):
            self.state, self.message = "cancelled", "Cancelled: nothing was changed"
        elif self.got_done and returncode == 0:
            self.state, self.message = "done", "Finished"
        elif self.error_message:
            self.state = "failed"
            self.message = f"Engine error [{self.error_code}]: {self.error_message}"
        else:
            self.state = "failed"
            last = next((ln for ln in reversed(stderr_tail) if ln.strip()), "")
            self.error_code = self.error_code or "crash"
            self.error_message = (f"engine exited with code {returncode} without a result"
                                  + (f": {last.strip()}" if last else ""))
            self.message = f"Engine failed: {self.error_message}"

    def report_text(self, tail_lines: int = 8) -> str:
        """Multi-line text for an error report: message + the tail of the engine's stderr."""
        text = self.message
        tail = [ln for ln in self.stderr_tail if ln.strip()][-tail_lines:]
        if self.state == "failed" and tail:
            text += "\nEngine log (last lines):\n" + "\n".join(tail)
        return text
