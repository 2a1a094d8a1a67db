"""Inputs for the engine (portrait and audio files) and Sequencer output (movie + sound strips)."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import bpy

from . import compat


class InputError(ValueError):
    """A missing or unusable input; the message is shown to the user."""


UNSAVED_DEFAULT = "~/JoyVASA"


def output_dir(context: bpy.types.Context) -> Path:
    """Resolved output folder. The scene's folder if set, else the preferences' (``//joyvasa`` by
    default: next to the saved .blend). A ``//`` path of a never-saved file has no anchor: then the
    preferences' folder for unsaved files, a visible ``~/JoyVASA`` by default (docs/blender.md)."""
    from .engine_setup import get_prefs

    prefs = get_prefs(context)
    raw = context.scene.joyvasa.output_dir or (prefs.output_dir if prefs else "") or "//joyvasa"
    if raw.startswith("//") and not bpy.data.filepath:
        unsaved = (prefs.unsaved_output_dir if prefs else "") or UNSAVED_DEFAULT
        path = Path(os.path.expanduser(bpy.path.abspath(unsaved)))
    else:
        path = Path(os.path.expanduser(bpy.path.abspath(raw)))
    path.mkdir(parents=True, exist_ok=True)
    return path


EDIT_SCENE_SUFFIX = " JoyVASA Edit"


def target_scene(context: bpy.types.Context, create: bool = True) -> bpy.types.Scene | None:
    """The scene that receives rendered strips, never silently the 3D scene itself (its Sequencer
    would replace what F12 renders: ``render.use_sequencer``). In order: the scene picked in the
    panel; Blender 5.0's workspace sequencer scene when it is another scene; a dedicated scene
    ``'<scene> JoyVASA Edit'`` (created with the 3D scene's frame rate, remembered in the panel)."""
    scene = context.scene
    st = scene.joyvasa
    if st.sequencer_scene is not None:
        return st.sequencer_scene
    ws = getattr(getattr(context, "workspace", None), "sequencer_scene", None)
    if ws is not None and ws != scene:
        return ws
    name = scene.name + EDIT_SCENE_SUFFIX
    edit = bpy.data.scenes.get(name)
    if edit is None:
        if not create:
            return None
        edit = bpy.data.scenes.new(name)
        edit.render.fps, edit.render.fps_base = scene.render.fps, scene.render.fps_base
        edit.frame_start, edit.frame_end = scene.frame_start, scene.frame_start
    st.sequencer_scene = edit
    return edit


def _find_sound_strip(context: bpy.types.Context, name: str) -> Any:
    """The named sound strip: in the target sequencer scene first, then the scene the Sequencer edits."""
    scenes = [target_scene(context, create=False), compat.sequencer_scene(context), context.scene]
    for scene in [s for s in scenes if s is not None]:
        strip = next((s for s in compat.sound_strips(scene) if s.name == name), None)
        if strip is not None:
            return strip
    return None


def resolve_audio(context: bpy.types.Context) -> tuple[str, int]:
    """(audio file, start frame): a sound strip's file and start frame, or the file + start_frame."""
    st = context.scene.joyvasa
    if st.audio_source == "STRIP":
        strip = _find_sound_strip(context, st.audio_strip)
        if strip is None:
            raise InputError(f"sound strip {st.audio_strip or '(none)'} not found in the Sequencer")
        path = bpy.path.abspath(strip.sound.filepath, library=strip.sound.library)
        if not os.path.isfile(path):
            raise InputError(f"the sound of strip {strip.name} is not a file on disk ({path})")
        return path, compat.strip_content_start(strip)
    path = bpy.path.abspath(st.audio_path)
    if not st.audio_path or not os.path.isfile(path):
        raise InputError(f"audio file not found: {st.audio_path or '(none)'}")
    return path, int(st.start_frame)


def resolve_portrait(context: bpy.types.Context) -> str:
    """A portrait file for the engine; a packed or generated image is saved to a temp PNG."""
    st = context.scene.joyvasa
    if st.portrait_source == "FILE":
        path = bpy.path.abspath(st.portrait_path)
        if not st.portrait_path or not os.path.isfile(path):
            raise InputError(f"portrait file not found: {st.portrait_path or '(none)'}")
        return path
    img = st.portrait_image
    if img is None:
        raise InputError("no portrait image chosen")
    if img.packed_file is None and img.source == 'FILE' and not img.is_dirty:
        path = bpy.path.abspath(img.filepath, library=img.library)
        if os.path.isfile(path):
            return path
    tmpdir = Path(tempfile.mkdtemp(prefix="joyvasa_portrait_"))
    if img.packed_file is not None and img.source == 'FILE':
        ext = Path(img.filepath or img.name).suffix or ".png"
        out = tmpdir / f"portrait{ext}"
        out.write_bytes(img.packed_file.data)
        return str(out)
    if not img.has_data and img.size[0] == 0:
        raise InputError(f"image {img.name} has no pixels")
    out = tmpdir / "portrait.png"
    copy = img.copy()
    try:
        copy.filepath_raw = str(out)
        copy.file_format = 'PNG'
        copy.save()
    finally:
        bpy.data.images.remove(copy)
    return str(out)


