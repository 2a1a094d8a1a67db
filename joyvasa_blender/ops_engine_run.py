"""The shared way operators run the engine: modal + event timer in the UI (never blocking),
synchronous in background mode (``bpy.app.background``) or with EXEC_DEFAULT.

Nothing in the scene changes until the engine has finished successfully; a cancelled or
failed run only reports (message + the tail of the engine's stderr) and leaves the scene as
it was.
"""
from __future__ import annotations

import sys
import time
from typing import Any

import bpy

from . import runtime
from .core import requests
from .core.engine_client import EngineProcess
from .core.run_state import JobState
from .core.worker import WARM_COMMANDS
from .engine_setup import engine_config, worker


def _redraw(context: bpy.types.Context) -> None:
    wm = context.window_manager
    for window in getattr(wm, "windows", []):
        for area in window.screen.areas:
            if area.type in {'VIEW_3D', 'SEQUENCE_EDITOR', 'PREFERENCES'}:
                area.tag_redraw()


class EngineRunMixin:
    """Subclasses set ``kind`` and implement ``build(context) -> (job dict, params)`` (the job from
    core/requests.py) and ``apply(context, job, params) -> str`` (the success message); both may
    raise ValueError. The preferences (weights, device, Precision) join the job here; the warm
    engine gets it as a request, a one-shot engine as ``engine run --job -``: the same JSON."""

    kind = "motion"
    _timer = None

    @classmethod
    def poll(cls, context):
        return runtime.CURRENT is None and runtime.LIVE is None     # a live session holds the warm engine

    # -- helpers ----------------------------------------------------------------------------
    def _start(self, context) -> runtime.Running | None:
        cfg = engine_config(context)
        if cfg.error:
            self.report({'ERROR'}, cfg.error)
            return None
        try:
            request, params = self.build(context)
        except (ValueError, OSError) as exc:
            self.report({'ERROR'}, str(exc))
            return None
        request = requests.with_prefs(request, cfg.job_prefs())
        job = JobState(kind=self.kind)
        job.start()
        try:
            if cfg.keep_warm and self.kind in WARM_COMMANDS:  # the same job, one request to the warm engine
                proc = worker(cfg).submit(self.kind, request)
            else:
                proc = EngineProcess(requests.one_shot_argv(cfg.python), cwd=cfg.engine_src,
                                     env=cfg.env(), stdin_text=requests.to_line(request)).start()
        except OSError as exc:
            self.report({'ERROR'}, f"could not start the engine ({cfg.python}): {exc}")
            return None
        params["job"] = request
        params["watchdog_s"] = cfg.watchdog_s
        runtime.CURRENT = runtime.Running(job=job, proc=proc, kind=self.kind, params=params)
        return runtime.CURRENT

    def _finish(self, context, run: runtime.Running) -> set:
        job = run.job
        job.finish(run.proc.returncode, run.proc.stderr_tail(40), run.proc.cancel_requested or run.cancel)
        runtime.CURRENT = None
        runtime.LAST = job
        if job.state == "done":
            try:
                msg = self.apply(context, job, run.params)
            except (ValueError, OSError, RuntimeError, KeyError) as exc:
                job.state, job.message = "failed", f"Could not use the engine's result: {exc}"
                self.report({'ERROR'}, job.message)
                return {'CANCELLED'}
            job.message = msg
            for w in job.warnings:
                self.report({'WARNING'}, w)
            self.report({'INFO'}, msg)
            return {'FINISHED'}
        if job.state == "cancelled":
            self.report({'WARNING'}, job.message)
        else:
            self.report({'ERROR'}, job.report_text())
        return {'CANCELLED'}

    # -- synchronous (background / EXEC_DEFAULT) --------------------------------------------
    def execute(self, context):
        run = self._start(context)
        if run is None:
            return {'CANCELLED'}
        last = [0.0]

        def on_event(ev):
            run.job.feed(ev)
            if ev.get("type") in ("progress", "error", "warning", "hello") and time.monotonic() - last[0] > 0.5:
                last[0] = time.monotonic()
                print(f"[JoyVASA] {run.job.message}", flush=True)

        try:
            run.proc.run_sync(on_event, should_cancel=lambda: run.cancel,
                              idle_timeout=run.params.get("watchdog_s") or None)
        except KeyboardInterrupt:
            run.proc.cancel()
        result = self._finish(context, run)
        print(f"[JoyVASA] {runtime.LAST.message}", file=sys.stdout if 'FINISHED' in result else sys.stderr, flush=True)
        return result

    # -- interactive ------------------------------------------------------------------------
    def invoke(self, context, event):
        if bpy.app.background or context.window is None:
            return self.execute(context)
        run = self._start(context)
        if run is None:
            return {'CANCELLED'}
        wm = context.window_manager
        self._timer = wm.event_timer_add(0.1, window=context.window)
        wm.modal_handler_add(self)
        self._status(context, run.job.progress_text)
        return {'RUNNING_MODAL'}

    def _status(self, context, text: str | None) -> None:
        ws = getattr(context, "workspace", None)
        if ws is not None and getattr(context, "window", None) is not None:
            ws.status_text_set(f"JoyVASA: {text}  (Esc to cancel)" if text else None)

    def _cleanup(self, context) -> None:
        if self._timer is not None:
            context.window_manager.event_timer_remove(self._timer)
            self._timer = None
        self._status(context, None)
        _redraw(context)

    def modal(self, context, event):
        run = runtime.CURRENT
        if run is None:              # cancelled from unregister / file load
            self._cleanup(context)
            return {'CANCELLED'}
        esc = event.type == 'ESC'
        if (esc or run.cancel) and not run.proc.cancel_requested:
            run.proc.request_cancel()          # non-blocking: the engine stops at its next checkpoint
            run.job.cancelling = True
        if event.type == 'TIMER' or run.proc.cancel_requested:
            run.proc.enforce_cancel()
            for ev in run.proc.drain():
                if ev.get("type") != "_eof":
                    run.job.feed(ev)
            self._status(context, run.job.progress_text)
            _redraw(context)
            if run.proc.finished():
                for ev in run.proc.drain():
                    run.job.feed(ev)
                self._cleanup(context)
                return self._finish(context, run)
        return {'RUNNING_MODAL'} if esc else {'PASS_THROUGH'}
