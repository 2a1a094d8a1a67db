"""Live: Start / Stop a live session of the warm engine, show its stream on the rig, Record.

Start sends ``live_start`` (microphone, or the Inputs' audio file / sound strip played at real
time by the engine) to the warm worker. A persistent ``bpy.app.timers`` function (:func:`tick`)
drains the session's events (reader threads never touch bpy), presents the stream at a constant
delay D (core/live_player.py) and writes VALUES, not keys: shape keys with one ``foreach_set`` per
mesh, the head/neck bones and the preset's bone channels and properties through the same
``rig_presets.resolve -> semantic -> retarget.evaluate`` path as the offline keyer (evaluated per
streamed frame on a background thread, blended per tick), and the channel properties. While live,
the Actions on those targets are detached (and their NLA muted); Stop puts them back and the
values written are restored. With Record, Stop sends ``live_stop``: the engine writes the captured
WAV and the take's motion file, which the offline keyer (apply_motion) keys as a new take at the
take's start frame, with the WAV as a sound strip there. Without Record, Stop cancels the session
(nothing is written). Targets are resolved by name on every tick (undo or a file load make
references stale).
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import bpy
import numpy as np
from bpy.props import BoolProperty, EnumProperty, PointerProperty, StringProperty

from . import apply_media, apply_motion, compat, controls_scene, rig_presets, runtime
from .core import live_player as lp
from .core import motion_core as mc
from .core import requests
from .core.motion_core import MotionFileError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    import mathutils

    from .core.engine_config import EngineConfig
    from .core.worker import WorkerJob

TICK_S = 1.0 / 40.0          # the timer's period: above a 25 fps stream, below a 60 Hz viewport
STOP_TIMEOUT_S = 30.0        # live_stop must end in done within this (flush + writing two files)
RESYNC_S = 0.15              # the monitored sound is moved back to the rig's time when it drifted this far
STATUS_S = 0.25              # the panel's status line (measured delay) is refreshed this often
CHANNELS_OBJECT = "JoyVASA Motion"
EXP_NAMES = tuple(f"exp_{i:02d}" for i in range(63))   # the channel properties, as the offline keyer names them


@dataclass
class Detached:
    """An Action taken off a target while live (restored at Stop)."""
    kind: str                 # OBJECT (rig, channels empty, face mesh) | KEY (the face mesh's shape keys)
    #                           | DATA (the rig's armature data: the VRM add-on's expressions)
    owner: str                # object name (for KEY: the mesh object whose Key it is)
    action: str
    slot: str                 # the slot identifier (4.4+), "" otherwise
    use_nla: bool


@dataclass
class Session:
    """One live session (runtime.LIVE while it runs)."""
    job: WorkerJob
    player: lp.Player
    recorder: lp.Recorder
    mapper: lp.RowMapper
    record: bool
    start: int                                # the take's start frame
    rig: str = ""
    mesh: str = ""
    ctrl: str = ""                            # channels object ("" = none)
    head: str = ""
    neck: str = ""
    inherit: float = 1.0
    axis: tuple[str, str, str, str] = ("AUTO", "X", "Z", "Y")
    head_location: bool = False
    location_scale: float = 1.0
    mesh_props: bool = False                  # preset properties go on the face mesh (no rig)
    created_ctrl: bool = False                # the channels empty was made for this session
    detached: list[Detached] = field(default_factory=list)
    pose: dict[str, np.ndarray] = field(default_factory=dict)     # the rig's pose before Start
    keys: np.ndarray | None = None                                # the shape-key values before Start
    vrm: dict[str, str] = field(default_factory=dict)  # VRM expression -> its preview's path on the armature data
    vrm_before: dict[str, float] = field(default_factory=dict)       # those previews' values before Start
    props: dict[tuple[str, str, str], Any] = field(default_factory=dict)   # (object, bone, prop) -> value before
    monitor: str = ""                         # audio file to play in sync (file source)
    sound: Any = None                         # its aud handle
    first_trans: np.ndarray | None = None
    bone_world: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)   # rest frames (scale stripped)
    stopping: bool = False
    stop_deadline: float = 0.0
    error: str = ""
    events: dict[str, Any] = field(default_factory=dict)            # the last done / error event
    tick_s: list[float] = field(default_factory=list)               # callback times (s), the last 200
    started_at: float = field(default_factory=time.monotonic)
    shown_at: float = 0.0                                           # when the panel's line was last updated

    def cancel(self) -> None:
        """Unregister / file load (runtime.cancel_all): end the session now, nothing keyed."""
        cancel_live()


# -- settings -------------------------------------------------------------------------------------
def _device_items(_self: bpy.types.Operator | None = None,
                  _context: bpy.types.Context | None = None) -> list[tuple[str, str, str]]:
    items = [("", "Default", "The system's default input device")]
    items += [(d, d, "Input device (from Check Engine)") for d in runtime.DOCTOR.get("inputs", []) if d]
    _DEVICE_CACHE[:] = items       # Blender needs the strings kept alive
    return items


_DEVICE_CACHE: list = []


class JOYVASA_PG_live(bpy.types.PropertyGroup):
    source: EnumProperty(name="Source", default="MIC", items=[
        ("MIC", "Microphone", "Speak into a microphone; the engine captures it (declared permission: microphone)"),
        ("AUDIO", "Audio Input", "The Inputs' audio file or sound strip, played at real time by the engine")])
    mic_device: StringProperty(name="Device", default="",
                               description="Input device name or index (empty = the system default); "
                                           "Check Engine lists the devices")
    latency: EnumProperty(name="Latency", default="BALANCED",
                          items=[(p[0], p[1], p[2]) for p in lp.LATENCY_PRESETS],
                          description="Hop and look-ahead of the streaming sampler: shorter = less delay, "
                                      "more compute")
    record: BoolProperty(name="Record", default=True,
                         description="At Stop, key the session as a new take with its audio as a sound strip")
    pace: EnumProperty(name="Pace", default="REALTIME", items=[
        ("REALTIME", "Real Time", "The engine plays the audio input at 1x, as a microphone"),
        ("FAST", "As Fast As Possible", "The engine reads the audio input as fast as it computes (streamed TTS, tests); "
                                        "the rig shows the newest frames")])
    monitor: BoolProperty(name="Play Audio", default=True,
                          description="Play the audio input in sync with the rig (delayed by D), file source only")


class JOYVASA_OT_live_pick_device(bpy.types.Operator):
    """Pick an input device from the engine's list (Check Engine fills it)"""
    bl_idname = "joyvasa.live_pick_device"
    bl_label = "Input Device"
    bl_property = "device"

    device: EnumProperty(name="Device", items=_device_items)

    def execute(self, context):
        context.scene.joyvasa_live.mic_device = self.device
        return {'FINISHED'}


