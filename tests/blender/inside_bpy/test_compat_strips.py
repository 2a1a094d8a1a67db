"""Strip timing through compat (4.2 names up to 5.0, 5.1's handle names after) and the
add-on-scoped DeprecationWarning filter that catches the next renamed API."""
from __future__ import annotations

import warnings

import bpy
import pytest

from conftest import MODULE, addon


def _color_strip(start: int = 5, length: int = 10):
    scene = bpy.context.scene
    coll = addon("compat").strips_collection(scene)
    try:   # 5.x: length; 4.2 .. 4.5: frame_end
        return coll.new_effect(name="probe", type='COLOR', channel=3, frame_start=start, length=length)
    except TypeError:
        return coll.new_effect(name="probe", type='COLOR', channel=3, frame_start=start, frame_end=start + length)


def test_strip_timing_helpers(scene):
    compat = addon("compat")
    strip = _color_strip(5, 10)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)   # the helpers never touch a deprecated name
        got = (compat.strip_left(strip), compat.strip_right(strip), compat.strip_duration(strip),
               compat.strip_content_start(strip))
    assert got == (5, 15, 10, 5)


def test_helpers_use_the_current_names(installed):
    """From 5.1 every name compat maps from is present and the old ones warn; before, only the old ones exist."""
    compat = addon("compat")
    strip_type = getattr(bpy.types, "Strip", None) or bpy.types.Sequence
    props = strip_type.bl_rna.properties
    new_names = set(compat.STRIP_TIMING)
    if bpy.app.version >= (5, 1, 0):
        assert new_names <= set(props.keys())
    else:
        assert not (new_names & set(props.keys()))
        assert set(compat.STRIP_TIMING.values()) <= set(props.keys())


def test_addon_deprecation_warnings_are_errors(scene):
    """A deprecated API used from an add-on module fails the suite; the same access from test code
    only warns. On 5.1+ this is Blender's own warning for ``frame_final_start``."""
    strip = _color_strip()
    addon_globals = {"__name__": MODULE + ".apply_media", "strip": strip}
    code = "strip.frame_final_start" if bpy.app.version >= (5, 1, 0) else \
        "__import__('warnings').warn('old API', DeprecationWarning)"
    # Blender's C getter sets the warning-as-error but returns a value, so Python reports a
    # SystemError whose cause is the DeprecationWarning: either way the add-on's call fails.
    with pytest.raises((DeprecationWarning, SystemError)) as info:
        exec(compile(code, "<addon>", "eval"), addon_globals)
    chain = [info.value, info.value.__cause__, info.value.__context__]
    assert any(isinstance(e, DeprecationWarning) for e in chain), repr(chain)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        exec(compile(code, "<test>", "eval"), {"__name__": "test_code", "strip": strip})
    if bpy.app.version >= (5, 1, 0):
        assert any("removed in Blender 6.0" in str(w.message) for w in seen)


#: deprecated RNA names the add-on may still spell, with why each use is not the deprecated one
ALLOWED_DEPRECATED_NAMES = {
    "frame_start": "Scene.frame_start (only Strip.frame_start is deprecated; strips go through compat)",
}


def test_addon_source_names_no_deprecated_api(installed):
    """Static companion of the warning filter, for code paths no test runs: no attribute of the
    add-on's source is a name Blender marks ``is_deprecated`` (5.1+ reports it per property),
    except through compat's fallback table and the allowed list above."""
    import ast
    from pathlib import Path

    deprecated = {}
    for name in dir(bpy.types):
        rna = getattr(getattr(bpy.types, name), "bl_rna", None)
        for prop in (rna.properties if rna is not None else ()):
            if getattr(prop, "is_deprecated", False):   # 5.1+
                deprecated.setdefault(prop.identifier, f"{name}.{prop.identifier}: {prop.deprecated_note}")
    if bpy.app.version >= (5, 1, 0):
        assert "frame_final_start" in deprecated
    else:   # older Blender has no deprecation flags: the names 5.1 renames must still go through compat
        deprecated = {old: f"renamed to {new} in 5.1" for new, old in addon("compat").STRIP_TIMING.items()}
    root = Path(addon("compat").__file__).parent
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr in deprecated and node.attr not in ALLOWED_DEPRECATED_NAMES:
                found.append(f"{path.relative_to(root)}:{node.lineno} .{node.attr} ({deprecated[node.attr]})")
    assert not found, "\n".join(found)
