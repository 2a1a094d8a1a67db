"""Motion file reading, rotation maths and resampling (bpy-free, numpy only).

Reading is the contract's (``core/contract/npz_reader.py``, the engine's own reader copied
whole by tools/sync_contract.py: lazy, typed, the same accepted and refused files); this module
turns the file into the add-on's float64 :class:`Motion`. Everything that turns a motion into
per-frame numbers for keyframes lives here so it is unit-tested without Blender.

Conventions
    LivePortrait builds ``M = Rz(roll) @ Ry(yaw) @ Rx(pitch)`` (degrees; column vectors; the
    file's ``R`` is its transpose, for row vectors) in the camera frame
    x = image right, y = image down, z = into the image.
    Blender world (a character facing -Y, front view): X = image right, Y = into the image,
    Z = up, so ``world = P @ cam`` with ``P = [[1,0,0],[0,0,1],[0,-1,0]]``.
    Quaternions are (w, x, y, z), Blender's order.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .contract.npz_reader import N_KP, MotionFileError, read_motion  # noqa: F401  (MotionFileError: the add-on's name)

CAM_TO_BLENDER = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
CHANNEL_NAMES = ("pitch", "yaw", "roll", "tx", "ty", "tz", "scale") + tuple(f"exp_{i:02d}" for i in range(63))


@dataclass
class Motion:
    fps: float
    exp: np.ndarray      # (N, 21, 3)
    scale: np.ndarray    # (N,)
    t: np.ndarray        # (N, 3)
    pitch: np.ndarray    # (N,) degrees
    yaw: np.ndarray      # (N,)
    roll: np.ndarray     # (N,)
    meta: dict[str, Any] = field(default_factory=dict)
    R: np.ndarray | None = None                # (N, 3, 3) as in the file (validated, not used for keys)
    coef: np.ndarray | None = None             # (M, C) raw model output (validated only)
    raw: dict[str, np.ndarray] | None = None   # schema 1.1: the motion before the controls
    vad_db: np.ndarray | None = None           # schema 1.1: voice level per frame
    controls: str = ""                         # schema 1.1: the controls used (JSON), "" = none
    schema_minor: int = 0

    @property
    def n_frames(self) -> int:
        return int(self.exp.shape[0])

    def reference_pose(self) -> tuple[float, float, float]:
        """Pitch, yaw, roll of the neutral that relative motion is measured against: the raw
        frame 0 (as the renderer), so constant head offsets of the controls stay visible."""
        src = self.raw if self.raw is not None else {"pitch": self.pitch, "yaw": self.yaw, "roll": self.roll}
        return tuple(float(np.asarray(src[k]).reshape(-1)[0]) for k in ("pitch", "yaw", "roll"))  # type: ignore[return-value]

    @property
    def duration_s(self) -> float:
        return self.n_frames / self.fps


# -- reading ----------------------------------------------------------------------------------
def load_motion(path: str | Path) -> Motion:
    """Read and validate a motion ``.npz`` with the contract's reader -> the add-on's float64 view."""
    p = Path(path)
    if not p.exists():
        raise MotionFileError(f"motion file {path} does not exist")
    if p.is_dir():
        raise MotionFileError(f"motion file {path} is a folder; pick a .npz file")
    if not p.is_file():
        raise MotionFileError(f"motion file {path} is not a regular file (a pipe or device); pick a .npz file")
    d = read_motion(p)

    def f64(a: np.ndarray) -> np.ndarray:
        return np.asarray(a, np.float64)

    return Motion(fps=d.fps, exp=f64(d.exp), scale=f64(d.scale).reshape(-1), t=f64(d.t),
                  pitch=f64(d.pitch).reshape(-1), yaw=f64(d.yaw).reshape(-1), roll=f64(d.roll).reshape(-1),
                  meta={"smoothed": d.smoothed, **d.meta}, R=d.R, coef=d.coef, raw=d.raw, vad_db=d.vad_db,
                  controls=d.controls, schema_minor=d.schema_minor)


# -- rotations --------------------------------------------------------------------------------
def _rx(a: np.ndarray) -> np.ndarray:
    c, s, o, z = np.cos(a), np.sin(a), np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([o, z, z], -1), np.stack([z, c, -s], -1), np.stack([z, s, c], -1)], -2)


def _ry(a: np.ndarray) -> np.ndarray:
    c, s, o, z = np.cos(a), np.sin(a), np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([c, z, s], -1), np.stack([z, o, z], -1), np.stack([-s, z, c], -1)], -2)


def _rz(a: np.ndarray) -> np.ndarray:
    c, s, o, z = np.cos(a), np.sin(a), np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([c, -s, z], -1), np.stack([s, c, z], -1), np.stack([z, z, o], -1)], -2)


_AXIS_ROT = {0: _rx, 1: _ry, 2: _rz}


def rotation_from_pyr(pitch_deg, yaw_deg, roll_deg) -> np.ndarray:
    """(N,) degrees -> (N, 3, 3) column-vector matrices ``Rz(roll) Ry(yaw) Rx(pitch)`` (camera frame)."""
    p, y, r = (np.radians(np.asarray(a, dtype=np.float64)) for a in (pitch_deg, yaw_deg, roll_deg))
    return _rz(r) @ _ry(y) @ _rx(p)


def pyr_from_rotation(M: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inverse of :func:`rotation_from_pyr` -> pitch, yaw, roll in degrees."""
    e = euler_from_matrix(M, "XYZ")  # (N, 3) radians (x=pitch, y=yaw, z=roll)
    return np.degrees(e[:, 0]), np.degrees(e[:, 1]), np.degrees(e[:, 2])