# -- Start / Stop ---------------------------------------------------------------------------------
def _stamp() -> str:
    return f"{time.strftime('%Y%m%d-%H%M%S')}_{int(time.time() * 1000) % 1000:03d}"


def build_job(context: bpy.types.Context, cfg: EngineConfig) -> tuple[dict, int, str]:
    """(the live job's wire form, the take's start frame, the audio to monitor or "")."""
    scene = context.scene
    st, lv = scene.joyvasa, scene.joyvasa_live
    if lv.source == "MIC":
        dev = lv.mic_device.strip()
        source: dict[str, Any] = {"source": "mic", "mic": int(dev) if dev.isdigit() else (dev or None)}
        start, monitor = int(st.start_frame), ""
    else:
        audio, start = apply_media.resolve_audio(context)
        source = {"source": "file", "audio": audio, "pace": "fast" if lv.pace == "FAST" else "realtime"}
        monitor = audio if lv.pace == "REALTIME" else ""
    out = apply_media.output_dir(context) / f"live_seed{st.seed}_{_stamp()}.npz"
    out.parent.mkdir(parents=True, exist_ok=True)
    cpath, _ = controls_scene.write_scene_controls(scene, out.with_suffix(".controls.json"), start)
    job = requests.job_dict("live", lambda prop: getattr(st, prop), cfg.job_prefs(), out=str(out), wav=str(out.with_suffix(".wav")),
                            controls=str(cpath), **source, **lp.latency_fields(lv.latency))
    return job, start, monitor


