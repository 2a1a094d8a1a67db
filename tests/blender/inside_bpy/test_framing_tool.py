"""Face framing in Blender: the Frame Face tool stores the clicked points with the scene and Render
Portrait Animation / Preview Crop pass them to the engine as --crop points:...; the preview
loads the engine's crop and shows how it was framed."""
from __future__ import annotations

import json
from pathlib import Path

import bpy
import pytest

from conftest import addon


def _portrait(scene, w=40, h=30):
    st = scene.joyvasa
    st.portrait_source = "IMAGE"
    st.portrait_image = bpy.data.images.new("Portrait", w, h)
    return st


def _argv(log: Path, i: int = 0) -> list[str]:
    """The i-th engine command line, whether it ran one-shot or as a warm-engine request."""
    from conftest import logged_commands

    return logged_commands(log)[i]


def test_frame_face_stores_points_and_render_passes_them(scene, speech_wav, tmp_path, monkeypatch):
    st = _portrait(scene)
    st.audio_path, st.output_dir = str(speech_wav), str(tmp_path)
    assert st.crop_mode == "AUTO"
    # three clicks in the Image Editor's view coordinates (origin bottom-left): right eye first
    clicks = (0.75, 0.6, 0.25, 0.6, 0.5, 0.2)
    assert bpy.ops.joyvasa.frame_face(view_points=clicks) == {"FINISHED"}
    # stored with the scene in picture pixels (origin top-left), image-left eye first
    assert st.crop_mode == "POINTS"
    assert tuple(round(v, 3) for v in st.face_points) == (10.0, 12.0, 30.0, 12.0, 20.0, 24.0)
    log = tmp_path / "argv.jsonl"
    monkeypatch.setenv("JOYVASA_FAKE_ARGV_LOG", str(log))
    st.crop_scale = 2.6
    assert bpy.ops.joyvasa.render_portrait() == {"FINISHED"}, addon("runtime").LAST.report_text()
    argv = _argv(log)
    assert argv[0] == "animate"
    assert argv[argv.index("--crop") + 1] == "points:10,12,30,12,20,24"
    assert argv[argv.index("--scale") + 1] == "2.6" and "--vy" not in argv
    # saved with the .blend: the points survive a save and reload
    blend = tmp_path / "s.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    bpy.ops.wm.open_mainfile(filepath=str(blend))
    st2 = bpy.context.scene.joyvasa
    assert st2.crop_mode == "POINTS" and tuple(round(v, 3) for v in st2.face_points)[:2] == (10.0, 12.0)


def test_bad_clicks_change_nothing(scene):
    st = _portrait(scene)
    with pytest.raises(RuntimeError, match="eye"):
        bpy.ops.joyvasa.frame_face(view_points=(0.5, 0.5, 0.5, 0.5, 0.5, 0.2))
    assert st.crop_mode == "AUTO" and not any(st.face_points)


def test_points_mode_without_points_is_a_clear_error(scene, speech_wav, tmp_path):
    st = _portrait(scene)
    st.audio_path, st.output_dir, st.crop_mode = str(speech_wav), str(tmp_path), "POINTS"
    with pytest.raises(RuntimeError, match="Frame Face"):
        bpy.ops.joyvasa.render_portrait()


def test_box_mode_numeric(scene, speech_wav, tmp_path, monkeypatch):
    st = _portrait(scene)
    st.audio_path, st.output_dir, st.crop_mode = str(speech_wav), str(tmp_path), "BOX"
    st.crop_box = (4, 5, 20, 22)
    log = tmp_path / "argv.jsonl"
    monkeypatch.setenv("JOYVASA_FAKE_ARGV_LOG", str(log))
    assert bpy.ops.joyvasa.render_portrait() == {"FINISHED"}
    argv = _argv(log)
    assert argv[argv.index("--crop") + 1] == "4,5,20,22"


def test_preview_crop_loads_the_engine_crop(scene, tmp_path, monkeypatch):
    st = _portrait(scene, 32, 32)
    st.output_dir = str(tmp_path)
    st.face_index = 1
    log = tmp_path / "argv.jsonl"
    monkeypatch.setenv("JOYVASA_FAKE_ARGV_LOG", str(log))
    assert bpy.ops.joyvasa.preview_crop() == {"FINISHED"}, addon("runtime").LAST.report_text()
    argv = _argv(log)
    assert argv[0] == "crop" and argv[argv.index("--crop") + 1] == "auto"
    assert argv[argv.index("--face-index") + 1] == "1" and "--device" not in argv
    assert json.loads(log.read_text().splitlines()[0]) == ["run", "--job", "-", "--progress", "json"]
    img = bpy.data.images[addon("ops_framing").PREVIEW_IMAGE]
    assert tuple(img.size) == (16, 16) and Path(st.crop_preview).exists()
    assert st.crop_summary.startswith("mtcnn, face 1 of 2") and "tilt +4" in st.crop_summary
    # the detected points become editable Face Points
    assert bpy.ops.joyvasa.use_detected_points() == {"FINISHED"}
    assert st.crop_mode == "POINTS" and tuple(st.face_points) == pytest.approx((11, 12, 19, 12.5, 15, 20))
    # a second preview replaces the image instead of adding another
    assert bpy.ops.joyvasa.preview_crop() == {"FINISHED"}
    assert argv != _argv(log, 1) and _argv(log, 1)[_argv(log, 1).index("--crop") + 1].startswith("points:")
    assert len([i for i in bpy.data.images if i.name.startswith(addon("ops_framing").PREVIEW_IMAGE)]) == 1