def euler_from_matrix(M: np.ndarray, order: str = "XYZ") -> np.ndarray:
    """(N, 3, 3) -> (N, 3) Euler angles (radians, indexed by axis X, Y, Z) for Blender's order
    string: order ``"abc"`` means axis a is applied first, ``M = R_c R_b R_a``."""
    M = np.asarray(M, dtype=np.float64).reshape(-1, 3, 3)
    i, j, k = ("XYZ".index(ch) for ch in order)
    even = (j - i) % 3 == 1
    sgn = 1.0 if even else -1.0
    beta = np.arcsin(np.clip(-sgn * M[:, k, i], -1.0, 1.0))
    alpha = np.arctan2(sgn * M[:, k, j], M[:, k, k])
    gamma = np.arctan2(sgn * M[:, j, i], M[:, i, i])
    out = np.zeros((len(M), 3))
    out[:, i], out[:, j], out[:, k] = alpha, beta, gamma
    return out


def matrix_from_euler(e: np.ndarray, order: str = "XYZ") -> np.ndarray:
    """(N, 3) radians indexed by axis -> (N, 3, 3); inverse of :func:`euler_from_matrix`."""
    e = np.asarray(e, dtype=np.float64).reshape(-1, 3)
    M = np.broadcast_to(np.eye(3), (len(e), 3, 3)).copy()
    for ch in order:
        ax = "XYZ".index(ch)
        M = _AXIS_ROT[ax](e[:, ax]) @ M
    return M


def quat_from_matrix(M: np.ndarray) -> np.ndarray:
    """(N, 3, 3) rotation matrices -> (N, 4) unit quaternions (w, x, y, z), w >= 0."""
    M = np.asarray(M, dtype=np.float64).reshape(-1, 3, 3)
    tr = np.trace(M, axis1=1, axis2=2)
    cand = np.stack([tr, M[:, 0, 0], M[:, 1, 1], M[:, 2, 2]], axis=1)  # (N, 4)
    pick = np.argmax(cand, axis=1)
    q = np.zeros((len(M), 4))
    for n, c in enumerate(pick):
        m = M[n]
        if c == 0:
            s = math.sqrt(max(tr[n] + 1.0, 0.0)) * 2
            q[n] = [0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s]
        elif c == 1:
            s = math.sqrt(max(1.0 + m[0, 0] - m[1, 1] - m[2, 2], 0.0)) * 2
            q[n] = [(m[2, 1] - m[1, 2]) / s, 0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s]
        elif c == 2:
            s = math.sqrt(max(1.0 + m[1, 1] - m[0, 0] - m[2, 2], 0.0)) * 2
            q[n] = [(m[0, 2] - m[2, 0]) / s, (m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s]
        else:
            s = math.sqrt(max(1.0 + m[2, 2] - m[0, 0] - m[1, 1], 0.0)) * 2
            q[n] = [(m[1, 0] - m[0, 1]) / s, (m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s]
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    q[q[:, 0] < 0] *= -1
    return q


def matrix_from_quat(q: np.ndarray) -> np.ndarray:
    q = np.asarray(q, dtype=np.float64).reshape(-1, 4)
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    w, x, y, z = q.T
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
        np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
        np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1)], -2)