def _detach(sess: Session, owners: list[tuple[str, str, Any]]) -> None:
    """Take the Actions off the targets and mute their NLA (the stream would be overwritten)."""
    for kind, name, idb in owners:
        ad = getattr(idb, "animation_data", None)
        if ad is None or (ad.action is None and not ad.use_nla):
            continue
        slot = getattr(ad, "action_slot", None)
        sess.detached.append(Detached(kind, name, ad.action.name if ad.action else "",
                                      getattr(slot, "identifier", "") if slot is not None else "", bool(ad.use_nla)))
        ad.action = None
        ad.use_nla = False


def _owner(kind: str, name: str) -> compat.AnimOwner | None:
    ob = bpy.data.objects.get(name)
    if ob is None:
        return None
    return getattr(ob.data, "shape_keys", None) if kind == "KEY" else ob.data if kind == "DATA" else ob


def _set_vrm(rig: bpy.types.Object, path: str, value: float) -> None:
    """A VRM add-on expression's preview (``path`` on the armature data) to ``value``."""
    owner, attr = path.rsplit(".", 1)
    setattr(rig.data.path_resolve(owner), attr, value)


def _snapshot(sess: Session) -> None:
    """The values live writes will change, to put back at Stop."""
    rig, mesh = bpy.data.objects.get(sess.rig), bpy.data.objects.get(sess.mesh)
    if rig is not None and rig.pose is not None:
        n = len(rig.pose.bones)
        for path, width in (("rotation_quaternion", 4), ("rotation_euler", 3), ("rotation_axis_angle", 4),
                            ("location", 3)):
            arr = np.empty(n * width, np.float32)
            rig.pose.bones.foreach_get(path, arr)
            sess.pose[path] = arr
    key = getattr(getattr(mesh, "data", None), "shape_keys", None) if mesh is not None else None
    if key is not None:
        sess.keys = np.empty(len(key.key_blocks), np.float32)
        key.key_blocks.foreach_get("value", sess.keys)
    sess.vrm_before = {p: float(rig.data.path_resolve(p)) for p in sess.vrm.values()} if rig is not None else {}


def _restore(sess: Session) -> None:
    """Values written while live back to what they were, then the Actions (and NLA) back on."""
    rig, mesh = bpy.data.objects.get(sess.rig), bpy.data.objects.get(sess.mesh)
    if rig is not None and sess.pose and rig.pose is not None:
        for path, arr in sess.pose.items():
            if len(arr) == len(rig.pose.bones) * (4 if path != "rotation_euler" and path != "location" else 3):
                rig.pose.bones.foreach_set(path, arr)
    key = getattr(getattr(mesh, "data", None), "shape_keys", None) if mesh is not None else None
    if key is not None and sess.keys is not None and len(sess.keys) == len(key.key_blocks):
        key.key_blocks.foreach_set("value", sess.keys)
        key.user.update_tag()
    for path, value in sess.vrm_before.items():
        if rig is not None:
            _set_vrm(rig, path, value)
    for (obname, bone, prop), value in sess.props.items():
        ob = bpy.data.objects.get(obname)
        owner = (ob.pose.bones.get(bone) if bone and ob is not None and ob.pose is not None else ob)
        if owner is None:
            continue
        if value is None:
            if prop in owner.keys():
                del owner[prop]
        else:
            owner[prop] = value
    for d in sess.detached:
        idb = _owner(d.kind, d.owner)
        ad = getattr(idb, "animation_data", None) if idb is not None else None
        if ad is None:
            continue
        action = bpy.data.actions.get(d.action) if d.action else None
        if action is not None:
            ad.action = action
            if d.slot and hasattr(ad, "action_slot"):
                slot = next((s for s in action.slots if s.identifier == d.slot), None)
                if slot is not None and ad.action_slot != slot:
                    ad.action_slot = slot
        ad.use_nla = d.use_nla
    sess.detached.clear()
    scene = bpy.context.scene
    if scene is not None:
        scene.frame_set(scene.frame_current)       # re-evaluate the restored Actions now


