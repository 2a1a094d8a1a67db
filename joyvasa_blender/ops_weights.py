"""Download Weights (and Check Download Size) in the add-on preferences.

Runs the engine's own fetcher (``python -m engine fetch --out DIR --progress json``) with the engine
Python, through the same :class:`EngineProcess` every engine run uses; a timer folds its events into
``runtime.FETCH`` (core/weights_fetch.py) and redraws the preferences, so Blender stays usable. Cancel
asks the engine to stop: finished files stay, the one in flight stays in the staging folder beside the
weights folder, nothing half-written is ever in it, and the next Download resumes. When Blender's
*Allow Online Access* is off nothing is downloaded: the engine runs with ``HF_HUB_OFFLINE=1`` only to
list the files and where they go (the manual route), and the preferences show that list.
"""

from pathlib import Path

import bpy
from bpy.props import BoolProperty

from . import runtime
from .core import engine_client as ec
from .core.weights_fetch import OFFLINE_ACCESS_TEXT, FetchProgress, fetch_argv
from .engine_setup import engine_config, get_prefs, user_dir

POLL_S = 0.25


def online_access_allowed() -> bool:
    """Blender 4.2+: the user's *Allow Online Access*; older Blender has no such switch."""
    return bool(getattr(bpy.app, "online_access", True))


def download_dir(prefs) -> str:
    """Where the weights go: the Download To preference, else ``<extension user folder>/weights``."""

    if prefs is not None and prefs.download_dir:
        return bpy.path.abspath(prefs.download_dir)
    return user_dir("weights")


def _redraw() -> None:
    for window in getattr(bpy.context.window_manager, "windows", []):
        for area in window.screen.areas:
            if area.type == 'PREFERENCES':
                area.tag_redraw()


def _take_events() -> None:
    """Fold the engine's events into the progress; on the end, fill the Weights preference."""
    job = runtime.FETCH
    if job is None:
        return
    for event in job.proc.drain():
        if event.get("type") != "_eof":
            job.progress.apply(event)
    job.proc.enforce_cancel()
    if job.proc.finished():
        job.progress.ended(job.proc.returncode, job.proc.stderr_tail(6))
        _finish(job)


def _finish(job) -> None:

    if job.progress.state == "done" and not job.progress.plan_only and job.progress.weights_dir:
        prefs = get_prefs()
        if prefs is not None:
            prefs.weights_dir = job.progress.weights_dir


def _poll_fetch():
    _take_events()
    _redraw()
    job = runtime.FETCH
    return None if job is None or job.progress.finished else POLL_S


def start_fetch(context, plan_only: bool = False) -> str | None:
    """Start ``engine fetch`` for the preferences' choices into ``runtime.FETCH``; the reason when it
    cannot start. With Allow Online Access off the engine runs with ``HF_HUB_OFFLINE=1`` (it touches
    no network) only to answer with the manual route."""
    online = online_access_allowed()
    cfg = engine_config(context)
    if cfg.error:
        if online:
            return cfg.error + " (Create Engine Environment first)"
        runtime.FETCH = runtime.Fetch(None, FetchProgress("", online_access_off=True))
        runtime.FETCH.progress.ended(None, [])
        return OFFLINE_ACCESS_TEXT
    prefs = get_prefs(context)
    dest = download_dir(prefs)
    argv = fetch_argv(cfg.python, dest, animals=prefs.fetch_animals, xpose=prefs.fetch_xpose,
                      detector=prefs.fetch_detector, plan_only=plan_only or not online)
    env = cfg.env()
    env.pop("JOYVASA_WEIGHTS", None)
    if not online:
        env["HF_HUB_OFFLINE"] = "1"
    proc = ec.EngineProcess(argv, cwd=str(cfg.engine_src), env=env)
    try:
        proc.start()
    except OSError as exc:
        return f"could not start the engine ({cfg.python}): {exc}"
    runtime.FETCH = runtime.Fetch(proc, FetchProgress(dest, plan_only or not online, online_access_off=not online))
    return None


