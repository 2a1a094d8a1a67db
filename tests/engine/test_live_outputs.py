"""Live Link Face (UDP) and VMC (OSC) packets, caught by receivers on 127.0.0.1 started here and read
by decoders written here from the formats' descriptions (not the engine's encoders): the right
channels in the right places, the values of the exports' ARKit readout, the head rotation."""
from __future__ import annotations

import math
import socket
import struct
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any, Iterator

import numpy as np
import pytest

from engine.export import arkit
from engine.live.outputs import LiveLinkOutput, Outputs, VmcOutput

#: Unreal's EARFaceBlendShape order, written out again here (the packet's layout)
UE_ORDER = """EyeBlinkLeft EyeLookDownLeft EyeLookInLeft EyeLookOutLeft EyeLookUpLeft EyeSquintLeft EyeWideLeft
EyeBlinkRight EyeLookDownRight EyeLookInRight EyeLookOutRight EyeLookUpRight EyeSquintRight EyeWideRight JawForward
JawLeft JawRight JawOpen MouthClose MouthFunnel MouthPucker MouthLeft MouthRight MouthSmileLeft MouthSmileRight
MouthFrownLeft MouthFrownRight MouthDimpleLeft MouthDimpleRight MouthStretchLeft MouthStretchRight MouthRollLower
MouthRollUpper MouthShrugLower MouthShrugUpper MouthPressLeft MouthPressRight MouthLowerDownLeft MouthLowerDownRight
MouthUpperUpLeft MouthUpperUpRight BrowDownLeft BrowDownRight BrowInnerUp BrowOuterUpLeft BrowOuterUpRight CheekPuff
CheekSquintLeft CheekSquintRight NoseSneerLeft NoseSneerRight TongueOut HeadYaw HeadPitch HeadRoll LeftEyeYaw
LeftEyePitch LeftEyeRoll RightEyeYaw RightEyePitch RightEyeRoll""".split()


@contextmanager
def receiver() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5.0)
    try:
        yield sock
    finally:
        sock.close()


def decode_livelink(data: bytes) -> dict[str, Any]:
    pos = 0

    def take(fmt: str) -> tuple[Any, ...]:
        nonlocal pos
        size = struct.calcsize(fmt)
        out = struct.unpack(fmt, data[pos:pos + size])
        pos += size
        return out

    def string() -> str:
        nonlocal pos
        (n,) = take(">i")
        s = data[pos:pos + n].decode("utf-8")
        pos += n
        return s

    (version,) = take(">B")
    device, subject = string(), string()
    frame, sub, num, den = take(">ifii")
    (count,) = take(">B")
    values = take(f">{count}f")
    assert pos == len(data), "trailing bytes"
    return {"version": version, "device": device, "subject": subject, "frame": frame, "sub": sub,
            "rate": (num, den), "values": dict(zip(UE_ORDER, values, strict=True))}


def decode_osc(data: bytes) -> list[tuple[str, list[Any]]]:
    """An OSC bundle (or message) -> [(address, args)], by the OSC 1.0 spec."""
    def padded_string(buf: bytes, i: int) -> tuple[str, int]:
        end = buf.index(b"\0", i)
        return buf[i:end].decode(), (end + 4) & ~3

    def message(buf: bytes) -> tuple[str, list[Any]]:
        address, i = padded_string(buf, 0)
        tags, i = padded_string(buf, i)
        args: list[Any] = []
        for tag in tags[1:]:
            if tag == "f":
                args.append(struct.unpack(">f", buf[i:i + 4])[0])
                i += 4
            elif tag == "s":
                s, i = padded_string(buf, i)
                args.append(s)
            else:
                raise AssertionError(f"unexpected OSC type tag {tag}")
        return address, args

    if not data.startswith(b"#bundle\0"):
        return [message(data)]
    out, i = [], 16                           # "#bundle\0" + 8-byte time tag
    while i < len(data):
        (size,) = struct.unpack(">i", data[i:i + 4])
        out += decode_osc(data[i + 4:i + 4 + size])
        i += 4 + size
    return out


def _frames(n: int = 12) -> list[SimpleNamespace]:
    rng = np.random.default_rng(7)
    base = rng.normal(0, 0.02, (21, 3))
    return [SimpleNamespace(frame=k, pitch=float(rng.normal(0, 5)), yaw=float(rng.normal(0, 5)),
                            roll=float(rng.normal(0, 5)), exp=(base + rng.normal(0, 0.01, (21, 3))).astype(np.float32))
            for k in range(n)]


def _expected_shapes(frames: list[SimpleNamespace], k: int) -> dict[str, float]:
    """Frame k as `engine export` would read out the take's first k+1 frames (ARKit camelCase keys)."""
    w = arkit.arkit_weights(np.stack([f.exp for f in frames[:k + 1]]), reference_mode="auto")
    return {key[0].upper() + key[1:]: float(v[-1]) for key, v in w.items()}


