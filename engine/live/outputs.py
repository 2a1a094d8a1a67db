"""Live outputs beyond Blender: Live Link Face over UDP (Unreal) and VMC over OSC (VSeeFace, Warudo, VNyan).

Both carry the ARKit 52 from the same semantic readout the exports use (engine/export/arkit.py,
the add-on's defaults) plus the head rotation. The readout needs a neutral expression: offline it
is the clip's ``auto`` reference (the median expression, lips from the basis's rest array); live it
is the same rule over the frames seen so far (the last :data:`REFERENCE_FRAMES`), so frame k of a
stream reads out exactly as frame k of the take's first k+1 frames would in ``engine export``.

Live Link Face packet (what Unreal's Live Link Face source reads; network byte order, as Epic's
``FNboSerializeToBuffer`` writes it)::

    uint8   version = 6
    int32   length, bytes  device id (UTF-8)
    int32   length, bytes  subject name (UTF-8)
    int32   frame number   \\
    float32 sub-frame       > FQualifiedFrameTime at 25/1 fps (frame = the live frame index)
    int32   rate numerator /
    int32   rate denominator
    uint8   count = 61
    61 x float32            the 52 blendshapes in Unreal's EARFaceBlendShape order, then HeadYaw,
                            HeadPitch, HeadRoll (radians, as the CSV export), 6 eye rotations (0)

VMC (OSC over UDP, one bundle per frame): ``/VMC/Ext/Bone/Pos "Head" px py pz qx qy qz qw`` (head
rotation as a Unity quaternion of Euler(pitch, yaw, roll), LivePortrait's signs, position 0),
``/VMC/Ext/Blend/Val NAME value`` for each ARKit shape (PascalCase, the perfect-sync names) and the
VRM presets ``A`` (jawOpen), ``Blink_L``, ``Blink_R``, then ``/VMC/Ext/Blend/Apply``.
"""
from __future__ import annotations

import math
import socket
import struct
import sys
from collections import deque
from typing import TYPE_CHECKING, Any, Iterable, Protocol

import numpy as np

from engine.export import arkit
from engine.export.livelink import ARKIT_COLUMNS, ROTATION_COLUMNS, arkit_column

if TYPE_CHECKING:
    import threading

    from pythonosc.osc_message import OscMessage


#: frames the live neutral expression is measured over (10 s at 25 fps)
REFERENCE_FRAMES = 250
LIVELINK_VERSION = 6
LIVELINK_FPS = 25
DEFAULT_SUBJECT = "JoyVASA"
DEFAULT_DEVICE_ID = "JoyVASA-live"
DEFAULT_HOST = "127.0.0.1"

#: the 52 blendshapes in Unreal's EARFaceBlendShape order (= Live Link Face's UDP packet): the CSV
#: export's ARKIT_COLUMNS with JawLeft/JawRight and MouthLeft/MouthRight swapped (the app's CSV header
#: lists Right before Left for those two pairs; the enum lists Left first)
_CSV_TO_UDP = {"JawRight": "JawLeft", "JawLeft": "JawRight", "MouthRight": "MouthLeft", "MouthLeft": "MouthRight"}
LIVELINK_SHAPES = tuple(_CSV_TO_UDP.get(name, name) for name in ARKIT_COLUMNS)
LIVELINK_ROTATIONS = ROTATION_COLUMNS       # the same 9 rotations, in the same order, as the CSV export
#: VRM 0.x presets for avatars without perfect sync: preset -> the ARKit shape it follows
VMC_PRESETS = {"A": "JawOpen", "Blink_L": "EyeBlinkLeft", "Blink_R": "EyeBlinkRight"}


class FrameLike(Protocol):
    """The fields of a committed live frame an output reads (engine/live/stream.py LiveFrame)."""

    frame: int
    pitch: float
    yaw: float
    roll: float
    exp: np.ndarray


