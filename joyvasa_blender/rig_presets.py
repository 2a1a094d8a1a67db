"""Rig presets on the Blender side: the user folder, and which preset a scene's targets get.

The preset format, validation, detection and maths are bpy-free (core/retarget.py); this module
only reads names off the chosen rig and face mesh and the extension's user folder.
"""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import bpy
import numpy as np

from .core import retarget

if TYPE_CHECKING:
    from .props import JOYVASA_PG_mapping_row, JOYVASA_PG_settings

USER_SUBDIR = "rig_presets"


def user_dir(create: bool = False) -> Path | None:
    """The extension's user folder for rig presets (``extension_path_user``), None outside an extension."""
    pkg = __package__ or ""
    try:
        return Path(bpy.utils.extension_path_user(pkg, path=USER_SUBDIR, create=create))
    except (ValueError, AttributeError, OSError):
        return None


def target_names(rig: bpy.types.Object | None, mesh: bpy.types.Object | None) -> tuple[set[str], set[str]]:
    """Bone names of the rig and shape-key names of the face mesh (empty sets when not chosen), plus
    ``vrm:<expression>`` for each expression of a VRM add-on avatar."""
    bones = {b.name for b in rig.data.bones} if rig is not None else set()
    key = getattr(getattr(mesh, "data", None), "shape_keys", None) if mesh is not None else None
    keys = {kb.name for kb in key.key_blocks} if key is not None else set()
    keys |= {retarget.VRM_PREFIX + n for n in vrm_expression_paths(rig)}     # a VRM add-on avatar's expressions
    return bones, keys


def resolve(st: JOYVASA_PG_settings) -> tuple[retarget.Preset, retarget.Coverage, bool]:
    """(preset, its coverage on the scene's targets, auto-picked?) for ``scene.joyvasa``:
    the edited mapping table when Use Edited Mapping is on, else the Rig Preset by name or path,
    or with Auto ("") the best match. The ARKit preset takes the panel's Name Map as its shape-key
    table, plus the eyeLook* keys when Gaze is on. Raises PresetError (a ValueError) for a bad preset or table."""
    bones, keys = target_names(st.rig, st.mesh)
    if st.use_rig_mapping and len(st.rig_mapping):
        base = _base_preset(st, bones, keys)[0]
        preset = retarget.preset_from_rows(f"{st.rig_mapping_from or base.name} (edited)", table_rows(st), base.head)
        return preset, retarget.coverage(preset, bones, keys), False
    preset, auto = _base_preset(st, bones, keys)
    if preset.name == retarget.ARKIT:
        preset = retarget.with_name_map(preset, st.name_map, gaze=st.include_gaze)
    return preset, retarget.coverage(preset, bones, keys), auto


def table_rows(st: JOYVASA_PG_settings) -> list[dict[str, Any]]:
    """The mapping table as core rows."""
    return [row_dict(r) for r in st.rig_mapping]


#: the fields of a mapping-table row (core/retarget.py rows)
ROW_FIELDS = ("channel", "kind", "target", "bone", "axis", "full", "rest", "gain", "offset", "lo", "hi", "space", "aim")


def row_dict(row: JOYVASA_PG_mapping_row) -> dict[str, Any]:
    """One mapping-table row (the panel's property group) as a core row."""
    return {k: getattr(row, k) for k in ROW_FIELDS}


def _base_preset(st: JOYVASA_PG_settings, bones: set[str], keys: set[str]) -> tuple[retarget.Preset, bool]:
    """The chosen preset file (by name or path), or Auto's best match; (preset, auto-picked?)."""
    choice = (st.rig_preset or "").strip()
    if choice:
        return with_vrm_eyes(retarget.find_preset(choice, user_dir()), st.rig), False
    presets, _errors = retarget.list_presets(user_dir())
    return with_vrm_eyes(retarget.detect(presets, bones, keys)[0], st.rig), True


def describe(st: JOYVASA_PG_settings) -> tuple[str, list[str], str]:
    """Panel text: (summary line, missing names, error) without raising."""
    try:
        preset, cov, auto = resolve(st)
    except ValueError as exc:
        return "", [], str(exc)
    return ("Auto: " if auto else "") + cov.summary(), cov.missing, ""