def start_session(context: bpy.types.Context, submit: Callable[[dict[str, Any]], WorkerJob] | None = None) -> Session:
    """Check the settings, start the session on the warm engine, detach the targets' Actions.
    Raises ValueError / OSError (nothing changed) when something is wrong. ``submit(job_args)``
    replaces the warm engine (tools/bench_live_blender.py feeds a synthetic stream)."""
    from .engine_setup import engine_config, worker

    scene = context.scene
    st, lv = scene.joyvasa, scene.joyvasa_live
    cfg = engine_config(context)
    if cfg.error and submit is None:
        raise ValueError(cfg.error)
    preset, _cov, _auto = rig_presets.resolve(st)           # a bad preset stops here
    rig = st.rig
    mesh = st.mesh if st.apply_shape_keys else None
    warnings: list[str] = []
    head = neck = ""
    inherit = 1.0
    if rig is not None and st.apply_head:
        head, neck = apply_motion._head_bones(rig, st, preset, warnings)
        if neck:
            inherit = apply_motion._head_inherit(context, rig, neck, head)
    if st.channels_target == "RIG" and rig is None:
        raise ValueError("Channels target is the rig, but no rig is chosen")
    job_args, start, monitor = build_job(context, cfg)
    mapper = lp.RowMapper(preset, reference_mode=st.reference_mode, pose_reference=st.pose_reference,
                          mirrored_source=st.mirrored_source, include_gaze=st.include_gaze)
    job = (submit or (lambda args: worker(cfg).submit("live", args, request="live_start")))(job_args)
    ctrl, created = "", False
    if st.channels_target == "RIG":
        ctrl = rig.name
    elif st.channels_target == "EMPTY":
        ob = bpy.data.objects.get(CHANNELS_OBJECT)
        if ob is None:
            ob, created = bpy.data.objects.new(CHANNELS_OBJECT, None), True
            ob.empty_display_type = 'PLAIN_AXES'
            scene.collection.objects.link(ob)
        ctrl = ob.name
    sess = Session(job=job, player=lp.Player(), recorder=lp.Recorder(), mapper=mapper.start(), record=bool(lv.record),
                   start=start, rig=rig.name if rig else "", mesh=mesh.name if mesh else "", ctrl=ctrl, head=head,
                   neck=neck, inherit=inherit, axis=(st.axis_mode, st.pitch_axis, st.yaw_axis, st.roll_axis),
                   head_location=bool(st.head_location), location_scale=float(st.location_scale),
                   mesh_props=rig is None and mesh is not None, monitor=monitor if lv.monitor else "")
    sess.created_ctrl = created
    sess.events["warnings"] = warnings
    sess.events["out"] = job_args["out"]
    owners: list[tuple[str, str, Any]] = []
    if rig is not None:
        owners.append(("OBJECT", rig.name, rig))
        if any(t.kind == "vrm_expression" for _c, t in preset.targets()):
            sess.vrm = rig_presets.vrm_expression_paths(rig)
            owners.append(("DATA", rig.name, rig.data))
    if mesh is not None:
        if mesh.data.shape_keys is not None:
            owners.append(("KEY", mesh.name, mesh.data.shape_keys))
        if sess.mesh_props:
            owners.append(("OBJECT", mesh.name, mesh))
    if ctrl and ctrl != sess.rig:
        owners.append(("OBJECT", ctrl, bpy.data.objects[ctrl]))
    _snapshot(sess)
    _detach(sess, owners)
    if rig is not None:      # head-space / aim targets: measured once, unanimated (no frame is prepared yet)
        mapper.geometry = rig_presets.rig_geometry(rig, preset, head or preset.head.bone or apply_motion.guess_head_bone(rig))
    runtime.LIVE = sess
    runtime.LIVE_LAST = {"state": "running", "message": "Live: starting the engine..."}
    if not bpy.app.timers.is_registered(tick):
        bpy.app.timers.register(tick, first_interval=TICK_S, persistent=True)
    return sess


def stop_session(sess: Session) -> None:
    """Record: ``live_stop`` (the engine writes the take, then done); else cancel (nothing written)."""
    if sess.stopping:
        return
    sess.stopping = True
    sess.stop_deadline = time.monotonic() + STOP_TIMEOUT_S
    if sess.record and not sess.job.finished():
        if not sess.job.worker.live_stop(sess.job):
            sess.job.request_cancel()
    else:
        sess.job.request_cancel()
    runtime.LIVE_LAST = {"state": "running", "message": "Live: stopping..." + (" (writing the take)" if sess.record else "")}


