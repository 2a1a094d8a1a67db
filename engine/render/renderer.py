"""Streaming renderer: driving keypoints → W+G in batches → writers, never all frames at once.

Why: upstream appends every 512² frame (and its paste-back) to a list and writes the video
at the end, so memory grows with clip length (≈0.8 MB per 512² frame, more at full
resolution). Here a batch of ``batch`` frames is rendered, finished and handed to the
writers, then dropped: peak memory depends on the batch size, not on the clip length.

Overlap (default): the finished batch goes to a bounded queue consumed by one writer thread
(engine/render/overlap.py), so CPU paste-back and H.264 encoding of batch k run while W+G
renders batch k+1. ``overlap=False`` is the sequential reference path (same frames, same
order, same bytes). On CUDA/MPS the caller passes ``device_post`` (engine/render/pasteback.py
:class:`DevicePasteBack`): paste-back runs on the device and only finished uint8 frames cross
to the CPU. Between batches the reporter's progress call is the cancellation checkpoint; while
the loop waits for a slow writer it keeps checking the cancel token.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
import torch

from engine.render.overlap import InlineSink, WriterThread
from engine.render.pasteback import frames_to_uint8_tensor
from engine.render.writers import FrameWriter
from engine.runner import NullReporter, Reporter

if TYPE_CHECKING:
    from engine.device import BatchPlan, GpuMemory
    from engine.models.stage_one import StageOne
    from engine.render.pasteback import DevicePasteBack, PasteBack

#: host memory the writer queue may hold in finished frames (MiB), whatever the clip length
QUEUE_MB = 512.0


@dataclass
class RenderStats:
    frames: int = 0
    batches: int = 0
    batch: int = 0            # the batch size in use at the end (auto batches halve after an OOM)
    overlapped: bool = False
    render_s: float = 0.0     # W+G + device-side finishing + copy of the uint8 frames to the host
    write_s: float = 0.0      # writer side: CPU paste-back + encoding
    wait_s: float = 0.0       # how long the render loop waited for the writer

    def summary(self) -> str:
        mode = "overlapped writer" if self.overlapped else "sequential writer"
        return (f"{mode}: W+G + finishing {self.render_s:.2f} s, writer busy {self.write_s:.2f} s, "
                f"render loop waited {self.wait_s:.2f} s for the writer")


def _is_oom(exc: BaseException) -> bool:
    from engine.errors import OutOfMemory, classify_failure

    return isinstance(classify_failure(exc), OutOfMemory)


def render_frames(stage_one: StageOne, f_s: torch.Tensor, x_s: torch.Tensor, x_d: torch.Tensor,
                  writers: Sequence[FrameWriter], *, batch: int, device: torch.device,
                  reporter: "Reporter | None" = None,
                  post: Callable[[np.ndarray], np.ndarray] | None = None,
                  device_post: Callable[[torch.Tensor], torch.Tensor] | None = None,
                  to_uint8: Callable[[torch.Tensor], np.ndarray] | None = None,
                  overlap: bool = True, depth: int | None = None, adapt_batch: bool = False) -> RenderStats:
    """Render frames ``x_d`` (N,21,3) and stream them to ``writers`` (already entered).

    ``post`` maps each (512,512,3) uint8 frame to the written frame on the writer side (CPU
    paste-back); ``device_post`` maps a (B,3,512,512) float batch to (B,H,W,3) uint8 on the device
    (device paste-back). ``adapt_batch`` (the batch was chosen automatically): an out-of-memory
    W+G call halves the batch and retries; otherwise it is an ``oom`` error naming ``--batch``.
    ``depth``: batches the writer queue holds (default: 2, fewer when 2 finished batches would pass
    QUEUE_MB of host memory, e.g. batch 32 of 1280² portraits).
    Precision is stage one's own (it was loaded in the job's precision), never re-decided here.
    """
    import time

    from engine.device import oom_advice, release_cached_memory

    if device_post is not None:
        def finish(out: torch.Tensor) -> np.ndarray:
            return device_post(out).cpu().numpy()
    elif to_uint8 is not None:
        def finish(out: torch.Tensor) -> np.ndarray:
            return to_uint8(out.float())
    else:
        def finish(out: torch.Tensor) -> np.ndarray:
            return frames_to_uint8_tensor(out).cpu().numpy()

    n = int(x_d.shape[0])
    batch = max(1, int(batch))
    stats = RenderStats(overlapped=bool(overlap))
    rep = reporter or NullReporter()

    def checkpoint() -> None:
        rep.cancel.check("render", stats.frames)

    for w in writers:   # e.g. --codec auto: NVENC passed the probe but did not open for this video
        reason = getattr(w, "fallback_reason", None)
        if reason:
            rep.warning("codec_fallback", reason)
    rep.progress("render", 0, n, "frame")
    x_s = x_s.to(device)
    f_s = f_s.to(device)
    sink: InlineSink | None = None   # made at the first batch, when its size in bytes is known

    def make_sink(batch_bytes: int) -> InlineSink:
        if not overlap:
            return InlineSink(writers, post)
        queued = depth if depth is not None else max(1, min(2, int(QUEUE_MB * 2**20 // max(1, batch_bytes))))
        return WriterThread(writers, post, depth=queued)

    try:
        start = 0
        while start < n:
            kp = x_d[start:start + batch].to(device)                   # (b,21,3)
            t0 = time.perf_counter()
            halve = False
            try:
                with torch.inference_mode():
                    frames = finish(stage_one.warp_decode(f_s, x_s, kp))  # (b,H,W,3) uint8 on the host
            except Exception as exc:  # noqa: BLE001 - only out-of-memory is handled here
                if not _is_oom(exc):
                    raise
                if not (adapt_batch and batch > 1):
                    from engine.errors import OutOfMemory
                    raise OutOfMemory(oom_advice(device, batch)) from exc
                halve = True
            if halve:                                                   # outside `except`: frees the traceback
                release_cached_memory(device)
                rep.warning("oom_batch", f"W+G ran out of memory at batch {batch}; retrying at "
                                         f"batch {batch // 2} (pass --batch to choose it yourself)")
                batch //= 2
                continue
            stats.render_s += time.perf_counter() - t0
            if sink is None:
                sink = make_sink(frames.nbytes)
            sink.put(frames, checkpoint)
            del frames
            start += int(kp.shape[0])
            stats.frames = start
            stats.batches += 1
            rep.progress("render", stats.frames, n, "frame")  # raises Cancelled if asked
        if sink is not None:
            sink.close(checkpoint)
    except BaseException:
        if sink is not None:
            sink.abort()   # joins the writer thread before the caller's writers clean up
        raise
    finally:
        stats.batch = batch
        if sink is not None:
            stats.write_s, stats.wait_s = sink.write_s, sink.wait_s
    return stats


@dataclass
class RenderSetup:
    """How step 9 of ``animate`` renders: who pastes back, where, at which batch, overlapped or not."""

    size: tuple[int, int]                                   # written frame (width, height)
    batch: BatchPlan
    overlap: bool
    post: Callable[[np.ndarray], np.ndarray] | None = None  # CPU paste-back on the writer side
    device_post: Callable[[torch.Tensor], torch.Tensor] | None = None  # paste-back on the device
    adapt_batch: bool = False

    def describe(self) -> str:
        paste = ("paste-back on the device" if self.device_post is not None else
                 "paste-back on the CPU" if self.post is not None else "no paste-back")
        return f"{self.batch.describe()}, {paste}, {'overlapped' if self.overlap else 'sequential'} writer"


def plan_render(image: np.ndarray | None, M_c2o: np.ndarray | None, device: torch.device, dtype: str,
                requested_batch: int | None, *, sequential: bool = False,
                memory: GpuMemory | None = None) -> RenderSetup:
    """Choose the render path. Default: overlapped writer everywhere; on CUDA/MPS paste-back runs
    on the device (:class:`DevicePasteBack`). ``sequential``: today's reference path (CPU
    paste-back, inline writes) — the equality tests and ``bench animate --sequential`` use it."""
    from engine.device import batch_plan
    from engine.render.pasteback import DevicePasteBack, PasteBack

    post: PasteBack | None = None
    device_post: DevicePasteBack | None = None
    size = (512, 512)
    paste_mb = 0.0
    if image is not None and M_c2o is not None:
        cpu = PasteBack(image, M_c2o)
        size = cpu.size
        if device.type in ("cuda", "mps") and not sequential:
            device_post = DevicePasteBack(cpu, device)
            paste_mb = device_post.working_mb
        else:
            post = cpu
    plan = batch_plan(device, requested_batch, dtype=dtype, paste_mb=paste_mb, memory=memory)
    return RenderSetup(size, plan, overlap=not sequential, post=post, device_post=device_post,
                       adapt_batch=not (requested_batch and requested_batch > 0))
