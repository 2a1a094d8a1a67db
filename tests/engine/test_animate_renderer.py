"""Streaming renderer with a stand-in stage one: batches, order, the overlapped writer thread
(same output as the sequential path, bounded queue, writer errors, cancel), device paste-back
inside the loop, out-of-memory handling."""
from __future__ import annotations

import errno
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.errors import Cancelled, OutOfMemory
from engine.render.renderer import render_frames
from engine.runner import NullReporter

CPU = torch.device("cpu")


class FakeStageOne:
    def __init__(self, size: int = 8, oom_above: int | None = None) -> None:
        self.calls: list[int] = []
        self.size = size
        self.oom_above = oom_above
        self.written_at_call: list[int] = []   # filled by tests that watch the queue
        self.writer: "ListWriter | None" = None

    def warp_decode(self, f_s: torch.Tensor, x_s: torch.Tensor, x_d: torch.Tensor) -> torch.Tensor:
        if self.oom_above is not None and x_d.shape[0] > self.oom_above:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        self.calls.append(int(x_d.shape[0]))
        if self.writer is not None:
            self.written_at_call.append(len(self.writer.frames))
        idx = x_d[:, 0, 0].floor().long()
        if self.size == 8:  # frame index encoded in the pixel values
            value = x_d[:, 0, 0].reshape(-1, 1, 1, 1)
            return (value / 255.0).expand(-1, 3, 8, 8).contiguous()
        frames = []
        for i in idx.tolist():  # a smooth, distinct picture per frame index
            g = torch.Generator().manual_seed(1000 + i)
            noise = torch.rand(1, 3, self.size, self.size, generator=g) * 1.2 - 0.1
            frames.append(torch.nn.functional.avg_pool2d(noise, 9, 1, 4))
        return torch.cat(frames)


class ListWriter:
    def __init__(self, delay: float = 0.0, fail_at: int | None = None) -> None:
        self.frames: list[np.ndarray] = []
        self.delay = delay
        self.fail_at = fail_at
        self.thread_names: set[str] = set()

    def write(self, frame: np.ndarray) -> None:
        self.thread_names.add(threading.current_thread().name)
        if self.fail_at is not None and len(self.frames) == self.fail_at:
            raise OSError(errno.ENOSPC, "No space left on device", "/fake/out.mp4")
        if self.delay:
            time.sleep(self.delay)
        self.frames.append(frame)