class JOYVASA_OT_live_start(bpy.types.Operator):
    """Start a live session: the engine streams motion from the microphone (or the audio input) and the rig follows in the viewport"""
    bl_idname = "joyvasa.live_start"
    bl_label = "Start Live"

    @classmethod
    def poll(cls, context):
        return runtime.LIVE is None and runtime.CURRENT is None

    def execute(self, context):
        try:
            sess = start_session(context)
        except (ValueError, OSError, RuntimeError) as exc:
            runtime.LIVE_LAST = {"state": "failed", "message": f"Live: {exc}"}
            self.report({'ERROR'}, str(exc))
            return {'CANCELLED'}
        for w in sess.events.get("warnings", []):
            self.report({'WARNING'}, w)
        if bpy.app.background:      # no event loop: nothing calls the timer (scripts drive ops_live.tick)
            self.report({'WARNING'}, "Live in background mode: timers do not run, call ops_live.tick() to play")
        return {'FINISHED'}


class JOYVASA_OT_live_stop(bpy.types.Operator):
    """Stop the live session (with Record: key it as a new take with its audio)"""
    bl_idname = "joyvasa.live_stop"
    bl_label = "Stop Live"

    @classmethod
    def poll(cls, context):
        return runtime.LIVE is not None

    def execute(self, context):
        stop_session(runtime.LIVE)
        return {'FINISHED'}


# -- the timer -------------------------------------------------------------------------------------
def tick() -> float | None:
    """The persistent timer: drain, present, write; finish the session when the engine ended it."""
    sess = runtime.LIVE
    if sess is None:
        return None
    t0 = time.perf_counter()
    try:
        step(sess, time.monotonic())
    except Exception as exc:  # noqa: BLE001 - a broken tick must end the session cleanly, not loop forever
        sess.error = sess.error or f"Live stopped: {type(exc).__name__}: {exc}"
        sess.job.request_cancel()
        finish(sess)
        return None
    sess.tick_s = (sess.tick_s + [time.perf_counter() - t0])[-200:]
    if runtime.LIVE is not sess:
        return None
    return TICK_S


def step(sess: Session, now: float) -> None:
    """One tick at monotonic time ``now`` (the tests call it with their own clock)."""
    for ev in sess.job.drain():
        kind = ev.get("type")
        if kind == "live_frame":
            try:
                fr = sess.player.feed(ev, now)
            except lp.LiveEventError as exc:
                sess.error = f"engine sent a bad live frame: {exc}"
                sess.job.request_cancel()
                continue
            sess.recorder.add(fr)
            sess.mapper.submit(fr)
            if sess.first_trans is None:
                sess.first_trans = fr.trans.copy()
        elif kind in ("live_started", "live_stats"):
            sess.player.feed(ev, now)
        elif kind == "error":
            code = ev.get("code") or "error"
            sess.error = f"[{code}] {ev.get('message', '')}".strip()
            sess.events["error"] = ev
        elif kind in ("done", "cancelled"):
            sess.events[kind] = ev
        elif kind == "warning":
            sess.events.setdefault("warnings", []).append(str(ev.get("message", "")))
    if sess.stopping:
        sess.job.enforce_cancel()
        if time.monotonic() > sess.stop_deadline and not sess.job.finished():
            sess.error = sess.error or f"the engine did not finish the take within {STOP_TIMEOUT_S:.0f} s"
            sess.job.kill()
    if sess.job.finished():
        for ev in sess.job.drain():      # anything that came with the end
            if ev.get("type") == "live_frame":
                try:
                    sess.recorder.add(lp.parse_frame(ev))
                except lp.LiveEventError as exc:
                    sess.error = f"engine sent a bad live frame: {exc}"
            elif ev.get("type") in ("done", "cancelled", "error"):
                sess.events[ev["type"]] = ev
                if ev["type"] == "error":
                    sess.error = f"[{ev.get('code') or 'error'}] {ev.get('message', '')}"
        ended_by_engine = "done" in sess.events and not sess.stopping and not sess.error
        if not (ended_by_engine and sess.player.remaining(now) > 0):   # else: play out the buffered tail first
            finish(sess)
            return
    br = sess.player.bracket(now)
    if br is not None:
        write(sess, *br)
    _sync_sound(sess, now)
    if now - sess.shown_at >= STATUS_S:      # the panel's line: a few times a second is enough
        sess.shown_at = now
        runtime.LIVE_LAST = {"state": "running", "message": sess.player.summary()}
        _redraw()