def test_livelink_face_packets_carry_the_readout_and_head_rotation() -> None:
    frames = _frames()
    with receiver() as rx:
        out = Outputs([LiveLinkOutput("127.0.0.1", rx.getsockname()[1], subject="Tester")])
        for f in frames:
            out.send(f)
        packets = [decode_livelink(rx.recv(65536)) for _ in frames]
        out.close()
    assert any(v > 0.01 for p in packets for k, v in p["values"].items() if not k.startswith(("Head", "Left", "Right")))
    for k, (p, f) in enumerate(zip(packets, frames)):
        assert (p["version"], p["subject"], p["frame"], p["rate"]) == (6, "Tester", k, (25, 1))
        want = _expected_shapes(frames, k)
        for name in UE_ORDER[:52]:
            assert p["values"][name] == pytest.approx(want.get(name, 0.0), abs=1e-6), name
        assert [p["values"][n] for n in ("HeadYaw", "HeadPitch", "HeadRoll")] == pytest.approx(
            [math.radians(f.yaw), math.radians(f.pitch), math.radians(f.roll)], abs=1e-6)
        assert all(p["values"][n] == 0.0 for n in UE_ORDER[55:])


def _euler_quat(pitch: float, yaw: float, roll: float) -> np.ndarray:
    """Unity Quaternion.Euler(x, y, z) via rotation matrices: R = Ry @ Rx @ Rz (x, y, z, w)."""
    from scipy.spatial.transform import Rotation

    m = (Rotation.from_euler("y", yaw, degrees=True) * Rotation.from_euler("x", pitch, degrees=True)
         * Rotation.from_euler("z", roll, degrees=True))
    return m.as_quat()


def test_vmc_bundles_carry_blend_values_apply_and_the_head_bone() -> None:
    pytest.importorskip("pythonosc")
    frames = _frames(6)
    with receiver() as rx:
        out = Outputs([VmcOutput("127.0.0.1", rx.getsockname()[1])])
        for f in frames:
            out.send(f)
        bundles = [decode_osc(rx.recv(65536)) for _ in frames]
        out.close()
    for k, (msgs, f) in enumerate(zip(bundles, frames)):
        assert msgs[-1] == ("/VMC/Ext/Blend/Apply", [])
        blends = {args[0]: args[1] for addr, args in msgs if addr == "/VMC/Ext/Blend/Val"}
        assert set(UE_ORDER[:52]) <= set(blends) and {"A", "Blink_L", "Blink_R"} <= set(blends)
        want = _expected_shapes(frames, k)
        for name in UE_ORDER[:52]:
            assert blends[name] == pytest.approx(want.get(name, 0.0), abs=1e-6), name
        assert blends["A"] == pytest.approx(blends["JawOpen"]) and blends["Blink_L"] == pytest.approx(blends["EyeBlinkLeft"])
        (bone,) = [args for addr, args in msgs if addr == "/VMC/Ext/Bone/Pos"]
        assert bone[0] == "Head" and bone[1:4] == [0.0, 0.0, 0.0]
        q, want_q = np.array(bone[4:8]), _euler_quat(f.pitch, f.yaw, f.roll)
        assert min(np.abs(q - want_q).max(), np.abs(q + want_q).max()) < 1e-5


def test_an_absent_receiver_does_not_stop_the_stream() -> None:
    with receiver() as rx:
        port = rx.getsockname()[1]
    out = Outputs([LiveLinkOutput("127.0.0.1", port)])     # nothing listens there now
    for f in _frames(3):
        out.send(f)
    out.close()


def test_paced_frames_go_out_in_order_and_a_stop_plays_out_the_rest() -> None:
    """Frames are queued with their due time (a hop's burst is spread over real time); a stop sends
    the ones still due within the drain time; order never changes."""
    import time

    frames = _frames(5)
    with receiver() as rx:
        out = Outputs([LiveLinkOutput("127.0.0.1", rx.getsockname()[1])])
        now = time.monotonic()
        for k, f in enumerate(frames):
            out.submit(f, now + 0.04 * k - (0.5 if k == 0 else 0.0))   # frame 0 already late
        out.close(drain_s=5.0)
        got = [decode_livelink(rx.recv(65536))["frame"] for _ in frames]
    assert got == [0, 1, 2, 3, 4]


def test_a_cancel_drops_frames_not_yet_due() -> None:
    import time

    with receiver() as rx:
        out = Outputs([LiveLinkOutput("127.0.0.1", rx.getsockname()[1])])
        for f in _frames(3):
            out.submit(f, time.monotonic() + 30.0)
        out.close()                                 # no drain: nothing was due
        rx.settimeout(0.2)
        with pytest.raises(socket.timeout):
            rx.recv(65536)