def quat_continuous(q: np.ndarray) -> np.ndarray:
    """Flip signs so consecutive quaternions lie in the same hemisphere (clean F-curves)."""
    q = np.array(q, dtype=np.float64).reshape(-1, 4)
    for n in range(1, len(q)):
        if np.dot(q[n - 1], q[n]) < 0:
            q[n] = -q[n]
    return q


def slerp(q0: np.ndarray, q1: np.ndarray, a: np.ndarray) -> np.ndarray:
    """Row-wise spherical interpolation (N, 4), (N, 4), (N,) -> (N, 4), shortest path."""
    q0 = np.asarray(q0, np.float64)
    q1 = np.array(q1, np.float64)
    a = np.asarray(a, np.float64)[:, None]
    dot = np.sum(q0 * q1, axis=1, keepdims=True)
    q1 = np.where(dot < 0, -q1, q1)
    dot = np.abs(dot)
    theta = np.arccos(np.clip(dot, -1.0, 1.0))
    sin = np.sin(theta)
    small = sin < 1e-9
    w0 = np.where(small, 1 - a, np.sin((1 - a) * theta) / np.where(small, 1, sin))
    w1 = np.where(small, a, np.sin(a * theta) / np.where(small, 1, sin))
    out = w0 * q0 + w1 * q1
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def quat_power(q: np.ndarray, s) -> np.ndarray:
    """Scale each rotation's angle by ``s`` (scalar or (N,)): the strength of a head turn."""
    q = quat_continuous(q)
    q = np.where(q[:, :1] < 0, -q, q)
    s = np.broadcast_to(np.asarray(s, np.float64), (len(q),))
    return slerp(np.tile([1.0, 0, 0, 0], (len(q), 1)), q, s)


# -- resampling -------------------------------------------------------------------------------
@dataclass
class Sampled:
    """The motion at the target frame rate: one row per scene frame, starting at frame 0 of the clip."""
    fps: float
    quat: np.ndarray     # (N, 4) camera-frame head rotation (w, x, y, z)
    pitch: np.ndarray    # (N,) degrees (from the slerped rotation)
    yaw: np.ndarray
    roll: np.ndarray
    t: np.ndarray        # (N, 3)
    scale: np.ndarray    # (N,)
    exp: np.ndarray      # (N, 21, 3)

    @property
    def n_frames(self) -> int:
        return int(self.exp.shape[0])

    def channels(self) -> dict[str, np.ndarray]:
        """Every channel as a (N,) array, named as the custom properties (CHANNEL_NAMES)."""
        out = {"pitch": self.pitch, "yaw": self.yaw, "roll": self.roll, "tx": self.t[:, 0],
               "ty": self.t[:, 1], "tz": self.t[:, 2], "scale": self.scale}
        flat = self.exp.reshape(self.n_frames, 63)
        out.update({f"exp_{i:02d}": flat[:, i] for i in range(63)})
        return out


def target_frame_count(n_src: int, src_fps: float, dst_fps: float) -> int:
    """Frames at ``dst_fps`` covering the same duration ``n_src / src_fps`` (at least 1)."""
    return max(1, int(math.ceil(n_src / src_fps * dst_fps - 1e-6)))