def _sync_sound(sess: Session, now: float) -> None:
    """Play the file source delayed by D, so the sound heard is the audio the rig shows (re-synced
    when D grew)."""
    if not sess.monitor:
        return
    pt = sess.player.playout_time(now)
    if pt is None or pt < 0:
        return
    if sess.sound is not None:
        try:
            if abs(sess.sound.position - pt) > RESYNC_S:
                sess.sound.position = float(pt)
        except Exception:  # noqa: BLE001 - the handle ended (end of file) or the device went away
            sess.monitor = ""
        return
    try:
        import aud

        handle = aud.Device().play(aud.Sound(sess.monitor))
        handle.position = float(pt)
        sess.sound = handle
    except Exception:  # noqa: BLE001 - no audio device / no Audaspace (bpy 4.2 wheel): the rig still plays
        sess.monitor = ""


def _redraw() -> None:
    wm = bpy.context.window_manager
    for window in getattr(wm, "windows", []):
        for area in window.screen.areas:
            if area.type in {'VIEW_3D', 'SEQUENCE_EDITOR'}:
                area.tag_redraw()


# -- writing values -------------------------------------------------------------------------------
def _set_props(sess: Session, ob: bpy.types.Object, bone: str, items: Iterable[tuple[str, float]]) -> None:
    """Custom properties on ``ob`` (or its pose bone), each one's value before Start kept once."""
    owner = ob.pose.bones.get(bone) if bone else ob
    if owner is None:
        return
    snap, oname = sess.props, ob.name
    for prop, value in items:
        key = (oname, bone, prop)
        if key not in snap:
            snap[key] = owner.get(prop)
        owner[prop] = value


def _set_rotation(pb: bpy.types.PoseBone, M_local: mathutils.Matrix) -> None:
    """A local rotation (mathutils 3x3) in the bone's own rotation mode (as the offline keyer keys it)."""
    mode = pb.rotation_mode
    if mode == "QUATERNION":
        q = M_local.to_quaternion()
        if q.dot(pb.rotation_quaternion) < 0:      # stay on the previous hemisphere (no flips)
            q.negate()
        pb.rotation_quaternion = q
    elif mode == "AXIS_ANGLE":
        axis, angle = M_local.to_quaternion().to_axis_angle()
        pb.rotation_axis_angle = (angle, *axis)
    else:
        pb.rotation_euler = M_local.to_euler(mode, pb.rotation_euler)


def _bone_world(sess: Session, rig: bpy.types.Object, name: str) -> np.ndarray:
    """The bone's rest frame in world space (scale stripped), cached for the session: the offline
    keyer measures it once per take too."""
    key = (rig.name, name)
    bw = sess.bone_world.get(key)
    if bw is None:
        u, _s, vt = np.linalg.svd(apply_motion._bone_world(rig, rig.pose.bones[name]))
        bw = sess.bone_world[key] = u @ vt
    return bw


def _head_rotation(sess: Session, rig: bpy.types.Object, pb: bpy.types.PoseBone, M_cam: np.ndarray) -> None:
    import mathutils

    mode, p_axis, y_axis, r_axis = sess.axis
    if mode == "AUTO":
        Bw = _bone_world(sess, rig, pb.name)
        W = mc.CAM_TO_BLENDER @ M_cam[0] @ mc.CAM_TO_BLENDER.T
        M_local = Bw.T @ W @ Bw
    else:
        p, y, r = mc.pyr_from_rotation(M_cam)
        M_local = mc.manual_axis_rotation(p, y, r, p_axis, y_axis, r_axis)[0]
    _set_rotation(pb, mathutils.Matrix(M_local.tolist()))


