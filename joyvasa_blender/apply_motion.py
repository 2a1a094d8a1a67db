"""Write a motion file into the scene as a new take: head bone, channel properties, shape keys,
keypoint empties. Keys are written in bulk (foreach_set), one new Action per target.

How each target is derived (all sampled at every scene frame, see motion_core.resample):
  head bone   the camera-frame rotation Rz(roll) Ry(yaw) Rx(pitch), relative to the chosen
              neutral pose, scaled by the head strength (slerp from identity), converted to the
              bone's local space with its rest matrix (or mapped onto chosen axes), keyed in the
              bone's own rotation mode; location optionally from the translation.
  channels    custom properties pitch/yaw/roll (degrees), tx/ty/tz, scale, exp_00..exp_62
              (exp scaled by expression x lips/eyes strengths) plus the semantic channels
              (jawOpen, eyeBlinkLeft, ...) for drivers.
  preset      the scene's rig preset (core/retarget.py, Auto = best match): semantic.project
              (NNLS on the spec's directions) -> semantic.readout (+ visemes, derived channels) ->
              shape keys, bone channels and properties; the head rotation split between the
              preset's neck and head bones (the composed rotation equals the motion's).
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import bpy
import numpy as np

from . import compat, rig_presets
from .core import motion_core as mc, retarget
from .core.take_plan import plan_take

if TYPE_CHECKING:
    from .props import JOYVASA_PG_settings

def guess_head_bone(rig: bpy.types.Object) -> str:
    """First bone named like head / Head / DEF-head (exact names first)."""
    names = [b.name for b in rig.data.bones]
    for n in names:
        if re.fullmatch(r"(DEF[-_.])?head", n, re.IGNORECASE):
            return n
    for n in names:
        if "head" in n.lower() and "top" not in n.lower():
            return n
    return ""


def _take_action(owner: bpy.types.Object) -> bpy.types.Action | None:
    for o in (owner, getattr(getattr(owner, "data", None), "shape_keys", None)):
        ad = getattr(o, "animation_data", None) if o is not None else None
        action = getattr(ad, "action", None) if ad is not None else None
        if action is not None and action.get("joyvasa_take") and action.get("joyvasa_motion"):
            return action
    return None


def active_take(context: bpy.types.Context) -> tuple[str, str, int] | None:
    """(take name, motion file, start frame) of the active take: the JoyVASA take on the active
    object (its action or its shape keys' action), else on the rig, the channels empty or the
    face mesh, else the last motion keyed in this scene; None when there is none. Used by
    Re-apply Controls and Export Motion."""
    st = context.scene.joyvasa
    owners = [getattr(context, "active_object", None), st.rig, bpy.data.objects.get("JoyVASA Motion"), st.mesh]
    for owner in owners:
        action = _take_action(owner) if owner is not None else None
        if action is not None:
            return (action.name, bpy.path.abspath(str(action["joyvasa_motion"])),
                    int(action.get("joyvasa_start_frame", st.start_frame)))
    if st.motion_path:
        from pathlib import Path
        return st.last_take or Path(st.motion_path).stem, bpy.path.abspath(st.motion_path), int(st.start_frame)
    return None


def take_name(meta: dict, settings: JOYVASA_PG_settings) -> str:
    seed = meta.get("seed", settings.seed)
    sampler = meta.get("sampler", settings.sampler)
    steps = meta.get("steps", settings.steps)
    return f"JV_seed{seed}_{sampler}{steps}"


def _tag_action(action: bpy.types.Action, meta: dict, settings: JOYVASA_PG_settings, motion_path: str, start: int,
                fps: float) -> None:
    action["joyvasa_take"] = True
    action["joyvasa_motion"] = motion_path
    action["joyvasa_start_frame"] = int(start)
    action["joyvasa_scene_fps"] = float(fps)
    for key in ("seed", "sampler", "steps", "cfg_scale", "engine_version", "smoothed", "audio_sha256"):
        if key in meta:
            v = meta[key]
            action[f"joyvasa_{key}"] = v if isinstance(v, (int, float, str)) else str(v)
    action["joyvasa_settings"] = {"pose_reference": settings.pose_reference, "axis_mode": settings.axis_mode,
                                  "reference_mode": settings.reference_mode, "region": settings.region}
    action["joyvasa_controls"] = meta.get("controls", "")     # the controls the engine applied ("" = none)


def _head_bones(rig: bpy.types.Object, st: JOYVASA_PG_settings, preset: retarget.Preset,
                warnings: list[str]) -> tuple[str, str]:
    """(head bone, neck bone or "") for the take: the panel's Head Bone, else the preset's head,
    else the first bone named like head; the preset's neck when the rig has it above the head."""
    bones = rig.data.bones
    vrm = rig_presets.vrm_humanoid(rig) if any(t.kind == "vrm_expression" for _c, t in preset.targets()) else {}
    head = (st.head_bone or (preset.head.bone if preset.head.bone in bones else "") or vrm.get("head", "")
            or guess_head_bone(rig))
    if head not in bones:
        raise ValueError(f"bone {head or '(none)'} not found in {rig.name}: choose a Head Bone")
    neck = preset.head.neck or (vrm.get("neck", "") if not preset.head.bone else "")
    if not neck or preset.head.neck_share <= 0:
        return head, ""
    if neck not in bones:
        warnings.append(f"neck bone {neck} of preset {preset.name} not in {rig.name}: all head rotation on {head}")
        return head, ""
    parent = bones[head].parent
    while parent is not None and parent.name != neck:
        parent = parent.parent
    if parent is None:
        warnings.append(f"{neck} is not above {head} in {rig.name}: all head rotation on {head}")
        return head, ""
    return head, neck


def _layer_of(context: bpy.types.Context, obj: bpy.types.Object) -> bpy.types.ViewLayer | None:
    """A view layer that evaluates ``obj`` (the context's, else the first of the scene that has it)."""
    layer = getattr(context, "view_layer", None)
    if layer is None or obj.name not in layer.objects:
        layer = next((vl for vl in context.scene.view_layers if obj.name in vl.objects), layer)
    return layer


# -- presets replace each other: what earlier takes keyed on the rig and its meshes ------------
#: the rest value of the pose channels a take keys (custom properties have no known rest: kept)
_REST = {"location": (0.0, 0.0, 0.0), "rotation_euler": (0.0, 0.0, 0.0), "scale": (1.0, 1.0, 1.0),
         "rotation_quaternion": (1.0, 0.0, 0.0, 0.0), "rotation_axis_angle": (0.0, 0.0, 1.0, 0.0), "value": (0.0,),
         "preview": (0.0,)}


def _take_owners(rig: bpy.types.Object | None, mesh: bpy.types.Object | None) -> list[compat.AnimOwner]:
    """The IDs a take may key: the rig (and its armature data: VRM expressions), the face mesh and
    every mesh the rig deforms or parents, with their shape keys."""
    meshes = [mesh] if mesh is not None else []
    if rig is not None:
        for ob in bpy.data.objects:
            if ob.type == 'MESH' and (ob.parent == rig or any(m.type == 'ARMATURE' and m.object == rig
                                                               for m in ob.modifiers)):
                meshes.append(ob)
    out, seen = [], set()
    for owner in ([rig, rig.data] if rig is not None else []) + meshes + [getattr(m.data, "shape_keys", None)
                                                                         for m in meshes]:
        if owner is not None and owner.as_pointer() not in seen:
            seen.add(owner.as_pointer())
            out.append(owner)
    return out


def _previous_takes(owners: list[Any]) -> list[tuple[Any, Any, set[tuple[str, int]]]]:
    """(owner, its JoyVASA take Action, the channels it keys) for each owner playing a take; the
    artist's own Actions are not takes and are never listed."""
    out = []
    for owner in owners:
        ad = owner.animation_data
        action = ad.action if ad is not None else None
        if action is not None and action.get("joyvasa_take"):
            out.append((owner, action, {(fc.data_path, fc.array_index) for fc in compat.iter_fcurves(owner)}))
    return out


def _retire_previous(previous: list[tuple[Any, Any, set[tuple[str, int]]]]) -> list[str]:
    """After keying a take: an earlier take still assigned where this one keyed nothing is
    unassigned (its Action stays in the file, as every take's does), and every control an earlier
    take keyed that this one does not returns to its rest pose. Returns one line per owner."""
    lines = []
    for owner, action, paths in previous:
        ad = owner.animation_data
        unassigned = ad.action == action
        if unassigned:
            ad.action = None
        now = {(fc.data_path, fc.array_index) for fc in compat.iter_fcurves(owner)}
        gone = sorted(paths - now)
        reset = sum(_reset_to_rest(owner, path, index) for path, index in gone)
        if unassigned or reset:
            what = f"{action.get('joyvasa_preset', 'take')} take {action.name}"
            lines.append(f"{owner.name}: " + (f"removed {what} ({len(paths)} F-curves)" if unassigned else
                                              f"replaced {what}") + (f", {reset} controls back to rest" if reset else ""))
    return lines


def _reset_to_rest(owner: compat.AnimOwner, path: str, index: int) -> bool:
    """Set one keyed channel (a pose bone's transform, a shape key's value) to its rest value."""
    base, _dot, attr = path.rpartition(".")
    if attr not in _REST or not base:
        return False
    try:
        struct = owner.path_resolve(base)
        current = getattr(struct, attr)
        if attr in ("value", "preview"):                  # a shape key, a VRM expression
            setattr(struct, attr, 0.0)
        else:
            current[index] = _REST[attr][index]
    except (ValueError, AttributeError, IndexError, TypeError):
        return False
    return True


def _pose_rotation(pb: bpy.types.PoseBone) -> tuple[float, ...]:
    return getattr(pb, mc.rotation_data_path(pb.rotation_mode))[:]


def _head_inherit(context: bpy.types.Context, rig: bpy.types.Object, neck: str, head: str) -> float:
    """How much of a neck rotation the head bone's world rotation follows (1: a plain child,
    0: isolated as Rigify's head with Head Follow off): measured once by turning the neck by a
    test angle and evaluating the pose, then restoring it."""
    import mathutils

    layer = getattr(context, "view_layer", None)
    if layer is None or rig.name not in layer.objects:
        layer = next((vl for vl in context.scene.view_layers if rig.name in vl.objects), None)
    if layer is None:
        return 1.0                  # not evaluated anywhere: assume a plain child
    pn, ph = rig.pose.bones[neck], rig.pose.bones[head]
    saved = _pose_rotation(pn)
    layer.update()
    h0 = ph.matrix.to_3x3().normalized()
    n0 = pn.matrix.to_3x3().normalized()
    test = mathutils.Quaternion((1.0, 0.0, 0.0), 0.5)
    try:
        if pn.rotation_mode == "QUATERNION":
            pn.rotation_quaternion = test
        elif pn.rotation_mode == "AXIS_ANGLE":
            pn.rotation_axis_angle = (0.5, 1.0, 0.0, 0.0)
        else:
            pn.rotation_euler = test.to_euler(pn.rotation_mode)
        layer.update()
        turned_neck = (pn.matrix.to_3x3().normalized() @ n0.inverted()).to_quaternion().angle
        turned_head = (ph.matrix.to_3x3().normalized() @ h0.inverted()).to_quaternion().angle
    finally:
        setattr(pn, mc.rotation_data_path(pn.rotation_mode), saved)
        layer.update()
    return float(np.clip(turned_head / turned_neck, 0.0, 1.0)) if turned_neck > 1e-6 else 1.0


def _bone_world(rig: bpy.types.Object, pb: bpy.types.PoseBone) -> np.ndarray:
    return np.array(rig.matrix_world.to_3x3().normalized() @ pb.bone.matrix_local.to_3x3())


def _key_bone_rotation(rig: bpy.types.Object, fcurves: Any, bone: str, M_cam: np.ndarray, st: JOYVASA_PG_settings,
                       start: int, n: int) -> None:
    """Key camera-frame rotations (N, 3, 3) on ``bone`` in its own rotation mode (the panel's axes)."""
    pb = rig.pose.bones[bone]
    if st.axis_mode == "AUTO":
        M_local = mc.bone_local_rotation(M_cam, _bone_world(rig, pb))
    else:
        p, y, r = mc.pyr_from_rotation(M_cam)
        M_local = mc.manual_axis_rotation(p, y, r, st.pitch_axis, st.yaw_axis, st.roll_axis)
    mode = pb.rotation_mode
    path = f'pose.bones["{bpy.utils.escape_identifier(bone)}"].{mc.rotation_data_path(mode)}'
    for i, vals in enumerate(mc.rotation_channels(M_local, mode)):
        compat.key_array(fcurves, path, i, mc.keyframe_co(vals, start), n)


def _key_plan_on_rig(rig: bpy.types.Object, fcurves: Any, plan: retarget.Plan, start: int, n: int) -> list[str]:
    """Key the preset's bone channels and bone/object properties on the rig (object properties
    also on a face mesh, when no rig is chosen); returns the bones keyed."""
    keyed = []
    for (bone, transform), vals in plan.bones.items():
        pb = rig.pose.bones[bone]
        base = f'pose.bones["{bpy.utils.escape_identifier(bone)}"]'
        if transform == "location":
            for axis in sorted(plan.bone_axes[(bone, transform)]):
                compat.key_array(fcurves, f"{base}.location", axis, mc.keyframe_co(vals[:, axis], start), n)
        else:
            M = (mc.matrix_from_euler(vals, "XYZ") if transform == "rotation"  # local X, then Y, then Z
                 else _matrix_from_rotvec(vals))                                # head-space turns: axis x angle
            for i, ch in enumerate(mc.rotation_channels(M, pb.rotation_mode)):
                compat.key_array(fcurves, f"{base}.{mc.rotation_data_path(pb.rotation_mode)}", i,
                                 mc.keyframe_co(ch, start), n)
        keyed.append(bone)
    for (bone, prop), vals in plan.properties.items():
        owner = rig.pose.bones[bone] if bone else rig
        owner[prop] = float(vals[0])
        base = f'pose.bones["{bpy.utils.escape_identifier(bone)}"]' if bone else ""
        compat.key_array(fcurves, f'{base}["{bpy.utils.escape_identifier(prop)}"]', 0, mc.keyframe_co(vals, start), n)
    return sorted(set(keyed))


def _matrix_from_rotvec(v: np.ndarray) -> np.ndarray:
    """Rotation matrices (N, 3, 3) of rotation vectors (N, 3) (axis x angle, Rodrigues)."""
    angle = np.linalg.norm(v, axis=1)
    safe = np.where(angle > 1e-12, angle, 1.0)
    k = v / safe[:, None]
    K = np.zeros((len(v), 3, 3))
    K[:, 0, 1], K[:, 0, 2], K[:, 1, 2] = -k[:, 2], k[:, 1], -k[:, 0]
    K[:, 1, 0], K[:, 2, 0], K[:, 2, 1] = k[:, 2], -k[:, 1], k[:, 0]
    s, c = np.sin(angle)[:, None, None], np.cos(angle)[:, None, None]
    return np.eye(3)[None] + s * K + (1 - c) * (K @ K)


def pose_from_plan(rig: bpy.types.Object, plan: retarget.Plan, i: int = 0) -> list[str]:
    """Set the rig's pose to row ``i`` of the plan's bone channels, without keying (the axis
    probe's preview: exactly the values a take would key); returns the bones posed."""
    posed = []
    for (bone, transform), vals in plan.bones.items():
        pb = rig.pose.bones.get(bone)
        if pb is None:
            continue
        if transform == "location":
            for axis in plan.bone_axes[(bone, transform)]:
                pb.location[axis] = float(vals[i, axis])
        else:
            M = (mc.matrix_from_euler(vals[i:i + 1], "XYZ") if transform == "rotation"
                 else _matrix_from_rotvec(vals[i:i + 1]))
            channels = mc.rotation_channels(M, pb.rotation_mode)
            target = getattr(pb, mc.rotation_data_path(pb.rotation_mode))
            for k, ch in enumerate(channels):
                target[k] = float(ch[0])
        posed.append(bone)
    return posed


def _split_plan(plan: retarget.Plan, bones: set[str], warnings: list[str], rig_name: str) -> retarget.Plan:
    """The part of the plan the rig can take; the rest becomes one warning (missing is never an error)."""
    missing = sorted({b for b, _t in plan.bones if b not in bones} | {b for b, _p in plan.properties if b and b not in bones})
    if missing:
        warnings.append(f"bones not in {rig_name}: {', '.join(missing)}")
    return retarget.Plan(bones={k: v for k, v in plan.bones.items() if k[0] in bones},
                         bone_axes={k: v for k, v in plan.bone_axes.items() if k[0] in bones},
                         properties={k: v for k, v in plan.properties.items() if not k[0] or k[0] in bones})


def apply_motion(context: bpy.types.Context, motion_path: str, start_frame: int | None = None) -> dict:
    """Apply ``motion_path`` to the targets configured in ``scene.joyvasa`` through the scene's rig
    preset (core/retarget.py). Returns a summary {take, frames, actions, warnings, preset}. Raises
    MotionFileError / PresetError / ValueError before touching the scene when the file, the preset
    or the settings are invalid."""
    scene = context.scene
    st = scene.joyvasa
    motion = mc.load_motion(motion_path)           # validate before changing anything
    preset, cov, auto = rig_presets.resolve(st)     # a bad preset stops here, nothing keyed yet
    fps = scene.render.fps / scene.render.fps_base
    start = int(st.start_frame if start_frame is None else start_frame)
    warnings: list[str] = []
    if not preset.channels:
        warnings.append(f"{preset.name}: {retarget.HEAD_ONLY}")
    rig = st.rig
    mesh = st.mesh if st.apply_shape_keys else None
    bone_name, neck_name = "", ""
    if rig is not None and st.apply_head:
        bone_name, neck_name = _head_bones(rig, st, preset, warnings)
    if st.channels_target == "RIG" and rig is None:
        raise ValueError("Channels target is the rig, but no rig is chosen")
    # semantic channels -> the preset's readout (shape keys, bone channels, properties, channel props)
    geometry = (rig_presets.rig_geometry(rig, preset, bone_name or preset.head.bone or guess_head_bone(rig),
                                         _layer_of(context, rig)) if rig is not None else None)
    take = plan_take(motion, fps, preset, reference_mode=st.reference_mode, include_gaze=st.include_gaze,
                     pose_reference=st.pose_reference, mirrored_source=st.mirrored_source, geometry=geometry)
    s, proj, M_scaled, plan = take.sampled, take.projection, take.head, take.plan
    n = s.n_frames
    name = take_name(motion.meta, st)
    meta = dict(motion.meta, controls=motion.controls)
    summary: dict[str, Any] = {"take": name, "frames": n, "start": start, "actions": [], "warnings": warnings,
                               "preset": preset.name, "coverage": cov.summary(), "auto_preset": auto}

    def new_action(owner: compat.AnimOwner, keyed_by_preset: bool = True) -> Any:
        """The take's action on ``owner`` (tagged, listed in the summary); its F-curves."""
        action, fcurves = compat.assign_new_action(owner, name)
        _tag_action(action, meta, st, motion_path, start, fps)
        if keyed_by_preset:
            action["joyvasa_preset"] = preset.name
        summary["actions"].append(action.name)
        return fcurves

    rig_plan = (_split_plan(plan, {b.name for b in rig.data.bones}, warnings, rig.name) if rig is not None
                else retarget.Plan())
    mesh_props = {k: v for k, v in plan.properties.items() if not k[0]} if rig is None and st.mesh is not None else {}
    if rig is None and (plan.bones or len(mesh_props) < len(plan.properties)):
        warnings.append(f"preset {preset.name} keys bones: choose its rig")
    if rig is None and plan.expressions:
        warnings.append(f"preset {preset.name} keys VRM expressions: choose the avatar's armature as the rig")
    clash = sorted({b for b, t in rig_plan.bones if t in ("rotation", "rotvec")} & {bone_name, neck_name} - {""})
    if clash:
        raise ValueError(f"preset {preset.name}: bone {clash[0]} gets the head rotation and a rotation target")
    previous = _previous_takes(_take_owners(rig, st.mesh))      # what earlier takes keyed here

    # -- head (and neck) bones, the preset's bone channels -------------------------------------
    rig_fcurves = None
    if rig is not None and (bone_name or st.channels_target == "RIG" or rig_plan.bones or rig_plan.properties):
        inherit = _head_inherit(context, rig, neck_name, bone_name) if neck_name else 1.0
        rig_fcurves = new_action(rig)
    if bone_name:
        pb = rig.pose.bones[bone_name]
        if neck_name:
            M_neck, M_head = retarget.split_head_rotation(M_scaled, preset.head.neck_share, inherit)
            _key_bone_rotation(rig, rig_fcurves, neck_name, M_neck, st, start, n)
            _key_bone_rotation(rig, rig_fcurves, bone_name, M_head, st, start, n)
            summary["neck"] = neck_name
        else:
            _key_bone_rotation(rig, rig_fcurves, bone_name, M_scaled, st, start, n)
        summary["head_bone"] = bone_name
        if st.head_location:
            base = f'pose.bones["{bpy.utils.escape_identifier(bone_name)}"]'
            loc = mc.bone_local_location(s.t, _bone_world(rig, pb), st.location_scale)
            for i in range(3):
                compat.key_array(rig_fcurves, f"{base}.location", i, mc.keyframe_co(loc[:, i], start), n)
    if rig_fcurves is not None and (rig_plan.bones or rig_plan.properties):
        summary["bones"] = _key_plan_on_rig(rig, rig_fcurves, rig_plan, start, n)

    # -- channel properties -----------------------------------------------------------------
    if st.channels_target != "NONE":
        if st.channels_target == "RIG":
            ctrl, fcurves = rig, rig_fcurves
        else:
            ctrl = bpy.data.objects.get("JoyVASA Motion")
            if ctrl is None or ctrl.type != 'EMPTY':
                ctrl = bpy.data.objects.new("JoyVASA Motion", None)
                ctrl.empty_display_type = 'PLAIN_AXES'
                scene.collection.objects.link(ctrl)
            elif ctrl.name not in scene.objects:
                scene.collection.objects.link(ctrl)
            fcurves = new_action(ctrl, keyed_by_preset=False)
        summary["channels_object"] = ctrl.name
        chans = s.channels()
        for cname, vals in proj.as_dict().items():
            if not cname.startswith("_"):
                chans[cname] = np.clip(vals, 0.0, 1.0)
        for key, vals in chans.items():
            ctrl[key] = float(vals[0])
            compat.key_array(fcurves, f'["{key}"]', 0, mc.keyframe_co(vals, start), n)
        summary["channels"] = len(chans)

    # -- shape keys -------------------------------------------------------------------------
    if mesh is not None and plan.shape_keys:
        key = mesh.data.shape_keys
        if key is None:
            warnings.append(f"{mesh.name} has no shape keys: shape keys skipped")
        else:
            present = {kb.name for kb in key.key_blocks}
            missing = sorted(k for k in plan.shape_keys if k not in present)
            if missing:
                warnings.append(f"shape keys not on {mesh.name}: {', '.join(missing)}")
            wanted = {k: v for k, v in plan.shape_keys.items() if k in present}
            if wanted:
                fcurves = new_action(key)
                for kname, vals in wanted.items():
                    compat.key_array(fcurves, f'key_blocks["{bpy.utils.escape_identifier(kname)}"].value', 0,
                                     mc.keyframe_co(vals, start), n)
            summary["shape_keys"] = sorted(wanted)

    # -- the VRM add-on's expressions (their preview values, on the armature data) -----------------
    if rig is not None and plan.expressions:
        paths = rig_presets.vrm_expression_paths(rig)
        missing = sorted(k for k in plan.expressions if k not in paths)
        if missing:
            warnings.append(f"VRM expressions not on {rig.name}: {', '.join(missing)}")
        if len(missing) < len(plan.expressions):
            fcurves = new_action(rig.data)
            for expr, vals in plan.expressions.items():
                if expr in paths:
                    compat.key_array(fcurves, paths[expr], 0, mc.keyframe_co(vals, start), n)
            summary["expressions"] = sorted(k for k in plan.expressions if k in paths)

    # -- object properties on the face mesh when there is no rig ------------------------------
    if mesh_props:
        fcurves = new_action(st.mesh)
        _key_plan_on_rig(st.mesh, fcurves, retarget.Plan(properties=mesh_props), start, n)

    summary["removed"] = _retire_previous(previous)

    # -- keypoint empties -------------------------------------------------------------------
    if st.make_empties:
        summary["empties"] = _key_empties(scene, s, name, start, motion, st, fps, motion_path)

    end = start + n - 1
    if scene.frame_end < end:
        scene.frame_end = end      # extend, never shorten
    st.last_take = name
    st.motion_path = motion_path
    return summary


def _key_empties(scene: bpy.types.Scene, s: mc.Sampled, name: str, start: int, motion: mc.Motion,
                 st: JOYVASA_PG_settings, fps: float, motion_path: str) -> int:
    """21 empties under a 'JoyVASA Keypoints' parent, keyed at the driven keypoints (the motion
    file has no source keypoints, so a neutral layout + exp is used)."""
    pts = mc.driven_keypoints(s)                      # (n, 21, 3)
    parent = bpy.data.objects.get("JoyVASA Keypoints")
    if parent is None:
        parent = bpy.data.objects.new("JoyVASA Keypoints", None)
        scene.collection.objects.link(parent)
    for k in range(mc.N_KP):
        oname = f"JoyVASA kp{k:02d}"
        ob = bpy.data.objects.get(oname)
        if ob is None:
            ob = bpy.data.objects.new(oname, None)
            ob.empty_display_type = 'SPHERE'
            ob.empty_display_size = 0.02
            scene.collection.objects.link(ob)
            ob.parent = parent
        action, fcurves = compat.assign_new_action(ob, f"{name}_kp{k:02d}")
        _tag_action(action, dict(motion.meta, controls=motion.controls), st, motion_path, start, fps)
        for i in range(3):
            compat.key_array(fcurves, "location", i, mc.keyframe_co(pts[:, k, i], start), s.n_frames)
    return mc.N_KP
