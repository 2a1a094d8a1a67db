"""End-to-end ``python -m engine animate`` on tiny synthetic weights: outputs, timing, cancel, errors."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from engine_testkit import engine_env, speech_clip

REPO = Path(__file__).resolve().parents[2]
PORTRAIT = REPO / "examples" / "portrait.jpg"
SPEECH = REPO / "examples" / "speech.wav"


def _animate(*args: str, timeout: float = 300) -> tuple[int, list[dict], str]:
    proc = subprocess.run([sys.executable, "-m", "engine", "animate", *args, "--progress", "json"],
                          capture_output=True, text=True, timeout=timeout, env=engine_env(), cwd=REPO,
                          stdin=subprocess.DEVNULL)
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    return proc.returncode, events, proc.stderr


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.slow
def test_mp4_and_png_sequence_in_sync(tiny_weights: Path, tmp_path: Path) -> None:
    from engine.render.writers import probe_video

    audio = speech_clip(tmp_path, 0.36)
    out, frames = tmp_path / "out" / "demo.mp4", tmp_path / "out" / "frames"
    rc, events, err = _animate("--image", str(PORTRAIT), "--audio", str(audio), "--weights", str(tiny_weights),
                               "--out", str(out), "--frames-dir", str(frames), "--batch", "4")
    assert rc == 0, err
    assert events[0]["type"] == "hello" and events[-1]["type"] == "done"
    assert {e["kind"] for e in events if e["type"] == "artifact"} == {"video", "frames_dir"}
    assert any(e["type"] == "progress" and e["stage"] == "render" and e["unit"] == "frame" for e in events)
    info = probe_video(out)
    assert info["has_audio"] and info["audio_codec"] == "aac"
    assert abs(info["video_s"] - 0.36) <= 1 / 25 + 1e-6
    assert abs(info["video_s"] - info["audio_s"]) <= 1 / 25 + 1e-6
    # paste-back: full portrait size (320x320), not the 512 crop
    assert (info["width"], info["height"]) == (320, 320)
    pngs = sorted(frames.glob("frame_*.png"))
    assert len(pngs) == info["frames"] and pngs[0].name == "frame_00000.png"
    assert _leftovers(out.parent) == ["demo.mp4", "frames"]


@pytest.mark.slow
@pytest.mark.parametrize("fps", [24, 30])
def test_other_frame_rates(tiny_weights: Path, tmp_path: Path, fps: int) -> None:
    from engine.render.writers import probe_video

    seconds = 0.3
    audio = speech_clip(tmp_path, seconds)
    out = tmp_path / f"v{fps}.mp4"
    # also exercise the animation options' plumbing: animal pipeline (no animal weights -> warning),
    # region / strengths
    extra = ["--animal"] if fps == 24 else ["--region", "lip", "--pose-strength", "0.5", "--no-stitching"]
    rc, events, err = _animate("--image", str(PORTRAIT), "--audio", str(audio), "--weights", str(tiny_weights),
                               "--out", str(out), "--fps", str(fps), "--no-pasteback", "--batch", "4", *extra)
    assert rc == 0, err
    warnings = {e["code"] for e in events if e["type"] == "warning"}
    assert ("animal_weights_missing" in warnings) == (fps == 24)
    from engine.weights import synthetic_info
    assert set(synthetic_info(tiny_weights)["parts"]) == {"liveportrait", "joyvasa"}  # the tool marks both halves
    assert "synthetic_weights" in warnings
    info = probe_video(out)
    assert info["frames"] == round(seconds * fps)
    assert abs(info["fps"] - fps) < 1e-6
    assert (info["width"], info["height"]) == (512, 512)
    assert abs(info["video_s"] - info["audio_s"]) <= 1 / fps + 1e-6


@pytest.mark.slow
@pytest.mark.parametrize("how", ["stdin", "sigint"])
def test_cancel_mid_render_leaves_nothing(tiny_weights: Path, tmp_path: Path, how: str) -> None:
    audio = speech_clip(tmp_path, 2.0)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    cmd = [sys.executable, "-m", "engine", "animate", "--image", str(PORTRAIT), "--audio", str(audio),
           "--weights", str(tiny_weights), "--out", str(out_dir / "c.mp4"), "--frames-dir", str(out_dir / "fr"),
           "--batch", "1", "--progress", "json"]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, env=engine_env(), cwd=REPO)
    events = []
    try:
        assert proc.stdout is not None and proc.stdin is not None
        for line in proc.stdout:
            ev = json.loads(line)
            events.append(ev)
            if ev["type"] == "progress" and ev["stage"] == "render" and ev["done"] > 0:
                if how == "stdin":
                    proc.stdin.write("cancel\n")
                    proc.stdin.flush()
                else:
                    proc.send_signal(signal.SIGINT)
                break
        rest, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    events += [json.loads(line) for line in rest.splitlines() if line.strip()]
    assert proc.returncode == 130
    assert events[-1]["type"] == "cancelled" and events[-1]["at"]["stage"] == "render"
    assert not [e for e in events if e["type"] in ("done", "artifact")]
    assert _leftovers(out_dir) == []


def _run_inprocess(capsys, *args: str) -> tuple[int, list[dict]]:
    from engine.cli import main

    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        rc = main(["animate", *args, "--progress", "json"])
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    out = capsys.readouterr().out
    return rc, [json.loads(line) for line in out.splitlines() if line.strip()]


def _one_error(events: list[dict]) -> dict:
    errors = [e for e in events if e["type"] == "error"]
    assert len(errors) == 1, events
    assert events[0]["type"] == "hello"
    assert not [e for e in events if e["type"] == "done"]
    return errors[0]


@pytest.fixture()
def good_args(tiny_weights: Path, tmp_path: Path) -> dict[str, str]:
    return {"--image": str(PORTRAIT), "--audio": str(speech_clip(tmp_path, 0.3)), "--weights": str(tiny_weights),
            "--out": str(tmp_path / "o" / "x.mp4")}


def _args(base: dict[str, str], **over: str) -> list[str]:
    merged = dict(base)
    merged.update({f"--{k.replace('_', '-')}": v for k, v in over.items()})
    return [x for kv in merged.items() for x in kv]


@pytest.mark.parametrize("case,code", [
    ("missing_image", "image_invalid"),
    ("corrupt_image", "image_invalid"),
    ("no_face", "no_face"),
    ("bad_audio", "audio_invalid"),
    ("missing_weights", "weights_missing"),
    ("corrupt_weights", "weights_corrupt"),
    ("unwritable_output", "output_unwritable"),
])
def test_bad_inputs_give_one_clear_error(capsys, good_args, tmp_path: Path, tiny_weights: Path,
                                         case: str, code: str) -> None:
    import shutil

    import cv2

    over: dict[str, str] = {}
    if case == "missing_image":
        over["image"] = str(tmp_path / "nope.png")
    elif case == "corrupt_image":
        bad = tmp_path / "bad.png"
        bad.write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
        over["image"] = str(bad)
    elif case == "no_face":
        flat = tmp_path / "flat.png"
        rng = np.random.default_rng(0)
        cv2.imwrite(str(flat), (rng.random((256, 256, 3)) * 40 + 100).astype(np.uint8))
        over["image"] = str(flat)
    elif case == "bad_audio":
        bad = tmp_path / "bad.wav"
        bad.write_text("not audio at all")
        over["audio"] = str(bad)
    elif case == "missing_weights":
        empty = tmp_path / "empty_weights"
        empty.mkdir()
        over["weights"] = str(empty)
    elif case == "corrupt_weights":
        broken = tmp_path / "broken_weights"
        shutil.copytree(tiny_weights, broken)
        target = broken / "liveportrait/base_models/warping_module.pth"
        target.write_bytes(target.read_bytes()[:1000])
        over["weights"] = str(broken)
    elif case == "unwritable_output":
        blocker = tmp_path / "blocker"
        blocker.write_text("a file where a folder should be")
        over["out"] = str(blocker / "sub" / "x.mp4")
    rc, events = _run_inprocess(capsys, *_args(good_args, **over))
    assert rc == 1
    err = _one_error(events)
    assert err["code"] == code, err
    assert err["message"]
    if case == "no_face":
        assert "--crop" in err["message"]


@pytest.mark.slow
def test_reuse_motion_and_upstream_timing(tiny_weights: Path, tmp_path: Path) -> None:
    """--save-motion then --motion: PNG-only without audio, and --upstream-timing keeps every frame."""
    from engine.motion.npz import load_motion
    from engine.render.writers import probe_video

    seconds = 0.3
    audio = speech_clip(tmp_path, seconds)
    motion = tmp_path / "m.npz"
    rc, events, err = _animate("--image", str(PORTRAIT), "--audio", str(audio), "--weights", str(tiny_weights),
                               "--frames-dir", str(tmp_path / "f1"), "--save-motion", str(motion),
                               "--no-pasteback", "--batch", "4")
    assert rc == 0, err
    m = load_motion(motion)
    n_generated = (int(seconds * 16000) + 1920) // 640  # upstream frame count, incl. 2 lead-in frames
    assert m.n_frames == n_generated
    assert len(list((tmp_path / "f1").iterdir())) == round(seconds * 25)
    # upstream timing: all generated frames, video longer than the audio
    out = tmp_path / "up.mp4"
    rc, events, err = _animate("--image", str(PORTRAIT), "--audio", str(audio), "--weights", str(tiny_weights),
                               "--motion", str(motion), "--out", str(out), "--upstream-timing",
                               "--no-pasteback", "--batch", "4")
    assert rc == 0, err
    assert not [e for e in events if e["type"] == "progress" and e["stage"] == "motion"]
    info = probe_video(out)
    assert info["frames"] == n_generated
    assert info["video_s"] > info["audio_s"] + 0.04


def test_preview_stride_bounds_cost() -> None:
    from engine.render.preview import MAX_FRAMES, preview_stride

    assert preview_stride(20) == 8 and preview_stride(225) == 10     # 9 s example: 23 frames
    for n in (1, 8, 200, 1500, 90_000):                                # up to an hour of audio
        s = preview_stride(n)
        assert s >= 8 and len(range(0, n, s)) <= MAX_FRAMES


@pytest.mark.slow
def test_preview_renders_every_nth_frame_over_the_full_soundtrack(tiny_weights: Path, tmp_path: Path) -> None:
    import cv2

    from engine.device import cpu_has_native_bf16
    from engine.render.writers import probe_video

    seconds = 0.8                                                        # 20 frames -> frames 0, 8, 16
    audio = speech_clip(tmp_path, seconds)
    out = tmp_path / "prev.mp4"
    rc, events, err = _animate("--image", str(PORTRAIT), "--audio", str(audio), "--weights", str(tiny_weights),
                               "--out", str(out), "--frames-dir", str(tmp_path / "f"), "--preview", "--dtype", "bfloat16" if cpu_has_native_bf16() else "float32")   # emulated bf16 is slow
    assert rc == 0, err
    render = [e for e in events if e["type"] == "progress" and e["stage"] == "render"]
    assert render[-1]["done"] == render[-1]["total"] == 3
    info = probe_video(out)
    assert info["frames"] == 3 and abs(info["fps"] - 25 / 8) < 1e-6
    assert abs(info["audio_s"] - seconds) < 0.05 and abs(info["video_s"] - info["audio_s"]) <= 8 / 25 + 1e-6
    sheet_path = tmp_path / "prev_contact.png"
    assert {e["kind"]: e["path"] for e in events if e["type"] == "artifact"}["contact_sheet"] == str(sheet_path)
    sheet = cv2.imread(str(sheet_path))
    frame0 = cv2.imread(str(tmp_path / "f" / "frame_00000.png"))
    assert sheet.shape[1] == 2 * 256 and sheet.shape[0] == 2 * round(frame0.shape[0] * 256 / frame0.shape[1])
    assert sorted(p.name for p in (tmp_path / "f").iterdir()) == [f"frame_0000{i}.png" for i in range(3)]
    from engine.fileio import PART_PREFIX

    assert not [p for p in tmp_path.iterdir() if p.name.startswith(PART_PREFIX)]
