"""``engine animate --preview``: a sparse look at a long render before paying for it.

Why: on a CPU every 512² frame costs seconds, so framing, crop and motion should be judged on a
few frames first. A preview renders every ``stride``-th frame of the same plan (same motion, crop
and options as the full render), writes them as a short clip at ``fps / stride`` over the full
soundtrack (so it stays in sync and as long as the audio) and as one contact-sheet PNG.
The stride is at least 8 and grows with the clip so a preview never renders more than
``max_frames`` frames: its cost does not grow with the audio's length.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from engine.fileio import atomic_path
from engine.pathguard import contact_sheet_path  # noqa: F401  (its name is an output the path guard checks)
from engine.render.writers import FrameWriter

if TYPE_CHECKING:
    from types import TracebackType

MIN_STRIDE = 8
MAX_FRAMES = 24
THUMB_WIDTH = 256


def preview_stride(n_frames: int, max_frames: int = MAX_FRAMES, min_stride: int = MIN_STRIDE) -> int:
    """Every how many frames one is rendered: >= ``min_stride`` and at most ``max_frames`` frames."""
    return max(min_stride, math.ceil(max(n_frames, 1) / max(max_frames, 1)))


class ContactSheetWriter(FrameWriter):
    """Collects thumbnails of the written frames, each labelled with its time in the audio, and
    writes one PNG grid atomically when the render completes (nothing on error/cancel)."""

    kind = "contact_sheet"

    def __init__(self, path: Path, seconds_per_frame: float, thumb_width: int = THUMB_WIDTH) -> None:
        self.path = Path(path)
        self.seconds_per_frame = float(seconds_per_frame)
        self.thumb_width = int(thumb_width)
        self.thumbs: list[np.ndarray] = []

    def __enter__(self) -> "ContactSheetWriter":
        self.thumbs = []
        return self

    def write(self, frame: np.ndarray) -> None:
        import cv2

        h, w = frame.shape[:2]
        th = max(1, round(h * self.thumb_width / w))
        thumb = cv2.resize(np.ascontiguousarray(frame), (self.thumb_width, th), interpolation=cv2.INTER_AREA)
        label = f"{len(self.thumbs) * self.seconds_per_frame:.2f}s"
        for color, width in (((0, 0, 0), 3), ((255, 255, 255), 1)):
            cv2.putText(thumb, label, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, color, width, cv2.LINE_AA)
        self.thumbs.append(thumb)

    def sheet(self) -> np.ndarray:
        """The grid (RGB uint8): ceil(sqrt(n)) columns, black padding."""
        n = len(self.thumbs)
        cols = max(1, math.ceil(math.sqrt(n)))
        rows = max(1, math.ceil(n / cols))
        th, tw = self.thumbs[0].shape[:2] if n else (1, self.thumb_width)
        grid = np.zeros((rows * th, cols * tw, 3), np.uint8)
        for i, t in enumerate(self.thumbs):
            r, c = divmod(i, cols)
            grid[r * th:(r + 1) * th, c * tw:(c + 1) * tw] = t[:th, :tw]
        return grid

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is not None or not self.thumbs:
            return
        import cv2

        from engine.errors import OutputError

        with atomic_path(self.path, suffix=".png") as tmp:
            if not cv2.imwrite(str(tmp), np.ascontiguousarray(self.sheet()[..., ::-1])):
                raise OutputError(f"cannot write {self.path}")