def _free_channel(scene: bpy.types.Scene, start: int, end: int, need: int = 2) -> int:
    """Lowest channel c such that channels c..c+need-1 have no strip overlapping [start, end)."""
    busy = set()
    for s in compat.all_strips(scene):
        if compat.strip_left(s) < end and compat.strip_right(s) > start:
            busy.add(s.channel)
    c = 1
    while any(c + i in busy for i in range(need)):
        c += 1
    return c


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.normcase(os.path.abspath(a)) == os.path.normcase(os.path.abspath(b))


def _existing_sound(scene: bpy.types.Scene, audio: str, start: int) -> Any:
    """A sound strip of ``scene`` that already plays ``audio`` from ``start`` (reused, not duplicated)."""
    for s in compat.sound_strips(scene):
        path = bpy.path.abspath(s.sound.filepath, library=s.sound.library)
        if compat.strip_content_start(s) == int(start) and _same_file(path, audio):
            return s
    return None


def audio_frames(audio: str, fps: float) -> int | None:
    """Length of a WAV file in frames at ``fps`` (stdlib; None for other formats). One WAV reader:
    core/media_check.py, which also checks the rendered file before any strip is added."""
    from .core.media_check import wav_seconds

    seconds = wav_seconds(audio)
    return None if seconds is None else int(round(seconds * fps))


def add_strips(context: bpy.types.Context, video: str, audio: str | None, start: int, name: str = "JoyVASA") -> dict:
    """Movie strip (+ sound strip unless one already plays that file there) at ``start`` on free
    channels of the target sequencer scene (``target_scene``); the 3D scene is not touched. Extends
    that scene's frame_end (never shortens) and checks the strips' lengths against the audio."""
    if not os.path.isfile(video):
        raise InputError(f"rendered video not found: {video}")
    scene = target_scene(context)
    coll = compat.strips_collection(scene)
    probe = coll.new_movie(name=name, filepath=video, channel=128, frame_start=start)
    end = compat.strip_right(probe)
    coll.remove(probe)
    existing = _existing_sound(scene, audio, start) if audio else None
    chan = _free_channel(scene, start, end, 2 if (audio and existing is None) else 1)
    movie = coll.new_movie(name=name, filepath=video, channel=chan, frame_start=start)
    if getattr(movie, "elements", None) and scene.name.endswith(EDIT_SCENE_SUFFIX):
        elem = movie.elements[0]
        if elem.orig_width and elem.orig_height:   # F12 in the edit scene renders the clip at its size
            scene.render.resolution_x, scene.render.resolution_y = elem.orig_width, elem.orig_height
            scene.render.resolution_percentage = 100
    out: dict[str, Any] = {"scene": scene.name, "movie": movie.name, "channel": chan, "start": start,
                           "end": compat.strip_right(movie), "warnings": []}
    sound = existing
    if existing is not None:
        out["sound"], out["sound_reused"] = existing.name, True
    elif audio:
        try:
            sound = coll.new_sound(name=f"{name} audio", filepath=audio, channel=chan + 1, frame_start=start)
            out["sound"] = sound.name
        except RuntimeError as exc:   # the bpy 4.2 wheel has no audio support
            out["warnings"].append(f"sound strip not added: {exc}")
    # verify lengths: the video must cover the audio (±1 frame of rounding)
    fps = scene.render.fps / scene.render.fps_base
    expected = compat.strip_duration(sound) if sound is not None else (audio_frames(audio, fps) if audio else None)
    length = compat.strip_duration(movie)
    if expected and abs(length - expected) > 1:
        out["warnings"].append(f"video strip is {length} frames but the audio lasts {expected} "
                               f"at {fps:g} fps in {scene.name}: the file may be truncated or the frame rate differs")
    if scene.frame_end < compat.strip_right(movie) - 1:
        scene.frame_end = compat.strip_right(movie) - 1
    return out