class CancelAfter(NullReporter):
    """Reporter stand-in: progress() raises Cancelled once ``limit`` frames are done."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.events: list[tuple[int, int]] = []
        self.warnings: list[tuple[str, str]] = []

    def progress(self, stage: str, done: int, total: int, unit: str) -> None:
        assert stage == "render" and unit == "frame"
        self.events.append((done, total))
        if done >= self.limit:
            raise Cancelled(stage, done)

    def warning(self, code: str, message: str) -> None:
        self.warnings.append((code, message))


def _x_d(n: int) -> torch.Tensor:
    x = torch.zeros(n, 21, 3)
    x[:, 0, 0] = torch.arange(n, dtype=torch.float32) + 0.5
    return x


def _to_uint8(out: torch.Tensor) -> np.ndarray:
    return (out.permute(0, 2, 3, 1).numpy() * 255).astype(np.uint8)


def _writer_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "joyvasa-writer"]


def _render(s1, writers, n, **kw):
    return render_frames(s1, torch.zeros(1, 2), torch.zeros(1, 21, 3), _x_d(n), writers, device=CPU, **kw)


@pytest.mark.parametrize("overlap", [False, True])
def test_batches_and_order(overlap: bool) -> None:
    s1, w = FakeStageOne(), ListWriter()
    stats = _render(s1, [w], 10, batch=4, post=lambda f: f[:4, :4], to_uint8=_to_uint8, overlap=overlap)
    assert s1.calls == [4, 4, 2] and stats.frames == 10 and stats.batches == 3 and stats.batch == 4
    assert [int(f[0, 0, 0]) for f in w.frames] == list(range(10))
    assert w.frames[0].shape == (4, 4, 3)
    # the overlapped path writes on its own thread, the sequential one in the caller's
    assert w.thread_names == ({"joyvasa-writer"} if overlap else {threading.current_thread().name})
    assert stats.overlapped == overlap and not _writer_threads()


def test_cancel_sequential_stops_within_one_batch() -> None:
    s1, w, rep = FakeStageOne(), ListWriter(), CancelAfter(limit=3)
    with pytest.raises(Cancelled) as exc:
        _render(s1, [w], 20, batch=3, reporter=rep, to_uint8=_to_uint8, overlap=False)
    assert exc.value.done == 3
    assert s1.calls == [3] and len(w.frames) == 3
    assert rep.events == [(0, 20), (3, 20)]


def test_cancel_overlapped_joins_the_writer_and_stops() -> None:
    s1, w, rep = FakeStageOne(), ListWriter(delay=0.02), CancelAfter(limit=6)
    with pytest.raises(Cancelled) as exc:
        _render(s1, [w], 30, batch=3, reporter=rep, to_uint8=_to_uint8, overlap=True)
    assert exc.value.done == 6 and s1.calls == [3, 3]
    assert not _writer_threads()          # joined before render_frames returned
    written = len(w.frames)
    assert written <= 6
    time.sleep(0.1)
    assert len(w.frames) == written       # nothing is written after the cancel returned


def test_cancel_while_waiting_for_a_slow_writer() -> None:
    """The render loop blocks on a full queue; the cancel token must still end the run."""
    from engine.runner import CancelToken

    class Rep(CancelAfter):
        def __init__(self) -> None:
            super().__init__(limit=10**9)
            self.cancel = CancelToken()

    s1, w, rep = FakeStageOne(), ListWriter(delay=0.2), Rep()
    timer = threading.Timer(0.3, rep.cancel.set)
    timer.start()
    t0 = time.monotonic()
    with pytest.raises(Cancelled):
        _render(s1, [w], 200, batch=2, reporter=rep, to_uint8=_to_uint8, overlap=True, depth=1)
    timer.cancel()
    assert time.monotonic() - t0 < 5.0 and len(w.frames) < 20 and not _writer_threads()


def test_writer_error_is_raised_in_the_render_loop() -> None:
    """A full disk in the writer thread surfaces as the same OSError (-> disk_full) and stops W+G."""
    s1, w = FakeStageOne(), ListWriter(fail_at=5)
    with pytest.raises(OSError) as exc:
        _render(s1, [w], 400, batch=2, to_uint8=_to_uint8, overlap=True, depth=2)
    assert exc.value.errno == errno.ENOSPC
    from engine.errors import DiskFull, classify_failure
    assert isinstance(classify_failure(exc.value), DiskFull)
    assert sum(s1.calls) < 40 and len(w.frames) == 5 and not _writer_threads()


def test_queue_is_bounded() -> None:
    """Constant memory: W+G never runs more than depth + 2 batches ahead of the writer."""
    s1, w = FakeStageOne(), ListWriter(delay=0.01)
    s1.writer = w
    _render(s1, [w], 60, batch=2, to_uint8=_to_uint8, overlap=True, depth=2)
    ahead = [2 * k - written for k, written in enumerate(s1.written_at_call)]
    assert len(w.frames) == 60 and max(ahead) <= 2 * (2 + 2)


def test_overlapped_output_is_identical_to_sequential(tmp_path: Path) -> None:
    """Real writers (mp4 + PNG) with CPU paste-back: same bytes on both paths."""
    import av
    import cv2

    from engine.framing.frame import FramingOptions, frame_box
    from engine.render.pasteback import PasteBack
    from engine.render.writers import Mp4Writer, PngSequenceWriter

    rng = np.random.default_rng(2)
    original = cv2.GaussianBlur(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8), (0, 0), 2)
    crop = frame_box(original, (120, 60, 90, 90), FramingOptions())
    outputs = {}
    for mode in ("sequential", "overlap"):
        out, frames = tmp_path / f"{mode}.mp4", tmp_path / f"{mode}_frames"
        with Mp4Writer(out, 25, 320, 240, None, codec="libx264") as mp4, PngSequenceWriter(frames) as png:
            stats = _render(FakeStageOne(size=512), [mp4, png], 7, batch=3, post=PasteBack(original, crop.M_c2o),
                            overlap=mode == "overlap")
        assert stats.frames == 7
        with av.open(str(out)) as c:
            decoded = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
        outputs[mode] = (decoded, [p.read_bytes() for p in sorted(frames.iterdir())])
    seq, ovl = outputs["sequential"], outputs["overlap"]
    assert len(seq[0]) == len(ovl[0]) == 7 and len(seq[1]) == 7
    assert all(np.array_equal(a, b) for a, b in zip(seq[0], ovl[0]))
    assert seq[1] == ovl[1]


def test_cancel_mid_run_leaves_no_output(tmp_path: Path) -> None:
    from engine.render.writers import Mp4Writer, PngSequenceWriter

    rep = CancelAfter(limit=4)
    with pytest.raises(Cancelled):
        with Mp4Writer(tmp_path / "v.mp4", 25, 64, 64, None) as mp4, PngSequenceWriter(tmp_path / "f") as png:
            _render(FakeStageOne(), [mp4, png], 40, batch=2, reporter=rep, post=lambda f: np.tile(f, (8, 8, 1)),
                    overlap=True)
    assert list(tmp_path.iterdir()) == [] and not _writer_threads()


def test_device_paste_back_in_the_loop_matches_cpu_paste_back() -> None:
    """device_post (torch paste-back, here on CPU tensors) vs post (cv2 on the writer side)."""
    import cv2

    from engine.framing.frame import FramingOptions, frame_box
    from engine.render.pasteback import DevicePasteBack, PasteBack

    rng = np.random.default_rng(3)
    original = cv2.GaussianBlur(rng.integers(0, 256, (300, 280, 3), dtype=np.uint8), (0, 0), 2)
    crop = frame_box(original, (100, 90, 100, 100), FramingOptions())
    cpu = PasteBack(original, crop.M_c2o)
    a, b = ListWriter(), ListWriter()
    _render(FakeStageOne(size=512), [a], 5, batch=2, post=cpu, overlap=False)
    _render(FakeStageOne(size=512), [b], 5, batch=2, device_post=DevicePasteBack(cpu, CPU), overlap=True)
    assert len(a.frames) == len(b.frames) == 5
    for x, y in zip(a.frames, b.frames):
        assert x.shape == y.shape == (300, 280, 3) and y.dtype == np.uint8
        assert np.abs(x.astype(int) - y.astype(int)).max() <= 1


def test_oom_at_auto_batch_halves_and_keeps_order() -> None:
    s1, w, rep = FakeStageOne(oom_above=2), ListWriter(), CancelAfter(limit=10**9)
    stats = _render(s1, [w], 11, batch=8, to_uint8=_to_uint8, reporter=rep, adapt_batch=True)
    assert [int(f[0, 0, 0]) for f in w.frames] == list(range(11))
    assert stats.batch == 2 and set(s1.calls) <= {1, 2}
    assert [c for c, _ in rep.warnings] == ["oom_batch", "oom_batch"]


def test_oom_at_given_batch_names_a_smaller_batch() -> None:
    s1, w = FakeStageOne(oom_above=2), ListWriter()
    with pytest.raises(OutOfMemory) as exc:
        _render(s1, [w], 11, batch=8, to_uint8=_to_uint8, adapt_batch=False)
    assert "--batch 4" in str(exc.value) and exc.value.code == "oom"
    assert not _writer_threads()


def _animate(*args: str):
    import json
    import subprocess
    import sys

    from engine_testkit import engine_env

    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "-m", "engine", "animate", *args, "--progress", "json"],
                          capture_output=True, text=True, timeout=600, env=engine_env(), cwd=repo,
                          stdin=subprocess.DEVNULL)
    return proc.returncode, [json.loads(x) for x in proc.stdout.splitlines() if x.strip()], proc.stderr


@pytest.mark.slow
def test_animate_default_path_equals_sequential(tiny_weights: Path, tmp_path: Path) -> None:
    """`engine animate` (overlapped writer) vs `--sequential`: the same PNG frames, the same video."""
    import av
    from engine_testkit import speech_clip

    repo = Path(__file__).resolve().parents[2]
    audio = speech_clip(tmp_path, 0.3)
    results = {}
    for mode in ("default", "sequential"):
        out, frames = tmp_path / f"{mode}.mp4", tmp_path / f"{mode}_frames"
        rc, events, err = _animate("--image", str(repo / "examples" / "portrait.jpg"), "--audio", str(audio),
                                   "--weights", str(tiny_weights), "--out", str(out), "--frames-dir", str(frames),
                                   "--batch", "3", "--codec", "libx264",
                                   *(["--sequential"] if mode == "sequential" else []))
        assert rc == 0, err
        assert ("sequential writer" in err) == (mode == "sequential") and "libx264" in err  # the render log line
        with av.open(str(out)) as c:
            video = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
        results[mode] = (video, [p.read_bytes() for p in sorted(frames.glob("frame_*.png"))])
    assert len(results["default"][1]) == len(results["default"][0]) >= 7
    assert results["default"][1] == results["sequential"][1]
    assert all(np.array_equal(a, b) for a, b in zip(results["default"][0], results["sequential"][0]))


@pytest.mark.slow
def test_unusable_codec_fails_before_any_network(tiny_weights: Path, tmp_path: Path, monkeypatch) -> None:
    import engine.render.writers as writers

    if writers.nvenc_status()[0]:
        pytest.skip("this machine has a working h264_nvenc")
    from engine_testkit import speech_clip

    repo = Path(__file__).resolve().parents[2]
    audio = speech_clip(tmp_path, 0.2)
    rc, events, err = _animate("--image", str(repo / "examples" / "portrait.jpg"), "--audio", str(audio),
                               "--weights", str(tiny_weights), "--out", str(tmp_path / "o" / "v.mp4"),
                               "--codec", "h264_nvenc")
    assert rc != 0
    error = next(e for e in events if e["type"] == "error")
    assert error["code"] == "output_unwritable" and "--codec auto" in error["message"]
    assert not any(e["type"] == "progress" and e["stage"] == "load" for e in events)
    assert not (tmp_path / "o" / "v.mp4").exists()


def test_plan_render_picks_the_path_per_device(monkeypatch) -> None:
    """CPU: cv2 paste-back on the writer thread; CUDA/MPS: paste-back on the device (faked here with
    CPU tensors), batch from the memory plan including the paste-back's working set; --sequential:
    the reference path everywhere."""
    import cv2

    import engine.render.pasteback as pasteback
    from engine.device import GpuMemory
    from engine.framing.frame import FramingOptions, frame_box
    from engine.render.renderer import plan_render

    rng = np.random.default_rng(5)
    original = cv2.GaussianBlur(rng.integers(0, 256, (400, 360, 3), dtype=np.uint8), (0, 0), 2)
    M = frame_box(original, (100, 100, 120, 120), FramingOptions()).M_c2o
    cpu = plan_render(original, M, CPU, "float32", None)
    assert isinstance(cpu.post, pasteback.PasteBack) and cpu.device_post is None
    assert cpu.overlap and cpu.size == (360, 400) and cpu.batch.batch == 1 and cpu.adapt_batch
    assert "paste-back on the CPU, overlapped writer" in cpu.describe()
    assert not plan_render(original, M, CPU, "float32", 2, sequential=True).overlap
    bare = plan_render(None, None, CPU, "float32", 3)
    assert bare.size == (512, 512) and bare.post is None and bare.batch.batch == 3 and not bare.adapt_batch

    real = pasteback.DevicePasteBack
    monkeypatch.setattr(pasteback, "DevicePasteBack", lambda cpu_paste, device: real(cpu_paste, CPU))
    card = GpuMemory(total_mb=8192, free_mb=8000, allocated_mb=1500, reserved_mb=1600)
    gpu = plan_render(original, M, torch.device("cuda"), "bfloat16", None, memory=card)
    assert gpu.device_post is not None and gpu.post is None and gpu.overlap and gpu.adapt_batch
    assert "paste-back on the device" in gpu.describe()
    assert gpu.batch.predicted_peak_mb <= gpu.batch.budget_mb <= 0.7 * 8192
    seq = plan_render(original, M, torch.device("cuda"), "bfloat16", None, sequential=True, memory=card)
    assert seq.device_post is None and isinstance(seq.post, pasteback.PasteBack) and not seq.overlap


def test_codec_fallback_is_a_warning() -> None:
    w, rep = ListWriter(), CancelAfter(limit=10**9)
    w.fallback_reason = "h264_nvenc did not open (faked); encoded with libx264"
    _render(FakeStageOne(), [w], 2, batch=2, reporter=rep, to_uint8=_to_uint8)
    assert rep.warnings == [("codec_fallback", w.fallback_reason)] and len(w.frames) == 2


def test_queue_depth_follows_the_batch_size(monkeypatch) -> None:
    """Big batches of big frames queue fewer batches, so host memory stays bounded (QUEUE_MB)."""
    import engine.render.renderer as renderer

    depths: list[int] = []
    real = renderer.WriterThread

    def spy(writers, post, *, depth):
        depths.append(depth)
        return real(writers, post, depth=depth)

    monkeypatch.setattr(renderer, "WriterThread", spy)
    monkeypatch.setattr(renderer, "QUEUE_MB", 8 * 8 * 3 * 3 / 2**20)  # room for exactly one batch of 3
    _render(FakeStageOne(), [ListWriter()], 6, batch=3, to_uint8=_to_uint8)
    monkeypatch.setattr(renderer, "QUEUE_MB", 512.0)
    _render(FakeStageOne(), [ListWriter()], 6, batch=3, to_uint8=_to_uint8)
    assert depths == [1, 2]


@pytest.mark.slow
def test_animate_auto_codec_falls_back_when_nvenc_will_not_open(tiny_weights: Path, tmp_path: Path, capsys,
                                                                 monkeypatch) -> None:
    """In the pipeline: the probe says NVENC works (faked), the encoder does not open (no driver here):
    the job still writes its video with libx264 and says so in a codec_fallback warning."""
    import json

    import engine.render.writers as writers
    from engine.cli import main
    from engine_testkit import speech_clip

    if writers.nvenc_status()[0]:
        pytest.skip("h264_nvenc really opens on this machine")
    monkeypatch.setattr(writers, "nvenc_status", lambda: (True, "faked"))
    repo = Path(__file__).resolve().parents[2]
    out = tmp_path / "v.mp4"
    rc = main(["animate", "--image", str(repo / "examples" / "portrait.jpg"), "--audio", str(speech_clip(tmp_path, 0.12)),
               "--weights", str(tiny_weights), "--out", str(out), "--progress", "json"])
    events = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.strip().startswith("{")]
    assert rc == 0, events[-1]
    warnings = [e for e in events if e["type"] == "warning" and e["code"] == "codec_fallback"]
    assert len(warnings) == 1 and "libx264" in warnings[0]["message"]
    assert writers.probe_video(out)["codec"] == "h264"