class JOYVASA_OT_download_weights(bpy.types.Operator):
    """Download the official weights with the engine's fetcher (resumable; fills the Weights field when done)"""
    bl_idname = "joyvasa.download_weights"
    bl_label = "Download Weights"

    plan_only: BoolProperty(name="Only Check Size", default=False,
                            description="Ask the host what would be downloaded (files, size, free space) and stop",
                            options={'SKIP_SAVE'})

    def execute(self, context):
        if runtime.FETCH is not None and not runtime.FETCH.progress.finished:
            self.report({'WARNING'}, "A download is already running")
            return {'CANCELLED'}
        online = online_access_allowed()
        error = start_fetch(context, self.plan_only)
        if error:
            self.report({'ERROR'}, error)
            return {'CANCELLED'}
        if bpy.app.background:   # scripts and tests: no event loop, run to the end here
            job = runtime.FETCH
            job.proc.run_sync(job.progress.apply, idle_timeout=ec.watchdog_seconds(getattr(get_prefs(context), "watchdog_s", None)))
            _take_events()
            state = job.progress
            if state.state != "done":
                self.report({'ERROR'}, f"[{state.code}] {state.message}" if state.code else state.message)
                return {'CANCELLED'}
            self.report({'INFO'}, state.message)
            return {'FINISHED'}
        bpy.app.timers.register(_poll_fetch, first_interval=POLL_S)
        if not online:
            self.report({'ERROR'}, OFFLINE_ACCESS_TEXT)
            return {'CANCELLED'}
        return {'FINISHED'}


class JOYVASA_OT_cancel_download(bpy.types.Operator):
    """Stop the download: finished files stay, nothing half-written is left in the weights folder, the next Download resumes"""
    bl_idname = "joyvasa.cancel_download"
    bl_label = "Cancel Download"

    @classmethod
    def poll(cls, context):
        return runtime.FETCH is not None and runtime.FETCH.proc is not None and not runtime.FETCH.progress.finished

    def execute(self, context):
        runtime.FETCH.proc.request_cancel(grace=10.0)
        return {'FINISHED'}


def draw_download(layout, prefs) -> None:
    """The Download Weights box of the preferences."""
    from .core.weights_fetch import OPTIONAL_PARTS

    box = layout.box()
    box.label(text="Weights Download", icon='IMPORT')
    box.prop(prefs, "download_dir")
    if not prefs.download_dir:
        box.label(text=f"Default: {download_dir(prefs)}")
    col = box.column(align=True)
    for prop, _flag, _label, note in OPTIONAL_PARTS:
        row = col.row()
        row.prop(prefs, prop)
        row.label(text=note, icon='ERROR' if "NON-COMMERCIAL" in note else 'NONE')
    job = runtime.FETCH
    running = job is not None and job.proc is not None and not job.progress.finished
    if not online_access_allowed() and (job is None or job.progress.code != "online_access_off"):
        for line in OFFLINE_ACCESS_TEXT.split(". "):
            box.label(text=line.rstrip(".") + ".", icon='INFO')
    row = box.row()
    if running:
        box.progress(factor=job.progress.fraction, type='BAR', text=job.progress.bar_text()[:90])
        row.operator(JOYVASA_OT_cancel_download.bl_idname, icon='CANCEL')
    else:
        op = row.operator(JOYVASA_OT_download_weights.bl_idname, text="Check Download Size", icon='INFO')
        op.plan_only = True
        row.operator(JOYVASA_OT_download_weights.bl_idname, icon='IMPORT').plan_only = False
    if job is not None:
        icon = 'ERROR' if job.progress.state == "error" else 'CHECKMARK' if job.progress.state == "done" else 'TIME'
        lines = [ln for ln in job.progress.lines() if not (running and ln == job.progress.bar_text())]
        for i, line in enumerate(lines[:12]):
            box.label(text=line[:140], icon=icon if i == 0 else 'NONE')


CLASSES = (JOYVASA_OT_download_weights, JOYVASA_OT_cancel_download)
