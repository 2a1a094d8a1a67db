"""The interactive (modal + timer) path, driven tick by tick with synthetic events: a window
is not available in background mode, so the operator's modal() is called on a plain object
that shares the operator's code (EngineRunMixin + the operator's build/apply)."""
from __future__ import annotations

import time
import types

import bpy

from conftest import addon, scene_fingerprint


def probe():
    gen = addon("ops_motion").JOYVASA_OT_generate_motion
    reports = []

    class Probe(addon("ops_engine_run").EngineRunMixin):
        kind = "motion"
        build = gen.build
        apply = gen.apply

        def report(self, kind, msg):
            reports.append((set(kind), msg))

    return Probe(), reports


def tick_until_done(p, ctx, esc_when=None, limit=30.0):
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        run = addon("runtime").CURRENT
        etype = 'ESC' if (esc_when and run is not None and esc_when(run)) else 'TIMER'
        res = p.modal(ctx, types.SimpleNamespace(type=etype))
        if res not in ({'PASS_THROUGH'}, {'RUNNING_MODAL'}):
            return res
        time.sleep(0.05)
    raise AssertionError("modal operator did not finish")


def test_modal_success_applies_at_the_end(scene, speech_wav, tmp_path):
    st = scene.joyvasa
    st.audio_path, st.output_dir = str(speech_wav), str(tmp_path)
    p, reports = probe()
    assert p._start(bpy.context) is not None
    assert addon("runtime").CURRENT is not None
    assert bpy.data.objects["Rig"].animation_data is None       # nothing changes while running
    assert tick_until_done(p, bpy.context) == {'FINISHED'}
    assert addon("runtime").CURRENT is None and addon("runtime").LAST.state == "done"
    assert bpy.data.objects["Rig"].animation_data.action.get("joyvasa_take")
    assert any('INFO' in k and "Take" in m for k, m in reports)


def test_modal_escape_cancels_and_changes_nothing(scene, speech_wav, tmp_path, monkeypatch):
    monkeypatch.setenv("JOYVASA_FAKE_TRANSCRIPT", "hang")
    st = scene.joyvasa
    st.audio_path, st.output_dir = str(speech_wav), str(tmp_path)
    before = scene_fingerprint()
    p, reports = probe()
    assert p._start(bpy.context) is not None
    t0 = time.monotonic()
    res = tick_until_done(p, bpy.context, esc_when=lambda run: run.job.stage == "motion")
    assert res == {'CANCELLED'} and time.monotonic() - t0 < 15
    last = addon("runtime").LAST
    assert last.state == "cancelled" and addon("runtime").CURRENT is None
    assert last.returncode == 130
    assert scene_fingerprint() == before


def test_modal_cancel_button(scene, speech_wav, tmp_path, monkeypatch):
    monkeypatch.setenv("JOYVASA_FAKE_TRANSCRIPT", "hang")
    st = scene.joyvasa
    st.audio_path, st.output_dir = str(speech_wav), str(tmp_path)
    p, _ = probe()
    p._start(bpy.context)
    assert bpy.ops.joyvasa.cancel() == {'FINISHED'}     # the panel's Cancel button
    assert tick_until_done(p, bpy.context) == {'CANCELLED'}
    assert addon("runtime").LAST.state == "cancelled"


def test_modal_crash_reports_stderr(scene, speech_wav, tmp_path, monkeypatch):
    monkeypatch.setenv("JOYVASA_FAKE_TRANSCRIPT", "crash")
    st = scene.joyvasa
    st.audio_path, st.output_dir = str(speech_wav), str(tmp_path)
    before = scene_fingerprint()
    p, reports = probe()
    p._start(bpy.context)
    assert tick_until_done(p, bpy.context) == {'CANCELLED'}
    err = [m for k, m in reports if 'ERROR' in k]
    assert err and "simulated segfault" in err[0] and "Traceback" in err[0]
    assert scene_fingerprint() == before