def resample(m: Motion, dst_fps: float, n_out: int | None = None) -> Sampled:
    """Sample the motion at every target frame k, i.e. audio time k / dst_fps: linear for exp,
    t, scale; quaternion slerp for the head rotation.

    The file's frame i shows audio time ``i / fps + audio_offset_s`` (upstream prepends 2
    frames of silence: offset -0.08 s), so frame k of the result reads source position
    ``(k / dst_fps - audio_offset_s) * fps``: keys line up with the audio's start frame. The
    default length covers ``audio_duration_s`` (else the motion); past the end the last value holds."""
    if not (dst_fps > 0):
        raise ValueError(f"target fps must be > 0, got {dst_fps}")
    n_src = m.n_frames
    offset = float(m.meta.get("audio_offset_s", 0.0) or 0.0)
    duration = float(m.meta.get("audio_duration_s", 0.0) or 0.0)
    if n_out is None:
        n_out = (max(1, int(math.floor(duration * dst_fps + 0.5))) if duration > 0
                 else target_frame_count(n_src + int(round(offset * m.fps)), m.fps, dst_fps))
    s = (np.arange(int(n_out)) / dst_fps - offset) * m.fps    # (n_out,) source frame position
    s = np.clip(s, 0.0, n_src - 1)
    i0 = np.floor(s).astype(int)
    i1 = np.minimum(i0 + 1, n_src - 1)
    a = s - i0                                         # (n_out,)

    def lerp(x: np.ndarray) -> np.ndarray:
        w = a.reshape((-1,) + (1,) * (x.ndim - 1))
        return x[i0] * (1 - w) + x[i1] * w

    q = quat_continuous(quat_from_matrix(rotation_from_pyr(m.pitch, m.yaw, m.roll)))  # (n_src, 4)
    qs = slerp(q[i0], q[i1], a)                        # (n_out, 4)
    p, y, r = pyr_from_rotation(matrix_from_quat(qs))
    return Sampled(dst_fps, quat_continuous(qs), p, y, r, lerp(m.t), lerp(m.scale), lerp(m.exp))


# -- head bone --------------------------------------------------------------------------------
AXES = {"X": (0, 1.0), "Y": (1, 1.0), "Z": (2, 1.0), "-X": (0, -1.0), "-Y": (1, -1.0), "-Z": (2, -1.0)}


def relative_rotation(quat: np.ndarray, mode: str, reference: np.ndarray | None = None) -> np.ndarray:
    """Camera-frame rotations relative to a neutral: ``ABSOLUTE`` as is, ``FIRST`` frame 0 (or
    ``reference``, a (3, 3) camera rotation: the raw frame 0 of an edited motion), ``MEAN`` the
    normalised mean quaternion. (N, 4) -> (N, 3, 3)."""
    M = matrix_from_quat(quat)
    if mode == "ABSOLUTE":
        return M
    if mode == "FIRST":
        ref = M[0] if reference is None else np.asarray(reference, np.float64)
    elif mode == "MEAN":
        qc = quat_continuous(quat)
        mean = qc.mean(axis=0)
        ref = matrix_from_quat(mean / np.linalg.norm(mean))[0]
    else:
        raise ValueError(f"unknown pose reference {mode!r}")
    return M @ ref.T


def bone_local_rotation(M_cam: np.ndarray, bone_world: np.ndarray) -> np.ndarray:
    """Camera-frame head rotations (N, 3, 3) -> the bone's local pose rotations (N, 3, 3).

    ``bone_world`` is the 3x3 rotation of the bone's rest frame in world space (armature
    object rotation @ bone.matrix_local). A world rotation W about the bone's head is the
    local rotation ``Bw^T W Bw``."""
    Bw = np.asarray(bone_world, dtype=np.float64)
    u, _, vt = np.linalg.svd(Bw)                       # strip scale: nearest rotation
    Bw = u @ vt
    W = CAM_TO_BLENDER @ M_cam @ CAM_TO_BLENDER.T      # (N, 3, 3) world frame
    return Bw.T @ W @ Bw


def manual_axis_rotation(pitch, yaw, roll, pitch_axis: str = "X", yaw_axis: str = "Z",
                         roll_axis: str = "Y") -> np.ndarray:
    """Map pitch/yaw/roll (degrees) straight onto chosen local axes with signs:
    ``R = R_roll R_yaw R_pitch`` (pitch applied first, as LivePortrait). (N,) -> (N, 3, 3)."""
    out = None
    for ang, axis in ((pitch, pitch_axis), (yaw, yaw_axis), (roll, roll_axis)):
        ax, sign = AXES[axis]
        R = _AXIS_ROT[ax](np.radians(np.asarray(ang, np.float64)) * sign)
        out = R if out is None else R @ out
    return out