def enum_items(_self: bpy.types.Operator | None = None,
               _context: bpy.types.Context | None = None) -> list[tuple[str, str, str]]:
    """Choices for the Rig Preset menu: Auto, then every shipped and user preset by name."""
    presets, errors = retarget.list_presets(user_dir())
    items = [("", "Auto", "Propose the preset whose names match the rig and mesh best")]
    seen: set[str] = set()
    for p in presets:                       # one entry per name: the one find_preset picks
        if p.name.lower() not in seen:
            seen.add(p.name.lower())
            items.append((p.name, p.name, (p.description or p.name)[:240]))
    _ENUM_CACHE[:] = items   # Blender needs the strings kept alive
    return items


_ENUM_CACHE: list = []


#: probe step of rig_geometry (rig units): small, so Limit Distance and similar constraints stay out of it
_PROBE = 1e-3


def rig_geometry(rig: bpy.types.Object, preset: retarget.Preset, head_bone: str,
                 layer: bpy.types.ViewLayer | None = None) -> retarget.RigGeometry:
    """Measure on ``rig`` what the preset's head-space and aim targets need (core/retarget.py):
    for each such bone, how its location channels move it in the head bone's frame (probed by
    moving it a millimetre along each channel and evaluating the pose, so a bone whose location is
    in its parent's space - Rigify's eye_common - is handled like any other), and an aim target's
    distance from the midpoint of its eyes. The pose is restored. A function of the rig only: the
    live player calls it once and evaluates any block of motion rows with it."""
    geo = retarget.RigGeometry()
    if rig is None or head_bone not in rig.pose.bones:
        return geo
    H_rest = np.array(rig.data.bones[head_bone].matrix_local.to_3x3().normalized())
    for bone in retarget.head_space_bones(preset, "rotation"):
        if bone in rig.data.bones:
            geo.rest_in_head[bone] = H_rest.T @ np.array(rig.data.bones[bone].matrix_local.to_3x3().normalized())
    wanted = {b: aim for b, aim in retarget.head_space_bones(preset).items() if b in rig.pose.bones}
    layer = layer or bpy.context.view_layer
    head = rig.pose.bones[head_bone]
    for bone, aim in wanted.items():
        pb = rig.pose.bones[bone]
        saved = tuple(pb.location)
        try:
            pb.location = (0.0, 0.0, 0.0)
            layer.update()
            H = np.array(head.matrix.to_3x3().normalized())           # the head's frame now (armature axes)
            p0 = np.array(pb.matrix.translation)
            eyes = [rig.pose.bones[e] for e in aim if e in rig.pose.bones]
            if eyes:
                mid = np.mean([np.array(e.head) for e in eyes], axis=0)
                geo.aim_distance[bone] = float(np.linalg.norm(p0 - mid))
            A = np.zeros((3, 3))
            for i in range(3):
                loc = [0.0, 0.0, 0.0]
                loc[i] = _PROBE
                pb.location = loc
                layer.update()
                A[:, i] = (np.array(pb.matrix.translation) - p0) / _PROBE
        finally:
            pb.location = saved
            layer.update()
        HA = H.T @ A                                                  # channel -> head frame
        if abs(np.linalg.det(HA)) > 1e-9:
            geo.to_channels[bone] = np.linalg.inv(HA)
    return geo


# -- the VRM Add-on for Blender (io_scene_vrm / bpy-vrm-format): its expressions and humanoid ------
#: VRM 1.0 preset expression -> the VRM 0.x blend-shape group preset that means the same
VRM0_PRESETS = {"aa": "a", "ih": "i", "ou": "u", "ee": "e", "oh": "o", "blink": "blink", "blinkLeft": "blink_l",
                "blinkRight": "blink_r", "happy": "joy", "angry": "angry", "sad": "sorrow", "relaxed": "fun",
                "lookUp": "lookup", "lookDown": "lookdown", "lookLeft": "lookleft", "lookRight": "lookright",
                "neutral": "neutral"}


def _vrm_ext(rig: bpy.types.Object | None) -> Any:
    return getattr(getattr(rig, "data", None), "vrm_addon_extension", None) if rig is not None else None


