"""Add-on reliability inside bpy (issue #13 defect 9): a broken render never reaches the Sequencer,
a hung engine in background mode is stopped by the watchdog, a wrong protocol major is refused."""
from __future__ import annotations

import json
from pathlib import Path

import bpy

from conftest import addon, scene_fingerprint


def run_op(op, **kw):
    try:
        return op(**kw), ""
    except RuntimeError as exc:  # operator reported an ERROR
        return {"CANCELLED"}, str(exc)


def _transcript(tmp_path: Path, name: str, lines: list[dict]) -> str:
    path = tmp_path / f"{name}.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    return str(path)


HELLO = {"type": "hello", "engine_version": "fake", "protocol": [1, 0], "python": "3.11", "torch": None,
         "device": "cpu", "dtype": "float32", "command": "animate"}


def _render_scene(scene, speech_wav, tmp_path):
    st = scene.joyvasa
    st.audio_path, st.start_frame, st.output_dir = str(speech_wav), 10, str(tmp_path)
    st.portrait_source = "IMAGE"
    st.portrait_image = bpy.data.images.new("Portrait", 32, 32)


def test_truncated_render_is_not_added(scene, speech_wav, tmp_path, monkeypatch):
    """The engine says done, but the file holds 0.5 s of a 2 s clip: no strip, a clear error."""
    _render_scene(scene, speech_wav, tmp_path)
    monkeypatch.setenv("JOYVASA_FAKE_TRANSCRIPT", _transcript(tmp_path, "short", [
        HELLO, {"_fake": "write_video", "seconds": 0.5}, {"type": "artifact", "kind": "video", "path": "$OUT"},
        {"type": "done", "outputs": {"video": "$OUT"}, "timings": {}, "peak_mem": {"host_mb": 1}}]))
    before = scene_fingerprint()
    res, msg = run_op(bpy.ops.joyvasa.render_portrait)
    assert res == {"CANCELLED"}
    assert "12 frames" in msg and "48 frames" in msg, msg
    assert scene_fingerprint() == before


def test_not_a_video_is_not_added(scene, speech_wav, tmp_path, monkeypatch):
    _render_scene(scene, speech_wav, tmp_path)
    junk = tmp_path / "junk.mp4"
    junk.write_text("not a video")
    monkeypatch.setenv("JOYVASA_FAKE_TRANSCRIPT", _transcript(tmp_path, "junk", [
        HELLO, {"type": "done", "outputs": {"video": str(junk)}, "timings": {}, "peak_mem": {"host_mb": 1}}]))
    before = scene_fingerprint()
    res, msg = run_op(bpy.ops.joyvasa.render_portrait)
    assert res == {"CANCELLED"} and "junk.mp4" in msg and "mp4" in msg, msg
    assert scene_fingerprint() == before


def test_background_watchdog_stops_a_silent_engine(scene, speech_wav, monkeypatch):
    """bpy wheels run in background mode: the operator runs synchronously; a hang must not block."""
    assert bpy.app.background
    scene.joyvasa.audio_path = str(speech_wav)
    monkeypatch.setenv("JOYVASA_FAKE_TRANSCRIPT", "hang")
    monkeypatch.setenv("JOYVASA_WATCHDOG_S", "1")
    before = scene_fingerprint()
    res, msg = run_op(bpy.ops.joyvasa.generate_motion)
    assert res == {"CANCELLED"}
    last = addon("runtime").LAST
    assert last.state == "failed" and last.error_code == "hang" and "watchdog" in last.message, last.message
    assert scene_fingerprint() == before


def test_newer_protocol_major_in_hello_is_refused(scene, speech_wav, tmp_path, monkeypatch):
    scene.joyvasa.audio_path = str(speech_wav)
    monkeypatch.setenv("JOYVASA_FAKE_TRANSCRIPT", _transcript(tmp_path, "v2", [
        dict(HELLO, protocol=[2, 0], command="motion"), {"_fake": "hang"}]))
    res, msg = run_op(bpy.ops.joyvasa.generate_motion)
    assert res == {"CANCELLED"}
    last = addon("runtime").LAST
    assert last.state == "failed" and "update both" in last.message, last.message