def write(sess: Session, a: lp.LiveFrame, b: lp.LiveFrame, w: float) -> None:
    """Show the stream between frames a and b (weight w of b) on the targets, by name."""
    import mathutils

    from .core import retarget

    plan, M, chans, row = sess.mapper.blend(a, b, w)
    rig = bpy.data.objects.get(sess.rig) if sess.rig else None
    mesh = bpy.data.objects.get(sess.mesh) if sess.mesh else None
    if rig is not None and rig.pose is not None:
        bones = rig.pose.bones
        if sess.head and bones.get(sess.head) is not None:
            if sess.neck and bones.get(sess.neck) is not None:
                M_neck, M_head = retarget.split_head_rotation(M, sess.mapper.preset.head.neck_share, sess.inherit)
                _head_rotation(sess, rig, bones[sess.neck], M_neck)
                _head_rotation(sess, rig, bones[sess.head], M_head)
            else:
                _head_rotation(sess, rig, bones[sess.head], M)
            if sess.head_location and sess.first_trans is not None:
                pb = bones[sess.head]
                world = (row.trans - sess.first_trans) @ mc.CAM_TO_BLENDER.T * sess.location_scale
                pb.location = (world @ _bone_world(sess, rig, sess.head)).tolist()
        for (bone, transform), vals in plan.bones.items():
            pb = bones.get(bone)
            if pb is None or bone in (sess.head, sess.neck):
                continue
            if transform == "location":
                loc = pb.location.copy()
                for axis in plan.bone_axes[(bone, transform)]:
                    loc[axis] = float(vals[0, axis])
                pb.location = loc
            elif transform == "rotvec":   # head-space turns (issue 27): axis x angle, as the offline keyer
                _set_rotation(pb, mathutils.Matrix(apply_motion._matrix_from_rotvec(vals[:1])[0].tolist()))
            else:   # local X, then Y, then Z (mc.matrix_from_euler "XYZ", as the offline keyer)
                _set_rotation(pb, mathutils.Euler(vals[0].tolist(), "XYZ").to_matrix())
        props: dict[str, list] = {}
        for (bone, prop), vals in plan.properties.items():
            props.setdefault(bone, []).append((prop, float(vals[0])))
        for bone, items in props.items():
            _set_props(sess, rig, bone, items)
        for expr, vals in plan.expressions.items():
            if expr in sess.vrm:
                _set_vrm(rig, sess.vrm[expr], float(vals[0]))
    elif mesh is not None and sess.mesh_props:
        _set_props(sess, mesh, "", [(prop, float(vals[0])) for (bone, prop), vals in plan.properties.items() if not bone])
    key = getattr(getattr(mesh, "data", None), "shape_keys", None) if mesh is not None else None
    if key is not None and plan.shape_keys:
        blocks = key.key_blocks
        values = np.empty(len(blocks), np.float32)
        blocks.foreach_get("value", values)
        for name, vals in plan.shape_keys.items():
            i = blocks.find(name)
            if i >= 0:
                values[i] = vals[0]
        blocks.foreach_set("value", values)
        key.user.update_tag()
    ctrl = bpy.data.objects.get(sess.ctrl) if sess.ctrl else None
    if ctrl is not None:
        flat = row.exp.reshape(63).tolist()
        items = [("pitch", row.pitch), ("yaw", row.yaw), ("roll", row.roll), ("tx", float(row.trans[0])),
                 ("ty", float(row.trans[1])), ("tz", float(row.trans[2])), ("scale", row.scale)]
        items += zip(EXP_NAMES, flat)
        items += [(name, min(max(float(vals[0]), 0.0), 1.0)) for name, vals in chans.items() if not name.startswith("_")]
        _set_props(sess, ctrl, "", items)


# -- the end --------------------------------------------------------------------------------------
def finish(sess: Session) -> None:
    """The engine ended the session: restore the targets; with Record and ``done``, key the take
    and add its sound strip; tell the panel."""
    runtime.LIVE = None
    sess.mapper.stop()
    if sess.sound is not None:
        try:
            sess.sound.stop()
        except Exception:  # noqa: BLE001
            pass
    _restore(sess)
    done = sess.events.get("done")
    n = len(sess.recorder)
    if sess.created_ctrl and (done is None or not sess.record):     # no take: the scene as it was
        ob = bpy.data.objects.get(sess.ctrl)
        if ob is not None:
            bpy.data.objects.remove(ob)
    if sess.error and done is None:
        msg = f"Live failed: {sess.error}"
        tail = [ln for ln in sess.job.stderr_tail(6) if ln.strip()] if sess.job.returncode not in (0, None) else []
        runtime.LIVE_LAST = {"state": "failed", "message": "\n".join([msg, *tail])}
        print(f"[JoyVASA] {msg}", file=sys.stderr, flush=True)
        return
    if done is not None and sess.record and n == 0:
        runtime.LIVE_LAST = {"state": "cancelled", "message": "Live stopped before the first frame: no take"}
        return
    if done is None or not sess.record:
        runtime.LIVE_LAST = {"state": "cancelled" if not sess.record else "failed",
                             "message": f"Live stopped: {n} frames streamed" + ("" if not sess.record else
                                                                                ", no take (the engine did not finish it)")}
        return
    try:
        runtime.LIVE_LAST = {"state": "done", "message": bake(sess, done)}
    except (MotionFileError, ValueError, OSError, RuntimeError, KeyError) as exc:
        runtime.LIVE_LAST = {"state": "failed", "message": f"Live: could not key the take: {exc}"}
        print(f"[JoyVASA] {runtime.LIVE_LAST['message']}", file=sys.stderr, flush=True)