def rotation_channels(M_local: np.ndarray, rotation_mode: str) -> list[np.ndarray]:
    """Local rotations -> the F-curve values for a bone's rotation mode, as a list of (N,) arrays:
    QUATERNION -> w, x, y, z; AXIS_ANGLE -> angle, x, y, z; Euler orders -> X, Y, Z (radians,
    unwrapped so the curves have no 2-pi jumps)."""
    if rotation_mode == "QUATERNION":
        q = quat_continuous(quat_from_matrix(M_local))
        return [q[:, i] for i in range(4)]
    if rotation_mode == "AXIS_ANGLE":
        q = quat_continuous(quat_from_matrix(M_local))
        q = np.where(q[:, :1] < 0, -q, q)
        angle = 2 * np.arccos(np.clip(q[:, 0], -1, 1))
        s = np.sqrt(np.maximum(1 - q[:, 0] ** 2, 0))
        axis = np.where(s[:, None] > 1e-9, q[:, 1:] / np.where(s > 1e-9, s, 1)[:, None], [0.0, 1.0, 0.0])
        return [angle, axis[:, 0], axis[:, 1], axis[:, 2]]
    if len(rotation_mode) == 3 and set(rotation_mode) == set("XYZ"):
        e = np.unwrap(euler_from_matrix(M_local, rotation_mode), axis=0)
        return [e[:, 0], e[:, 1], e[:, 2]]
    raise ValueError(f"unsupported rotation mode {rotation_mode!r}")


def rotation_data_path(rotation_mode: str) -> str:
    return {"QUATERNION": "rotation_quaternion", "AXIS_ANGLE": "rotation_axis_angle"}.get(
        rotation_mode, "rotation_euler")


def bone_local_location(t: np.ndarray, bone_world: np.ndarray, scale: float, relative: bool = True) -> np.ndarray:
    """Keypoint translation (N, 3) camera frame -> bone-local location offsets (N, 3)."""
    t = np.asarray(t, np.float64)
    if relative:
        t = t - t[:1]
    u, _, vt = np.linalg.svd(np.asarray(bone_world, np.float64))
    Bw = u @ vt
    world = t @ CAM_TO_BLENDER.T * scale               # (N, 3)
    return world @ Bw                                  # rows: Bw^T v


# -- keyframes --------------------------------------------------------------------------------
def keyframe_co(values: np.ndarray, start_frame: float) -> np.ndarray:
    """(N,) values -> flat (2N,) [frame0, v0, frame1, v1, ...] for ``keyframe_points.foreach_set("co")``."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    co = np.empty((len(values), 2), dtype=np.float32)
    co[:, 0] = start_frame + np.arange(len(values))
    co[:, 1] = values
    return co.reshape(-1)


# -- 3-D keypoints for the empties -------------------------------------------------------------
def neutral_keypoints() -> np.ndarray:
    """A plausible frontal layout of the 21 implicit keypoints (21, 3) for when the motion file
    carries no source keypoints: points on an ellipse-ish face grid, in keypoint units."""
    ang = np.linspace(0, 2 * np.pi, N_KP, endpoint=False)
    kp = np.stack([0.5 * np.cos(ang), 0.6 * np.sin(ang), 0.1 * np.cos(2 * ang)], axis=1)
    return kp


def driven_keypoints(s: Sampled, canonical: np.ndarray | None = None, pose: bool = True) -> np.ndarray:
    """LivePortrait's composition ``scale * (kp @ R + exp) + t`` (row vectors), (N, 21, 3),
    converted to Blender axes (x right, y into the image, z up)."""
    kp = neutral_keypoints() if canonical is None else np.asarray(canonical, np.float64).reshape(N_KP, 3)
    R_row = np.transpose(matrix_from_quat(s.quat), (0, 2, 1)) if pose else np.broadcast_to(np.eye(3), (s.n_frames, 3, 3))
    pts = s.scale[:, None, None] * (kp[None] @ R_row + s.exp) + s.t[:, None, :]   # (N, 21, 3)
    return pts @ CAM_TO_BLENDER.T
