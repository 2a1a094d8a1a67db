"""Writers: mp4 with AAC audio of the right length, PNG sequences, atomic behaviour, timeline plan."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.render.writers import Mp4Writer, PngSequenceWriter, even_size, pick_video_codec, probe_video

REPO = Path(__file__).resolve().parents[2]
SPEECH = REPO / "examples" / "speech.wav"


def _audio(tmp: Path, seconds: float) -> Path:
    import soundfile as sf

    wave, sr = sf.read(str(SPEECH), dtype="float32")
    p = tmp / "a.wav"
    sf.write(str(p), wave[: int(seconds * sr)], sr)
    return p


def test_codec_and_even_size() -> None:
    assert pick_video_codec() in ("libx264", "h264", "libopenh264", "mpeg4")
    assert even_size(321, 200) == (320, 200)


@pytest.mark.parametrize("fps", [25.0, 24.0, 30.0])
def test_mp4_duration_matches_audio(tmp_path: Path, fps: float) -> None:
    seconds = 1.0
    audio = _audio(tmp_path, seconds)
    out = tmp_path / "v.mp4"
    n = round(seconds * fps)
    with Mp4Writer(out, fps, 65, 48, audio) as w:
        for i in range(n):
            w.write(np.full((48, 65, 3), (i * 7) % 256, np.uint8))
    info = probe_video(out)
    assert info["frames"] == n and info["has_audio"] and info["audio_codec"] == "aac"
    assert (info["width"], info["height"]) == (64, 48)
    assert abs(info["video_s"] - seconds) < 1e-6
    assert abs(info["audio_s"] - seconds) <= 1 / fps
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav", "v.mp4"]


def test_mp4_audio_trim(tmp_path: Path) -> None:
    audio = _audio(tmp_path, 1.0)
    out = tmp_path / "t.mp4"
    with Mp4Writer(out, 25, 32, 32, audio, audio_max_s=0.5) as w:
        for _ in range(13):
            w.write(np.zeros((32, 32, 3), np.uint8))
    assert abs(probe_video(out)["audio_s"] - 0.5) <= 0.04


def test_failed_write_leaves_nothing(tmp_path: Path) -> None:
    out = tmp_path / "x.mp4"
    frames = tmp_path / "frames"
    with pytest.raises(RuntimeError):
        with Mp4Writer(out, 25, 32, 32, None) as w, PngSequenceWriter(frames) as p:
            for _ in range(3):
                w.write(np.zeros((32, 32, 3), np.uint8))
                p.write(np.zeros((32, 32, 3), np.uint8))
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_png_sequence(tmp_path: Path) -> None:
    import cv2

    folder = tmp_path / "seq"
    with PngSequenceWriter(folder) as p:
        for i in range(3):
            frame = np.zeros((8, 8, 3), np.uint8)
            frame[..., 0] = 255  # red in RGB
            p.write(frame)
    names = sorted(x.name for x in folder.iterdir())
    assert names == ["frame_00000.png", "frame_00001.png", "frame_00002.png"]
    bgr = cv2.imread(str(folder / names[0]))
    assert tuple(bgr[0, 0]) == (0, 0, 255)


def _motion(n: int, fps: float = 25.0, offset: float = -0.08):
    from engine.motion.npz import MotionData

    rng = np.random.default_rng(0)
    return MotionData(fps=fps, exp=rng.normal(size=(n, 21, 3)).astype(np.float32),
                      scale=np.ones(n, np.float32), t=np.zeros((n, 3), np.float32),
                      pitch=np.zeros(n, np.float32), yaw=np.zeros(n, np.float32), roll=np.zeros(n, np.float32),
                      R=np.tile(np.eye(3, dtype=np.float32), (n, 1, 1)), coef=np.zeros((n, 73), np.float32),
                      meta={"audio_offset_s": offset, "audio_duration_s": 6.0})


def test_timeline_sync_and_upstream() -> None:
    from engine.render.timeline import plan_frames

    m = _motion(153)  # upstream: 6.0 s -> 153 frames incl. 2 lead-in frames
    sync = plan_frames(m, audio_duration_s=6.0)
    assert sync.dropped_lead == 2 and sync.frames.n_frames == 150
    np.testing.assert_array_equal(sync.frames.exp[0], m.exp[2])
    np.testing.assert_array_equal(sync.reference.exp[0], m.exp[0])
    up = plan_frames(m, audio_duration_s=6.0, upstream_timing=True)
    assert up.dropped_lead == 0 and up.frames.n_frames == 153
    for fps in (24.0, 30.0):
        plan = plan_frames(m, audio_duration_s=6.0, fps=fps)
        assert plan.frames.n_frames == round(6.0 * fps) and plan.fps == fps


def test_codec_choice_auto_falls_back_to_libx264(monkeypatch) -> None:
    import engine.render.writers as writers

    ok, reason = writers.nvenc_status()
    assert writers.nvenc_status() == (ok, reason)       # probed once, cached
    if not ok:                                            # this machine: no NVIDIA driver
        assert "h264_nvenc" in reason
        assert writers.pick_video_codec("auto") == "libx264"
        with pytest.raises(writers.OutputError) as exc:
            writers.pick_video_codec("h264_nvenc")
        assert "--codec auto" in str(exc.value) and "libx264" in str(exc.value)
    assert writers.pick_video_codec("libx264") == "libx264"
    with pytest.raises(writers.BadRequest):
        writers.pick_video_codec("h265")
    # a card with NVENC (faked): auto takes it, and the writer passes the chosen quality settings
    monkeypatch.setattr(writers, "nvenc_status", lambda: (True, "faked"))
    assert writers.pick_video_codec("auto") == "h264_nvenc" == writers.pick_video_codec("h264_nvenc")
    assert writers.NVENC_OPTIONS["rc"] == "vbr" and writers.NVENC_OPTIONS["cq"] == "19"


def test_mp4_writer_reports_the_codec_it_used(tmp_path: Path) -> None:
    with Mp4Writer(tmp_path / "c.mp4", 25, 32, 32, None, codec="libx264") as w:
        w.write(np.zeros((32, 32, 3), np.uint8))
    assert w.codec == "libx264" and probe_video(tmp_path / "c.mp4")["codec"] == "h264"


def test_unusable_codec_leaves_nothing(tmp_path: Path, monkeypatch) -> None:
    import engine.render.writers as writers

    monkeypatch.setattr(writers, "nvenc_status", lambda: (False, "h264_nvenc does not open here (faked)"))
    with pytest.raises(writers.OutputError):
        with Mp4Writer(tmp_path / "n.mp4", 25, 32, 32, None, codec="h264_nvenc") as w:
            w.write(np.zeros((32, 32, 3), np.uint8))
    assert list(tmp_path.iterdir()) == []


def test_doctor_reports_hardware_encode(monkeypatch) -> None:
    import io

    import engine.render.writers as writers
    from engine.pipeline.doctor import devices, print_text

    monkeypatch.setattr(writers, "nvenc_status", lambda: (False, "h264_nvenc does not open here (faked)"))
    info = devices()
    assert info["nvenc"] == {"usable": False, "reason": "h264_nvenc does not open here (faked)"}
    assert info["video_codec"] == "libx264"
    report = {"versions": {}, "devices": info, "weights": {"root": None}, "ok": False, "next": []}
    buf = io.StringIO()
    print_text(report, buf)
    assert "hardware H.264 (h264_nvenc): no (h264_nvenc does not open here (faked))" in buf.getvalue()
    monkeypatch.setattr(writers, "nvenc_status", lambda: (True, "faked"))
    assert devices()["video_codec"] == "h264_nvenc"


def test_auto_falls_back_when_nvenc_does_not_open_after_the_probe(tmp_path: Path, monkeypatch) -> None:
    """The probe said yes, but the encoder does not open now (all NVENC sessions taken): auto
    writes with libx264 and says why; an explicit h264_nvenc is a clear OutputError."""
    import engine.render.writers as writers

    if writers.nvenc_status()[0]:
        pytest.skip("h264_nvenc really opens on this machine")
    monkeypatch.setattr(writers, "nvenc_status", lambda: (True, "faked"))
    with Mp4Writer(tmp_path / "a.mp4", 25, 32, 32, None, codec="auto") as w:
        w.write(np.zeros((32, 32, 3), np.uint8))
    assert w.codec == "libx264" and "h264_nvenc did not open" in w.fallback_reason
    assert probe_video(tmp_path / "a.mp4")["frames"] == 1
    with pytest.raises(writers.OutputError) as exc:
        with Mp4Writer(tmp_path / "b.mp4", 25, 32, 32, None, codec="h264_nvenc"):
            pass
    assert "h264_nvenc" in str(exc.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4"]
