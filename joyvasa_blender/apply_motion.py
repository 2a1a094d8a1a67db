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
  shape keys  semantic.project (NNLS on the spec's directions) -> name map -> key_blocks values.
"""
from __future__ import annotations

import re
from typing import Any

import bpy
import numpy as np

from . import compat
from .core import motion_core as mc, semantic

def guess_head_bone(rig: Any) -> str:
    """First bone named like head / Head / DEF-head (exact names first)."""
    names = [b.name for b in rig.data.bones]
    for n in names:
        if re.fullmatch(r"(DEF[-_.])?head", n, re.IGNORECASE):
            return n
    for n in names:
        if "head" in n.lower() and "top" not in n.lower():
            return n
    return ""


def _take_action(owner: Any) -> Any:
    for o in (owner, getattr(getattr(owner, "data", None), "shape_keys", None)):
        ad = getattr(o, "animation_data", None) if o is not None else None
        action = getattr(ad, "action", None) if ad is not None else None
        if action is not None and action.get("joyvasa_take") and action.get("joyvasa_motion"):
            return action
    return None


def active_take(context: Any) -> tuple[str, str, int] | None:
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


def take_name(meta: dict, settings: Any) -> str:
    seed = meta.get("seed", settings.seed)
    sampler = meta.get("sampler", settings.sampler)
    steps = meta.get("steps", settings.steps)
    return f"JV_seed{seed}_{sampler}{steps}"


def _tag_action(action: Any, meta: dict, settings: Any, motion_path: str, start: int, fps: float) -> None:
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


def apply_motion(context: Any, motion_path: str, start_frame: int | None = None) -> dict:
    """Apply ``motion_path`` to the targets configured in ``scene.joyvasa``. Returns a summary
    {take, frames, actions, warnings}. Raises MotionFileError / ValueError before touching
    the scene when the file or settings are invalid."""
    scene = context.scene
    st = scene.joyvasa
    motion = mc.load_motion(motion_path)           # validate before changing anything
    fps = scene.render.fps / scene.render.fps_base
    s = mc.resample(motion, fps)
    n = s.n_frames
    start = int(st.start_frame if start_frame is None else start_frame)
    name_map = semantic.parse_name_map(st.name_map) if st.apply_shape_keys and st.mesh else {}
    warnings: list[str] = []
    rig = st.rig
    bone_name = ""
    if rig is not None and st.apply_head:
        bone_name = st.head_bone or guess_head_bone(rig)
        if bone_name not in rig.data.bones:
            raise ValueError(f"bone {bone_name or '(none)'} not found in {rig.name}: choose a Head Bone")
    if st.channels_target == "RIG" and rig is None:
        raise ValueError("Channels target is the rig, but no rig is chosen")
    name = take_name(motion.meta, st)
    meta = dict(motion.meta, controls=motion.controls)
    summary: dict[str, Any] = {"take": name, "frames": n, "start": start, "actions": [], "warnings": warnings}

    # semantic channels (used by shape keys and channel props)
    groups = ["mouth", "eyes", "brows"] + (["gaze"] if st.include_gaze else [])
    proj = semantic.project(s.exp, reference_mode=st.reference_mode, groups=groups)

    # -- head bone --------------------------------------------------------------------------
    rig_fcurves = None
    if rig is not None and (bone_name or st.channels_target == "RIG"):
        action, rig_fcurves = compat.assign_new_action(rig, name)
        _tag_action(action, meta, st, motion_path, start, fps)
        summary["actions"].append(action.name)
    if bone_name:
        pb = rig.pose.bones[bone_name]
        # the engine already applied the controls; FIRST measures against the raw frame 0 when the
        # file was edited (as the renderer does), so constant head offsets stay visible
        ref = (mc.rotation_from_pyr(*([a] for a in motion.reference_pose()))[0] if motion.raw is not None else None)
        M_scaled = mc.relative_rotation(s.quat, st.pose_reference, reference=ref)   # (n, 3, 3) camera
        if st.axis_mode == "AUTO":
            bone_world = np.array(rig.matrix_world.to_3x3().normalized() @ pb.bone.matrix_local.to_3x3())
            M_local = mc.bone_local_rotation(M_scaled, bone_world)
        else:
            p, y, r = mc.pyr_from_rotation(M_scaled)
            M_local = mc.manual_axis_rotation(p, y, r, st.pitch_axis, st.yaw_axis, st.roll_axis)
        mode = pb.rotation_mode
        base = f'pose.bones["{bpy.utils.escape_identifier(bone_name)}"]'
        path = f"{base}.{mc.rotation_data_path(mode)}"
        for i, vals in enumerate(mc.rotation_channels(M_local, mode)):
            compat.key_array(rig_fcurves, path, i, mc.keyframe_co(vals, start), n)
        if st.head_location:
            bone_world = np.array(rig.matrix_world.to_3x3().normalized() @ pb.bone.matrix_local.to_3x3())
            loc = mc.bone_local_location(s.t, bone_world, st.location_scale)
            for i in range(3):
                compat.key_array(rig_fcurves, f"{base}.location", i, mc.keyframe_co(loc[:, i], start), n)

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
            action, fcurves = compat.assign_new_action(ctrl, name)
            _tag_action(action, meta, st, motion_path, start, fps)
            summary["actions"].append(action.name)
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
    if name_map:
        mesh = st.mesh
        key = mesh.data.shape_keys
        if key is None:
            warnings.append(f"{mesh.name} has no shape keys: shape keys skipped")
        else:
            curves = semantic.shape_key_curves(proj, name_map, mirrored_source=st.mirrored_source)
            present = {kb.name for kb in key.key_blocks}
            missing = sorted(k for k in curves if k not in present)
            if missing:
                warnings.append(f"shape keys not on {mesh.name}: {', '.join(missing)}")
            wanted = {k: v for k, v in curves.items() if k in present}
            if wanted:
                action, fcurves = compat.assign_new_action(key, name)
                _tag_action(action, meta, st, motion_path, start, fps)
                summary["actions"].append(action.name)
                for kname, vals in wanted.items():
                    compat.key_array(fcurves, f'key_blocks["{bpy.utils.escape_identifier(kname)}"].value', 0,
                                     mc.keyframe_co(vals, start), n)
            summary["shape_keys"] = sorted(wanted)

    # -- keypoint empties -------------------------------------------------------------------
    if st.make_empties:
        summary["empties"] = _key_empties(scene, s, name, start, motion, st, fps, motion_path)

    end = start + n - 1
    if scene.frame_end < end:
        scene.frame_end = end      # extend, never shorten
    st.last_take = name
    st.motion_path = motion_path
    return summary


def _key_empties(scene: Any, s: mc.Sampled, name: str, start: int, motion: mc.Motion, st: Any, fps: float,
                 motion_path: str) -> int:
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