class LiveArkit:
    """The exports' ARKit readout, frame by frame, with the ``auto`` reference of the frames so far."""

    def __init__(self, reference_frames: int = REFERENCE_FRAMES) -> None:
        self._history: deque[np.ndarray] = deque(maxlen=reference_frames)
        self._basis = arkit.load_basis()

    def __call__(self, exp: np.ndarray) -> dict[str, float]:
        """PascalCase ARKit shape -> weight in [0, 1] (every one of the 52; unread shapes are 0)."""
        row = np.asarray(exp, np.float64).reshape(21, 3)
        self._history.append(row)
        ref = arkit.reference(np.stack(self._history), "auto", self._basis)
        # "first" reads every row against row 0: here the live reference
        weights = arkit.arkit_weights(np.stack([ref, row]), reference_mode="first")
        out = dict.fromkeys(LIVELINK_SHAPES, 0.0)
        for key, values in weights.items():
            out[arkit_column(key)] = float(values[1])
        return out


def _string(text: str) -> bytes:
    data = text.encode("utf-8")
    return struct.pack("!i", len(data)) + data


def livelink_packet(frame: int, shapes: dict[str, float], head_rad: tuple[float, float, float], *,
                    subject: str = DEFAULT_SUBJECT, device_id: str = DEFAULT_DEVICE_ID) -> bytes:
    """One Live Link Face UDP packet (layout in the module docstring)."""
    values = [shapes.get(name, 0.0) for name in LIVELINK_SHAPES] + list(head_rad) + [0.0] * 6
    return (struct.pack("!B", LIVELINK_VERSION) + _string(device_id) + _string(subject)
            + struct.pack("!ifii", int(frame), 0.0, LIVELINK_FPS, 1)
            + struct.pack("!B", len(values)) + struct.pack(f"!{len(values)}f", *values))


def unity_quaternion(pitch_deg: float, yaw_deg: float, roll_deg: float) -> tuple[float, float, float, float]:
    """Unity's ``Quaternion.Euler(pitch, yaw, roll)`` (z, then x, then y) as (x, y, z, w)."""
    def axis(deg: float, i: int) -> np.ndarray:
        q = np.zeros(4)
        q[i] = math.sin(math.radians(deg) / 2)
        q[3] = math.cos(math.radians(deg) / 2)
        return q

    def mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        ax, ay, az, aw = a
        bx, by, bz, bw = b
        return np.array([aw * bx + ax * bw + ay * bz - az * by, aw * by - ax * bz + ay * bw + az * bx,
                         aw * bz + ax * by - ay * bx + az * bw, aw * bw - ax * bx - ay * by - az * bz])

    q = mul(mul(axis(yaw_deg, 1), axis(pitch_deg, 0)), axis(roll_deg, 2))
    return tuple(float(v) for v in q)  # type: ignore[return-value]


class LiveOutput(Protocol):
    name: str

    def send(self, frame: FrameLike, shapes: dict[str, float]) -> None: ...

    def close(self) -> None: ...


class _Udp:
    """A connected-less UDP sender that never raises into the session (a receiver that is not
    running yet gives ECONNREFUSED on some systems; the stream must go on)."""

    def __init__(self, host: str, port: int) -> None:
        self.address = (host, port)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.errors = 0

    def sendto(self, data: bytes) -> None:
        try:
            self.sock.sendto(data, self.address)
        except OSError as exc:
            self.errors += 1
            if self.errors == 1:
                print(f"live output to {self.address[0]}:{self.address[1]}: {exc} (further errors not shown)",
                      file=sys.stderr, flush=True)

    def close(self) -> None:
        self.sock.close()


class LiveLinkOutput:
    """Live Link Face over UDP (Unreal: Live Link > Source > Live Link Face, port 11111 by default)."""

    name = "livelink"

    def __init__(self, host: str, port: int, subject: str = DEFAULT_SUBJECT) -> None:
        self.udp = _Udp(host, port)
        self.subject = subject

    def send(self, frame: FrameLike, shapes: dict[str, float]) -> None:
        head = tuple(math.radians(float(v)) for v in (frame.yaw, frame.pitch, frame.roll))
        self.udp.sendto(livelink_packet(frame.frame, shapes, head, subject=self.subject))  # type: ignore[arg-type]

    def close(self) -> None:
        self.udp.close()


