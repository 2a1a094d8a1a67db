"""Where finished frames go: written inline (sequential) or by one writer thread (overlapped).

Why a thread: between two W+G batches the CPU used to paste back and H.264-encode the previous
batch while the GPU sat idle. With :class:`WriterThread` the render loop hands batch k to a
bounded queue and starts W+G of batch k+1 at once; paste-back (cv2) and encoding (PyAV/FFmpeg)
release the GIL, so they run beside the GPU (or, on CPU runs, beside torch's own threads).

Guarantees (tests/engine/test_animate_renderer.py):
* order: one consumer, FIFO, so frames reach every writer in render order — the output is the
  same bytes as the inline path;
* constant memory: at most ``depth`` batches wait in the queue, whatever the clip length;
* errors: a writer failure is kept and re-raised (the original exception, so a full disk is
  still ``disk_full``) in the render loop at its next hand-off or at :meth:`close`;
* cancel / render errors: :meth:`abort` drops what is queued and joins the thread *before*
  the writers' ``__exit__`` runs, so no thread touches a writer while it removes its temp file.
"""
from __future__ import annotations

import queue
import threading
import time
from typing import Callable, Sequence

import numpy as np

from engine.render.writers import FrameWriter

_STOP = object()


class InlineSink:
    """The sequential path: post-process and write each batch in the caller's thread."""

    overlapped = False

    def __init__(self, writers: Sequence[FrameWriter],
                 post: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
        self.writers = list(writers)
        self.post = post
        self._abort = False
        self.write_s = 0.0   # seconds spent post-processing + writing
        self.wait_s = 0.0    # seconds the render loop waited for the writer (inline: all of write_s)

    def _write_batch(self, frames: np.ndarray) -> None:
        t0 = time.perf_counter()
        for frame in frames:
            if self._abort:      # cancel/error in the render loop: stop within one frame
                break
            if self.post is not None:
                frame = self.post(frame)
            for w in self.writers:
                w.write(frame)
        self.write_s += time.perf_counter() - t0

    def put(self, frames: np.ndarray, checkpoint: Callable[[], None] | None = None) -> None:
        self._write_batch(frames)
        self.wait_s = self.write_s

    def close(self, checkpoint: Callable[[], None] | None = None) -> None:
        return None

    def abort(self) -> None:
        return None


class WriterThread(InlineSink):
    """The overlapped path: one daemon thread consumes batches from a bounded queue."""

    overlapped = True

    def __init__(self, writers: Sequence[FrameWriter],
                 post: Callable[[np.ndarray], np.ndarray] | None = None, *, depth: int = 2) -> None:
        super().__init__(writers, post)
        self._queue: queue.Queue[object] = queue.Queue(maxsize=max(1, int(depth)))
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="joyvasa-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP or self._abort:
                return
            try:
                self._write_batch(item)  # type: ignore[arg-type]
            except BaseException as exc:  # noqa: BLE001 - handed to the render loop, never lost
                self._error = exc
                return

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

    def _hand_over(self, item: object, checkpoint: Callable[[], None] | None) -> None:
        """Queue ``item``; while the queue is full keep checking for a writer failure and cancel."""
        t0 = time.perf_counter()
        try:
            while True:
                self._raise_if_failed()
                if not self._thread.is_alive():
                    return  # the thread ended (only after an error, raised above)
                try:
                    self._queue.put(item, timeout=0.05)
                    return
                except queue.Full:
                    if checkpoint is not None:
                        checkpoint()
        finally:
            self.wait_s += time.perf_counter() - t0

    def put(self, frames: np.ndarray, checkpoint: Callable[[], None] | None = None) -> None:
        self._hand_over(frames, checkpoint)

    def close(self, checkpoint: Callable[[], None] | None = None) -> None:
        """Write everything queued, end the thread, re-raise a writer failure."""
        self._hand_over(_STOP, checkpoint)
        t0 = time.perf_counter()
        self._thread.join()
        self.wait_s += time.perf_counter() - t0
        self._raise_if_failed()

    def abort(self) -> None:
        """Drop what is queued and join: after this no thread touches the writers."""
        self._abort = True
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        try:
            self._queue.put_nowait(_STOP)
        except queue.Full:  # pragma: no cover - only this thread puts, the queue was just drained
            pass
        self._thread.join()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()