def bake(sess: Session, done: dict) -> str:
    """Key the engine's take (the streamed frames) with the offline keyer; its WAV as a sound strip."""
    outputs = done.get("outputs") or {}
    motion = str(outputs.get("motion_npz") or sess.events.get("out") or "")
    wav = str(outputs.get("audio_wav") or Path(motion).with_suffix(".wav"))
    m = mc.load_motion(motion)
    problem = lp.mismatch(sess.recorder.arrays(), m) if len(sess.recorder) else ""
    context = bpy.context
    summary = apply_motion.apply_motion(context, motion, start_frame=sess.start)
    for name in summary["actions"]:
        action = bpy.data.actions.get(name)
        if action is not None:
            action["joyvasa_live"] = True
    warnings = list(summary["warnings"]) + ([f"the take differs from the stream: {problem}"] if problem else [])
    strip = add_sound(context.scene, wav, sess.start, summary["take"], warnings)
    sess.events["summary"] = dict(summary, sound=strip, wav=wav, motion=motion)
    try:
        bpy.ops.ed.undo_push(message="JoyVASA Live take")
    except RuntimeError:
        pass
    text = f"Live take {summary['take']}: {summary['frames']} frames from frame {sess.start}"
    if strip:
        text += f", audio on strip {strip}"
    return "\n".join([text, *warnings])


def add_sound(scene: bpy.types.Scene, wav: str, start: int, take: str, warnings: list[str]) -> str:
    """The take's audio as a sound strip of the 3D scene at ``start`` (sound strips do not replace
    what F12 renders), on a free channel; "" with a warning when this Blender has no audio."""
    if not Path(wav).is_file():
        warnings.append(f"the take's audio {wav} was not written: no sound strip")
        return ""
    coll = compat.strips_collection(scene)
    fps = scene.render.fps / scene.render.fps_base
    length = apply_media.audio_frames(wav, fps) or 1
    chan = apply_media._free_channel(scene, start, start + length, 1)
    try:
        strip = coll.new_sound(name=f"{take} audio", filepath=wav, channel=chan, frame_start=start)
    except RuntimeError as exc:     # the bpy 4.2 wheel has no Audaspace
        warnings.append(f"sound strip not added: {exc}")
        return ""
    return strip.name


def cancel_live() -> None:
    """Unregister / file load: end the session now (cancel, nothing keyed)."""
    sess = runtime.LIVE
    if sess is None:
        return
    runtime.LIVE = None
    sess.mapper.stop()
    try:
        sess.job.cancel(grace=2.0)
    except Exception:  # noqa: BLE001
        pass
    try:
        _restore(sess)
    except Exception:  # noqa: BLE001 - the file is being closed: best effort
        pass
    if sess.sound is not None:
        try:
            sess.sound.stop()
        except Exception:  # noqa: BLE001
            pass


CLASSES = (JOYVASA_PG_live, JOYVASA_OT_live_pick_device, JOYVASA_OT_live_start, JOYVASA_OT_live_stop)


def register_props() -> None:
    bpy.types.Scene.joyvasa_live = PointerProperty(type=JOYVASA_PG_live)


def unregister_props() -> None:
    if bpy.app.timers.is_registered(tick):
        bpy.app.timers.unregister(tick)
    if hasattr(bpy.types.Scene, "joyvasa_live"):
        del bpy.types.Scene.joyvasa_live