def vmc_bundle(shapes: dict[str, float], head_deg: tuple[float, float, float]) -> bytes:
    """One OSC bundle: head bone, every blend value, Apply (python-osc builds the bytes)."""
    from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder
    from pythonosc.osc_message_builder import OscMessageBuilder

    def message(address: str, *args: Any) -> OscMessage:
        b = OscMessageBuilder(address=address)
        for a in args:
            b.add_arg(a, "s" if isinstance(a, str) else "f")
        return b.build()

    bundle = OscBundleBuilder(IMMEDIATELY)
    bundle.add_content(message("/VMC/Ext/Bone/Pos", "Head", 0.0, 0.0, 0.0, *unity_quaternion(*head_deg)))
    for name in LIVELINK_SHAPES:
        bundle.add_content(message("/VMC/Ext/Blend/Val", name, float(shapes.get(name, 0.0))))
    for preset, source in VMC_PRESETS.items():
        bundle.add_content(message("/VMC/Ext/Blend/Val", preset, float(shapes.get(source, 0.0))))
    bundle.add_content(message("/VMC/Ext/Blend/Apply"))
    return bundle.build().dgram


class VmcOutput:
    """VMC protocol over OSC (VSeeFace / Warudo / VNyan: VMC receiver, port 39539 by default)."""

    name = "vmc"

    def __init__(self, host: str, port: int) -> None:
        try:
            import pythonosc  # noqa: F401 - fail at start, not at the first frame
        except ImportError as exc:
            from engine.errors import missing_dependency

            raise missing_dependency("pythonosc", exc) from None
        self.udp = _Udp(host, port)

    def send(self, frame: FrameLike, shapes: dict[str, float]) -> None:
        self.udp.sendto(vmc_bundle(shapes, (float(frame.pitch), float(frame.yaw), float(frame.roll))))

    def close(self) -> None:
        self.udp.close()


class Outputs:
    """The session's network outputs: one readout per frame shared by all of them.

    Why paced: the stream commits H frames at once; a receiver that shows the newest value (Unreal
    Live Link's default, VMC apps) would jump once per hop. :meth:`submit` queues a frame with the
    time it is due (its audio time + the playout delay D, on ``time.monotonic``); a sender thread
    sends each at that time, in order (at once when it is already late). :meth:`send` is the
    immediate path the thread uses."""

    def __init__(self, outputs: Iterable[LiveOutput]) -> None:
        import queue

        self.outputs = list(outputs)
        self.readout = LiveArkit() if self.outputs else None
        self._queue: "queue.Queue[tuple[float, FrameLike] | None]" = queue.Queue()
        self._thread: threading.Thread | None = None
        self._drop = False

    def send(self, frame: FrameLike) -> None:
        if self.readout is None:
            return
        shapes = self.readout(frame.exp)
        for out in self.outputs:
            out.send(frame, shapes)

    def submit(self, frame: FrameLike, due: float) -> None:
        """Send ``frame`` at ``due`` (``time.monotonic()``), after every frame submitted before it."""
        if not self.outputs:
            return
        if self._thread is None:
            import threading

            self._thread = threading.Thread(target=self._pace, name="live-outputs", daemon=True)
            self._thread.start()
        self._queue.put((due, frame))

    def _pace(self) -> None:
        import time

        while True:
            item = self._queue.get()
            if item is None or self._drop:
                return
            due, frame = item
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            if self._drop:
                return
            try:
                self.send(frame)
            except Exception as exc:  # noqa: BLE001 - an output must never stop the session
                print(f"live output: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)

    def close(self, drain_s: float = 0.0) -> None:
        """Stop: send what is still due within ``drain_s`` seconds (a stopped take plays out its
        last frames), drop the rest, close the sockets."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=drain_s)
            self._drop = True
            self._thread.join(timeout=1.0)
        for out in self.outputs:
            out.close()


def open_outputs(livelink: tuple[str, int] | None, vmc: tuple[str, int] | None) -> Outputs:
    """The outputs a session asked for (``(host, port)`` each, None = off)."""
    outs: list[LiveOutput] = []
    if livelink is not None:
        outs.append(LiveLinkOutput(*livelink))
    if vmc is not None:
        outs.append(VmcOutput(*vmc))
    return Outputs(outs)
