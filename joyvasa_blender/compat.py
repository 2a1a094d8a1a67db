"""Small version shims for Blender 4.2 LTS .. 5.3 (actions, sequencer).

Why: 4.4 introduced slotted actions and 5.0 removed ``Action.fcurves``; 4.4 renamed
``sequences`` to ``strips`` and 5.0 dropped the old name; 5.0 edits the workspace's
``sequencer_scene``; 5.1 renamed the strip timing properties (``frame_final_start`` ->
``left_handle``, ``frame_start`` -> ``content_start``, ...) and warns that the old names are
"expected to be removed in Blender 6.0". Everything version-dependent is here, nowhere else;
the inside-bpy tests turn the add-on's own DeprecationWarnings into errors.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator

import bpy

if TYPE_CHECKING:
    import numpy as np

    #: an ID that gets its own Action in a take: an object, its shape keys, the armature data (VRM expressions)
    AnimOwner = bpy.types.Object | bpy.types.Key | bpy.types.Armature

SLOTTED = bpy.app.version >= (4, 4, 0)
#: the tested range, as the manifest says it (blender_version_min, blender_version_max exclusive)
SUPPORTED_TEXT = "Blender 4.2 LTS – 5.3"
SUPPORTED_MIN, SUPPORTED_MAX = (4, 2, 0), (6, 0, 0)


def version_note() -> str:
    """One line for the preferences: the supported range and this Blender, flagged when outside."""
    here = bpy.app.version_string
    if not (SUPPORTED_MIN <= tuple(bpy.app.version) < SUPPORTED_MAX):
        return f"Untested: this is Blender {here}; JoyVASA supports {SUPPORTED_TEXT}"
    return f"Supports {SUPPORTED_TEXT} (this is {here})"


def assign_new_action(id_data: AnimOwner, name: str) -> tuple[bpy.types.Action, Any]:
    """Give ``id_data`` (Object or Key) a brand-new Action; return (action, fcurves collection).

    The Action it had before is kept with a fake user, so a take never destroys the artist's work."""
    ad = id_data.animation_data or id_data.animation_data_create()
    old = ad.action
    if old is not None and not old.use_fake_user:
        old.use_fake_user = True
    action = bpy.data.actions.new(name)
    action.use_fake_user = True
    ad.action = action
    return action, fcurves_of(id_data)


def fcurves_of(id_data: AnimOwner) -> Any:
    """The F-curve collection for ``id_data``'s current action (legacy or slotted)."""
    ad = id_data.animation_data
    act = ad.action
    if not SLOTTED:
        return act.fcurves
    if ad.action_slot is None:
        ad.action_slot = act.slots.new(id_type=id_data.id_type, name=id_data.name)
    layer = act.layers[0] if act.layers else act.layers.new("Layer")
    strip = layer.strips[0] if layer.strips else layer.strips.new(type='KEYFRAME')
    return strip.channelbag(ad.action_slot, ensure=True).fcurves


def iter_fcurves(id_data: AnimOwner | bpy.types.Scene) -> Iterator[bpy.types.FCurve]:
    """All F-curves that animate ``id_data`` (empty when it has no action)."""
    ad = getattr(id_data, "animation_data", None)
    if ad is None or ad.action is None:
        return iter(())
    act = ad.action
    if not SLOTTED:
        return iter(act.fcurves)
    slot = ad.action_slot
    if slot is None:
        return iter(())
    out = []
    for layer in act.layers:
        for strip in layer.strips:
            bag = strip.channelbag(slot)
            if bag is not None:
                out.extend(bag.fcurves)
    return iter(out)


def find_fcurve(id_data: AnimOwner | bpy.types.Scene, data_path: str,
                index: int = 0) -> bpy.types.FCurve | None:
    for fc in iter_fcurves(id_data):
        if fc.data_path == data_path and fc.array_index == index:
            return fc
    return None


def key_array(fcurves: Any, data_path: str, index: int, co: np.ndarray, n: int) -> bpy.types.FCurve:
    """Bulk-key one F-curve: ``co`` is the flat [f0, v0, f1, v1, ...] float array of n keys."""
    fc = fcurves.find(data_path, index=index)
    if fc is None:
        fc = fcurves.new(data_path, index=index)
    kp = fc.keyframe_points
    first = len(kp)
    kp.add(n)
    if first:  # curve already had keys: write only the new ones
        for i in range(n):
            kp[first + i].co = (co[2 * i], co[2 * i + 1])
    else:
        kp.foreach_set("co", co)
    kp.foreach_set("interpolation", [1] * len(kp))   # LINEAR: values are dense, one per frame
    fc.update()
    return fc


# -- sequencer --------------------------------------------------------------------------------
def sequencer_scene(context: bpy.types.Context) -> bpy.types.Scene:
    """The scene the Sequencer edits (5.0: the workspace's sequencer_scene), else context.scene."""
    scene = getattr(context, "sequencer_scene", None)
    return scene if scene is not None else context.scene


def strips_collection(scene: bpy.types.Scene, create: bool = True) -> Any:
    se = scene.sequence_editor
    if se is None:
        if not create:
            return None
        se = scene.sequence_editor_create()
    return se.strips if hasattr(se, "strips") else se.sequences


def all_strips(scene: bpy.types.Scene) -> list[Any]:
    se = scene.sequence_editor
    if se is None:
        return []
    coll = se.strips_all if hasattr(se, "strips_all") else se.sequences_all
    return list(coll)


def sound_strips(scene: bpy.types.Scene) -> list[Any]:
    return [s for s in all_strips(scene) if s.type == 'SOUND']


#: strip timing, new name (5.1+) -> the name 4.2 .. 5.0 have (deprecated from 5.1, gone in 6.0)
STRIP_TIMING = {"left_handle": "frame_final_start", "right_handle": "frame_final_end",
                "duration": "frame_final_duration", "content_start": "frame_start"}


def _strip_timing(strip: Any, new: str) -> float:
    """Read a timing property by its current name; ``hasattr`` on the new name never warns."""
    return getattr(strip, new) if hasattr(strip, new) else getattr(strip, STRIP_TIMING[new])


def strip_left(strip: Any) -> int:
    """First timeline frame the strip shows (after trimming): its left handle."""
    return int(_strip_timing(strip, "left_handle"))


def strip_right(strip: Any) -> int:
    """First timeline frame after the strip (exclusive end): its right handle."""
    return int(_strip_timing(strip, "right_handle"))


def strip_duration(strip: Any) -> int:
    """Frames between the handles (what plays)."""
    return int(_strip_timing(strip, "duration"))


def strip_content_start(strip: Any) -> int:
    """Timeline frame of the source's first frame (sample 0 of a sound), trimmed or not."""
    return int(_strip_timing(strip, "content_start"))