def test_frame_face_outside_the_image_editor_says_where(scene):
    _portrait(scene)
    op = addon("ops_framing").JOYVASA_OT_frame_face
    assert op.bl_idname == "joyvasa.frame_face"
    # invoking from a 3D view (no Image Editor): a clear error, nothing stored
    with pytest.raises(RuntimeError, match="Image Editor"):
        bpy.ops.joyvasa.frame_face('INVOKE_DEFAULT')


def test_framing_panels_draw_in_every_mode(scene):
    from test_panels_draw import draw

    st = _portrait(scene)
    for mode, expect in (("AUTO", "face_index"), ("POINTS", "face_points"), ("BOX", "crop_box"), ("NONE", "crop_mode")):
        st.crop_mode = mode
        for cls in (bpy.types.JOYVASA_PT_view3d, bpy.types.JOYVASA_PT_image):
            log = draw(cls, bpy.context)
            props = {x[1] for x in log if x[0] == "prop"}
            ops = {x[1] for x in log if x[0] == "operator"}
            assert expect in props and "joyvasa.preview_crop" in ops
            if mode == "POINTS":
                # the click tool is offered where it works: in the Image Editor's panel
                assert ("joyvasa.frame_face" in ops) == (cls is bpy.types.JOYVASA_PT_image)


def test_batch_job_crop_text_reaches_the_engine(scene, fake_python, tmp_path):
    """tools/batch.py: a job's "crop" (the CLI text) and crop_scale set the scene's framing."""
    from conftest import write_wav
    from test_batch import run_batch

    blend = tmp_path / "shot.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    write_wav(tmp_path / "line.wav", seconds=1.0)
    img = bpy.data.images.new("P", 40, 30)
    img.filepath_raw, img.file_format = str(tmp_path / "p.png"), 'PNG'
    img.save()
    jobs = tmp_path / "jobs.json"
    jobs.write_text(json.dumps([{"name": "r", "audio": "line.wav", "portrait": "p.png", "render": True,
                                 "generate": False, "output_dir": "out",
                                 "crop": "points:10,12,30,12,20,24", "crop_scale": 2.8}]))
    log = tmp_path / "argv.jsonl"
    cp = run_batch(blend, jobs, {"JOYVASA_ENGINE_PYTHON": fake_python, "JOYVASA_FAKE_ARGV_LOG": str(log)})
    assert cp.returncode == 0, (cp.stdout + cp.stderr)[-4000:]
    check, argv = _argv(log, 0), _argv(log, -1)   # batch checks the framing first (engine crop), then renders
    for a in (check, argv):
        assert a[a.index("--crop") + 1] == "points:10,12,30,12,20,24" and a[a.index("--scale") + 1] == "2.8"
    assert check[0] == "crop" and argv[0] == "animate"


def test_frame_face_on_a_sideways_phone_photo(scene, tmp_path):
    """Blender shows a JPEG's stored pixels (EXIF orientation ignored); the engine reads it upright.
    Clicks are turned by the file's orientation, so the points are in the engine's pixels."""
    import struct

    img = bpy.data.images.new("stored", 100, 60)               # stored 100 wide, 60 high
    img.filepath_raw, img.file_format = str(tmp_path / "s.jpg"), 'JPEG'
    img.save()
    data = (tmp_path / "s.jpg").read_bytes()
    tiff = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 1) + struct.pack("<HHIHH", 0x0112, 3, 1, 6, 0) \
        + struct.pack("<I", 0)
    body = b"Exif\x00\x00" + tiff
    (tmp_path / "phone.jpg").write_bytes(data[:2] + b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body + data[2:])
    st = scene.joyvasa
    st.portrait_source, st.portrait_path = "FILE", str(tmp_path / "phone.jpg")
    # stored pixels: eyes at (30, 20) and (30, 40), mouth at (60, 30) (the face lies on its side)
    clicks = (0.3, 1 - 20 / 60, 0.3, 1 - 40 / 60, 0.6, 0.5)
    assert bpy.ops.joyvasa.frame_face(view_points=clicks) == {"FINISHED"}
    # upright (orientation 6 = turn 90 deg clockwise): (x, y) -> (60 - y, x): an upright face
    assert tuple(round(v, 3) for v in st.face_points) == (20.0, 30.0, 40.0, 30.0, 30.0, 60.0)