def vrm_humanoid(rig: bpy.types.Object | None) -> dict[str, str]:
    """The VRM humanoid's head, neck, left_eye, right_eye bones of an armature that carries VRM
    metadata (the VRM add-on enabled, a humanoid head assigned); {} otherwise."""
    ext = _vrm_ext(rig)
    if ext is None:
        return {}
    out: dict[str, str] = {}
    try:
        if str(ext.spec_version).startswith("0"):
            for hb in ext.vrm0.humanoid.human_bones:
                if hb.bone in ("head", "neck", "leftEye", "rightEye") and hb.node.bone_name:
                    out[{"leftEye": "left_eye", "rightEye": "right_eye"}.get(hb.bone, hb.bone)] = hb.node.bone_name
        else:
            bones = ext.vrm1.humanoid.human_bones
            for key in ("head", "neck", "left_eye", "right_eye"):
                name = getattr(bones, key).node.bone_name
                if name:
                    out[key] = name
    except AttributeError:
        return {}
    return {k: v for k, v in out.items() if v in rig.data.bones} if out.get("head") else {}


#: the look expressions a VRM avatar whose look-at type is "bone" does not use (its eye bones turn instead)
VRM_LOOK = {"lookUp": "lookUp", "lookDown": "lookDown", "lookLeft": "lookImageRight", "lookRight": "lookImageLeft"}
#: the eyes' turn in radians at gaze 1 and its clamp (35 / 39 degrees), about the head's up (Y) and left (X)
#: axes: as MakeHuman's eye bones (an upright head bone: X = the character's left, Y = up, Z = forward)
VRM_EYE_YAW, VRM_EYE_PITCH = (1.0, 0.61), (-0.9, 0.68)


def vrm_look_at_bones(rig: bpy.types.Object | None) -> tuple[str, str] | None:
    """(left eye, right eye) bones of a VRM add-on avatar whose look-at type is bone (VRM 1.0
    ``look_at.type`` "bone", VRM 0.x ``look_at_type_name`` "Bone") and whose humanoid has both eyes;
    None when its look-at is by expressions / blend shapes, or it has no eye bones."""
    ext, human = _vrm_ext(rig), vrm_humanoid(rig)
    if ext is None or not {"left_eye", "right_eye"} <= set(human):
        return None
    try:
        if str(ext.spec_version).startswith("0"):
            bone = ext.vrm0.first_person.look_at_type_name == "Bone"
        else:
            bone = ext.vrm1.look_at.type == "bone"
    except AttributeError:
        return None
    return (human["left_eye"], human["right_eye"]) if bone else None


def with_vrm_eyes(preset: retarget.Preset, rig: bpy.types.Object | None) -> retarget.Preset:
    """A preset that keys VRM look expressions, on an avatar that looks with its eye bones (VRM's
    look-at type bone): the look expressions replaced by head-space turns of the VRM humanoid's
    eye bones (gazeX about the head's up axis, gazeY about its left axis, clamped to 35/39 degrees).
    Other presets and avatars that look with expressions: unchanged."""
    looks = {c for c, ts in preset.channels.items() for t in ts if t.kind == "vrm_expression" and t.name in VRM_LOOK}
    eyes = vrm_look_at_bones(rig) if looks else None
    if eyes is None:
        return preset
    channels = {c: ts for c, ts in preset.channels.items() if c not in looks}
    for channel, axis, (full, lim) in (("gazeX", 1, VRM_EYE_YAW), ("gazeY", 0, VRM_EYE_PITCH)):
        channels[channel] = tuple(retarget.Target("bone", "", eye, "rotation", axis, full, 0.0, 1.0, 0.0, -lim, lim,
                                                  "head") for eye in eyes)
    return dataclasses.replace(preset, channels=channels)


def vrm_expression_paths(rig: bpy.types.Object | None) -> dict[str, str]:
    """VRM 1.0 preset expression -> the data path of its keyable ``preview`` on the armature data:
    the add-on's VRM 1.0 expressions, or the VRM 0.x blend-shape group of the matching preset."""
    ext = _vrm_ext(rig)
    if ext is None or not vrm_humanoid(rig):
        return {}
    if str(ext.spec_version).startswith("0"):
        groups = ext.vrm0.blend_shape_master.blend_shape_groups
        index = {g.preset_name: i for i, g in reversed(list(enumerate(groups)))}
        return {name: f"vrm_addon_extension.vrm0.blend_shape_master.blend_shape_groups[{index[p]}].preview"
                for name, p in VRM0_PRESETS.items() if p in index}
    snake = {n: re.sub(r"([A-Z])", r"_\1", n).lower() for n in retarget.VRM_EXPRESSIONS}
    preset = ext.vrm1.expressions.preset
    return {n: f"vrm_addon_extension.vrm1.expressions.preset.{s}.preview" for n, s in snake.items()
            if hasattr(preset, s)}
