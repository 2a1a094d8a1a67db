"""The batch loop shared by the local and the Ray backends: skipping finished jobs, progress
with ETA on stderr (and protocol events with ``--progress json``), done markers, the summary.

Events (protocol v1, existing types only): ``hello`` {command: "batch", jobs, skipped, backend,
workers}; per job ``artifact`` / ``error`` (``fatal: false``) / ``warning`` (code
``job_retried``) carrying ``job``; ``progress`` {stage: "batch", unit: "job", done, total,
eta_s}; finally ``done`` {outputs: {}, summary}. The summary JSON is also the last line on
stdout in text mode. Exit code 1 when any job failed.
"""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, IO

from engine.batch.jobfile import BatchJob, clear_done, is_done, mark_done
from engine.contract.protocol import EventWriter


@dataclass
class BatchRun:
    jobs: list[BatchJob]
    state: Path
    events: EventWriter
    quiet: bool = False
    force: bool = False
    ok: list[str] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    retries: int = 0
    workers: dict[str, dict[str, Any]] = field(default_factory=dict)   # pid -> {"jobs", "model_loads"}
    t0: float = field(default_factory=time.monotonic)

    def log(self, msg: str) -> None:
        if not self.quiet:
            print(f"[batch] {msg}", file=sys.stderr, flush=True)

    def todo(self) -> list[BatchJob]:
        """The jobs to run; finished ones (marker + outputs present) are skipped unless ``force``."""
        out = []
        for job in self.jobs:
            if not self.force and is_done(job, self.state):
                self.skipped.append(job.id)
                self.log(f"{job.id}: already done, skipped")
            else:
                clear_done(job, self.state)
                out.append(job)
        return out

    @property
    def finished(self) -> int:
        return len(self.ok) + len(self.failed)

    def progress(self, total: int) -> None:
        done = self.finished
        elapsed = time.monotonic() - self.t0
        eta = elapsed / done * (total - done) if done else None
        self.events.emit("progress", stage="batch", done=done, total=total, unit="job",
                         eta_s=None if eta is None else round(eta, 1),
                         rate=round(done / elapsed, 4) if elapsed > 0 and done else None)
        failed = f", {len(self.failed)} failed" if self.failed else ""
        self.log(f"{done}/{total} jobs{failed}" + (f", ETA {eta:.0f}s" if eta is not None else ""))

    def record(self, job: BatchJob, result: dict[str, Any]) -> None:
        if result.get("pid") is not None:
            w = self.workers.setdefault(str(result["pid"]), {"jobs": 0, "model_loads": {}})
            w["jobs"] += 1
            w["model_loads"] = result.get("model_loads", {})     # cumulative per worker
        if result.get("ok"):
            mark_done(job, self.state, result["outputs"])
            self.ok.append(job.id)
            for kind, path in result["outputs"].items():
                self.events.emit("artifact", job=job.id, kind=kind, path=path)
            self.log(f"{job.id}: ok in {result.get('wall_s', 0):.1f}s -> {', '.join(result['outputs'].values())}")
        else:
            self.failed.append({"id": job.id, "code": result.get("code") or "internal",
                                "message": result.get("message", ""), "attempts": job.attempt + 1})
            self.events.emit("error", job=job.id, code=result.get("code") or "internal",
                             message=result.get("message", ""), fatal=False)
            self.log(f"{job.id}: FAILED [{result.get('code')}] {result.get('message', '')}")

    def retried(self, job: BatchJob, reason: str) -> None:
        self.retries += 1
        self.events.emit("warning", job=job.id, code="job_retried", message=reason)
        self.log(f"{job.id}: {reason}")

    def summary(self) -> dict[str, Any]:
        return {"jobs": len(self.jobs), "ok": self.ok, "skipped": self.skipped, "failed": self.failed,
                "retries": self.retries, "workers": self.workers, "wall_s": round(time.monotonic() - self.t0, 2)}

    def finish(self, stdout: IO[str] | None) -> int:
        summary = self.summary()
        self.events.emit("done", outputs={}, summary=summary)
        if stdout is not None:
            print(json.dumps(summary), file=stdout, flush=True)
        self.log(f"{len(self.ok)} ok, {len(self.skipped)} skipped, {len(self.failed)} failed "
                 f"in {summary['wall_s']:.1f}s")
        return 1 if self.failed else 0


def remove_partials(job: BatchJob) -> None:
    """Delete the partial files a killed worker left next to this job's outputs, with the engine's
    own rule (:func:`engine.fileio.clean_stale_partials`: dead writers on this machine; another
    node's partials are cleaned there by the next write, or after a day)."""
    from engine.fileio import clean_stale_partials

    for key in ("out", "frames_dir", "save_motion"):
        if job.args.get(key):
            clean_stale_partials(Path(job.args[key]))


def run_local(run: BatchRun, todo: list[BatchJob]) -> None:
    """One warm worker in this process, jobs in file order; per-job progress events forwarded."""
    from engine.batch.worker import Worker

    worker = Worker()
    total = len(todo)
    run.progress(total)
    for job in todo:
        run.log(f"{job.id}: {job.command} started (pid {os.getpid()})")

        def forward(event: dict, job_id: str = job.id) -> None:
            if event.get("type") in ("progress", "warning"):
                fields = {k: v for k, v in event.items() if k not in ("v", "type", "seq", "t", "job")}
                run.events.emit(event["type"], job=job_id, **fields)

        result = worker.run(job.to_request(), forward)
        if result.get("code") == "cancelled":
            raise KeyboardInterrupt
        run.record(job, result)
        run.progress(total)

