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


def output_dir(context: Any) -> Path:
    """Resolved output folder: ``//`` paths need a saved .blend, otherwise the user folder."""
    from .prefs import user_dir

    raw = context.scene.joyvasa.output_dir
    if raw.startswith("//") and not bpy.data.filepath:
        path = Path(user_dir("output"))
    else:
        path = Path(bpy.path.abspath(raw or "//joyvasa"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def resolve_audio(context: Any) -> tuple[str, int]:
    """(audio file, start frame): a sound strip's file and start frame, or the file + start_frame."""
    st = context.scene.joyvasa
    if st.audio_source == "STRIP":
        scene = compat.sequencer_scene(context)
        strip = next((s for s in compat.sound_strips(scene) if s.name == st.audio_strip), None)
        if strip is None:
            raise InputError(f"sound strip {st.audio_strip or '(none)'} not found in the Sequencer of {scene.name}")
        path = bpy.path.abspath(strip.sound.filepath, library=strip.sound.library)
        if not os.path.isfile(path):
            raise InputError(f"the sound of strip {strip.name} is not a file on disk ({path})")
        return path, int(strip.frame_start)
    path = bpy.path.abspath(st.audio_path)
    if not st.audio_path or not os.path.isfile(path):
        raise InputError(f"audio file not found: {st.audio_path or '(none)'}")
    return path, int(st.start_frame)


def resolve_portrait(context: Any) -> str:
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


def _free_channel(scene: Any, start: int, end: int, need: int = 2) -> int:
    """Lowest channel c such that channels c..c+need-1 have no strip overlapping [start, end)."""
    busy = set()
    for s in compat.all_strips(scene):
        if s.frame_final_start < end and s.frame_final_end > start:
            busy.add(s.channel)
    c = 1
    while any(c + i in busy for i in range(need)):
        c += 1
    return c


def add_strips(context: Any, video: str, audio: str | None, start: int, name: str = "JoyVASA") -> dict:
    """Movie strip + sound strip at ``start`` on free channels; extends frame_end (never shortens)."""
    if not os.path.isfile(video):
        raise InputError(f"rendered video not found: {video}")
    scene = compat.sequencer_scene(context)
    coll = compat.strips_collection(scene)
    probe = coll.new_movie(name=name, filepath=video, channel=128, frame_start=start)
    end = probe.frame_final_end
    coll.remove(probe)
    chan = _free_channel(scene, start, end, 2 if audio else 1)
    movie = coll.new_movie(name=name, filepath=video, channel=chan, frame_start=start)
    out: dict[str, Any] = {"movie": movie.name, "channel": chan, "start": start, "end": movie.frame_final_end,
                           "warnings": []}
    if audio:
        try:
            sound = coll.new_sound(name=f"{name} audio", filepath=audio, channel=chan + 1, frame_start=start)
            out["sound"] = sound.name
        except RuntimeError as exc:   # the bpy 4.2 wheel has no audio support
            out["warnings"].append(f"sound strip not added: {exc}")
    if scene.frame_end < movie.frame_final_end - 1:
        scene.frame_end = movie.frame_final_end - 1
    return out
