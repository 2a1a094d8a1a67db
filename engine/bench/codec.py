"""Encoder benchmark: libx264 (crf 18, preset medium) vs h264_nvenc (engine/render/writers.py
NVENC_OPTIONS) through the engine's own Mp4Writer, on the same frames.

Why: ``--codec auto`` picks NVENC where it works, and that is only acceptable if the video looks
the same. Prints per encoder: encode frames per second, bitrate, PSNR of the decoded video
against the source frames, and (when both work) the PSNR of NVENC's video against libx264's.
Frames: a PNG folder (``--frames DIR``, e.g. ``animate --frames-dir``) or the example portrait
slowly panned and zoomed (``--count`` frames at ``--size``).
"""
from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--frames", type=Path, default=None, help="folder of frame_*.png to encode (default: synthetic)")
    p.add_argument("--count", type=int, default=50, help="synthetic frames (default 50 = 2 s at 25 fps)")
    p.add_argument("--size", type=int, default=512, help="synthetic frame side in pixels (default 512)")
    p.add_argument("--codecs", default="libx264,h264_nvenc", help="comma list (default libx264,h264_nvenc)")


def _synthetic(count: int, size: int):
    import cv2
    import numpy as np

    from engine.framing.frame import load_picture as load_image_rgb

    img = load_image_rgb(REPO / "examples" / "portrait.jpg")
    img = cv2.resize(img, (size, size), interpolation=cv2.INTER_CUBIC)
    out = []
    for k in range(count):
        a = 2.0 * math.sin(k / 7.0)
        M = cv2.getRotationMatrix2D((size / 2, size / 2), a, 1.0 + 0.02 * math.sin(k / 11.0))
        M[:, 2] += (3.0 * math.sin(k / 5.0), 2.0 * math.cos(k / 9.0))
        out.append(cv2.warpAffine(img, M, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT))
    return np.stack(out)


def _load_frames(folder: Path):
    import numpy as np

    from engine.framing.frame import load_picture as load_image_rgb

    paths = sorted(folder.glob("frame_*.png"))
    if not paths:
        raise SystemExit(f"no frame_*.png in {folder}")
    return np.stack([load_image_rgb(p) for p in paths])


def psnr(a, b) -> float:
    import numpy as np

    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


def _decode(path: Path):
    import av
    import numpy as np

    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def run(args: argparse.Namespace) -> int:
    from engine.errors import OutputError
    from engine.render.writers import Mp4Writer, even_size, nvenc_status

    frames = _load_frames(args.frames) if args.frames else _synthetic(args.count, args.size)
    h, w = frames.shape[1:3]
    w2, h2 = even_size(w, h)
    frames = frames[:, :h2, :w2]
    ok, reason = nvenc_status()
    print(f"{len(frames)} frames {w2}x{h2}; h264_nvenc here: {'yes' if ok else 'no'} ({reason})", flush=True)
    decoded = {}
    with tempfile.TemporaryDirectory(prefix="jv-bench-codec-") as tmp:
        for codec in [c.strip() for c in args.codecs.split(",") if c.strip()]:
            path = Path(tmp) / f"{codec}.mp4"
            t0 = time.perf_counter()
            try:
                with Mp4Writer(path, 25, w2, h2, None, codec=codec) as writer:
                    for f in frames:
                        writer.write(f)
            except OutputError as exc:
                print(f"  {codec:10s}: not measured: {exc}", flush=True)
                continue
            dt = time.perf_counter() - t0
            video = _decode(path)
            kbps = path.stat().st_size * 8 / 1000 / (len(frames) / 25)
            decoded[codec] = video
            print(f"  {codec:10s}: {len(frames) / dt:7.1f} frames/s encoded, {kbps:7.0f} kbit/s, "
                  f"PSNR vs source {psnr(video, frames):.2f} dB", flush=True)
    if "libx264" in decoded and "h264_nvenc" in decoded:
        print(f"  h264_nvenc vs libx264: PSNR {psnr(decoded['h264_nvenc'], decoded['libx264']):.2f} dB", flush=True)
    else:
        print("  h264_nvenc vs libx264: not measured (needs both encoders)", flush=True)
    return 0
