"""Rig presets on the Blender side: the user folder, and which preset a scene's targets get.

The preset format, validation, detection and maths are bpy-free (core/retarget.py); this module
only reads names off the chosen rig and face mesh and the extension's user folder.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import bpy

from .core import retarget

USER_SUBDIR = "rig_presets"


def user_dir(create: bool = False) -> Path | None:
    """The extension's user folder for rig presets (``extension_path_user``), None outside an extension."""
    pkg = __package__ or ""
    try:
        return Path(bpy.utils.extension_path_user(pkg, path=USER_SUBDIR, create=create))
    except (ValueError, AttributeError, OSError):
        return None


def target_names(rig: Any, mesh: Any) -> tuple[set[str], set[str]]:
    """Bone names of the rig and shape-key names of the face mesh (empty sets when not chosen)."""
    bones = {b.name for b in rig.data.bones} if rig is not None else set()
    key = getattr(getattr(mesh, "data", None), "shape_keys", None) if mesh is not None else None
    keys = {kb.name for kb in key.key_blocks} if key is not None else set()
    return bones, keys


def resolve(st: Any) -> tuple[retarget.Preset, retarget.Coverage, bool]:
    """(preset, its coverage on the scene's targets, auto-picked?) for ``scene.joyvasa``:
    the Rig Preset by name or path, or with Auto ("") the best match. The ARKit preset takes the
    panel's Name Map as its shape-key table. Raises PresetError (a ValueError) for a bad preset."""
    bones, keys = target_names(st.rig, st.mesh)
    choice = (st.rig_preset or "").strip()
    if choice:
        preset = retarget.find_preset(choice, user_dir())
        auto = False
    else:
        presets, _errors = retarget.list_presets(user_dir())
        preset, _ranked = retarget.detect(presets, bones, keys)
        auto = True
    if preset.name == retarget.ARKIT:
        preset = retarget.with_name_map(preset, st.name_map)
    return preset, retarget.coverage(preset, bones, keys), auto


def describe(st: Any) -> tuple[str, list[str], str]:
    """Panel text: (summary line, missing names, error) without raising."""
    try:
        preset, cov, auto = resolve(st)
    except ValueError as exc:
        return "", [], str(exc)
    return ("Auto: " if auto else "") + cov.summary(), cov.missing, ""


def enum_items(_self: Any = None, _context: Any = None) -> list[tuple[str, str, str]]:
    """Choices for the Rig Preset menu: Auto, then every shipped and user preset by name."""
    presets, errors = retarget.list_presets(user_dir())
    items = [("", "Auto", "Propose the preset whose names match the rig and mesh best")]
    items += [(p.name, p.name, (p.description or p.name)[:240]) for p in presets]
    _ENUM_CACHE[:] = items   # Blender needs the strings kept alive
    return items


_ENUM_CACHE: list = []
