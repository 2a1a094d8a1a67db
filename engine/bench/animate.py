"""End-to-end benchmark: portrait + audio → mp4, seconds per second of video and peak RSS.

Each measurement runs ``python -m engine animate`` in a fresh subprocess (so peak RSS is that
run's own), on the bundled example portrait and speech (tiled to the clip length).

* speed: for every (dtype, batch) pair, a ``--speed-seconds`` clip (default 2 s): wall seconds
  and render seconds per second of video (512² crop output, paste-back off);
* memory: for every clip length in ``--seconds`` (default 10,60), peak RSS. The renderer
  streams frames to the encoder, so peak RSS should not grow with the clip length, whereas
  upstream keeps every frame (and every pasted-back frame) in a list until the end — we print
  that estimate beside ours. At official size on 2 CPU cores (~7 s/frame) a 60 s clip (1500
  frames) takes hours, so ``--max-frames`` caps the rendered frames of the memory runs (motion
  is still generated for the whole clip) — say so when quoting the numbers — or use
  ``--config tiny``.
Weights: ``--weights DIR``, else synthetic weights of ``--config`` in a temp dir (random: the
timings are real, the pictures are noise).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _csv(kind):
    return lambda text: [kind(v.strip()) for v in text.split(",") if v.strip()]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", type=Path, default=None, help="weights folder (default: synthetic, see --config)")
    p.add_argument("--config", choices=("official", "tiny"), default="official",
                   help="size of the synthetic weights when --weights is not given (default official)")
    p.add_argument("--dtype", type=_csv(str), default=["float32", "bfloat16"], help="comma list (default float32,bfloat16)")
    p.add_argument("--batch", type=_csv(int), default=[1, 4],
                   help="comma list of batch sizes (default 1,4; 0 = the engine's choice: from free GPU memory)")
    p.add_argument("--speed-seconds", type=float, default=2.0, help="clip length of the speed runs (default 2)")
    p.add_argument("--seconds", type=_csv(float), default=[10.0, 60.0], help="clip lengths of the memory runs")
    p.add_argument("--max-frames", type=int, default=None,
                   help="cap rendered frames per run (official size on CPU: use e.g. 8)")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=0, help="OMP/torch threads of the child runs (default: all)")
    p.add_argument("--whole", action="store_true",
                   help="cold one-shot animate process vs warm takes through `engine serve` (first --dtype, "
                        "--speed-seconds clip, --crop none --no-pasteback), with the engine's time breakdown")
    p.add_argument("--writer", choices=("overlap", "sequential", "both"), default="overlap",
                   help="render path: overlapped writer thread (+ device paste-back on a GPU; the default), the "
                        "sequential reference path (animate --sequential), or both one after the other")
    p.add_argument("--pasteback", action="store_true",
                   help="--whole: crop the face and paste it back into the portrait (animate's default output) "
                        "instead of --crop none --no-pasteback")
    from engine.jobs import CODECS

    p.add_argument("--codec", choices=CODECS, default="auto", help="animate --codec")
    p.add_argument("--skip-speed", action="store_true")
    p.add_argument("--skip-memory", action="store_true")


def _audio(path: Path, seconds: float) -> Path:
    import numpy as np
    import soundfile as sf

    wave, sr = sf.read(str(REPO / "examples" / "speech.wav"), dtype="float32")
    n = int(seconds * sr)
    reps = int(np.ceil(n / len(wave)))
    sf.write(str(path), np.tile(wave, reps)[:n], sr)
    return path


def _batch_args(batch: int) -> list[str]:
    """``--batch N``; 0 or less leaves the batch to the engine (auto_batch_size)."""
    return ["--batch", str(batch)] if batch > 0 else []


def _run_animate(weights: Path, audio: Path, out: Path, *, dtype: str, batch: int, device: str,
                 max_frames: int | None, threads: int, sequential: bool = False, codec: str = "auto") -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    cmd = [sys.executable, "-m", "engine", "animate", "--image", str(REPO / "examples" / "portrait.jpg"),
           "--audio", str(audio), "--weights", str(weights), "--out", str(out), "--no-pasteback",
           "--dtype", dtype, "--device", device, "--progress", "json", "--codec", codec, *_batch_args(batch)]
    if sequential:
        cmd.append("--sequential")
    if max_frames:
        cmd += ["--max-frames", str(max_frames)]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL)
    wall = time.monotonic() - t0
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    done = next((e for e in events if e["type"] == "done"), None)
    if proc.returncode != 0 or done is None:
        err = next((e for e in events if e["type"] == "error"), {})
        raise RuntimeError(f"animate failed (rc {proc.returncode}): {err.get('message') or proc.stderr[-2000:]}")
    frames = max((e["total"] for e in events if e["type"] == "progress" and e["stage"] == "render"), default=0)
    return {"wall_s": wall, "frames": frames, "timings": done["timings"], "host_mb": done["peak_mem"]["host_mb"]}


def _gflops_line(dtype: str, per_frame_s: float, device: str, peaks: dict[str, float]) -> str:
    """W+G GFLOP/s (1,233.6 GFLOP per frame, spec §7) beside this device's fastest matmul in ``dtype``.

    Render time includes paste-back/encoding hand-off, so this is a lower bound on W+G's own rate."""
    from engine.device import select_device
    from engine.profiling import GFLOP, matmul_peak_gflops
    from engine.contract.protocol import canonical_dtype

    dt = canonical_dtype(dtype)
    if dt not in peaks:
        peaks[dt] = matmul_peak_gflops(select_device(device), dt)
    achieved = GFLOP["WG"] / per_frame_s if per_frame_s > 0 else float("nan")
    return f"{achieved:.0f} GFLOP/s W+G, {100 * achieved / peaks[dt]:.0f}% of the fastest {dt} matmul ({peaks[dt]:.0f})"


def _writer_modes(choice: str) -> list[str]:
    return ["sequential", "overlap"] if choice == "both" else [choice]


def run_whole(args: argparse.Namespace, weights: Path, tmp: Path) -> int:
    """Cold process + warm takes, once per ``--writer`` mode (``both``: sequential first, then
    overlapped, in the same invocation so the two are measured under the same load)."""
    from engine.bench.takes import run_takes

    audio = _audio(tmp / "clip.wav", args.speed_seconds)
    dtype, batch = args.dtype[0], args.batch[0]
    framing = {} if args.pasteback else {"crop": "none", "pasteback": False}
    common = {"image": str(REPO / "examples" / "portrait.jpg"), "weights": str(weights), **framing,
              "device": args.device, "dtype": dtype, "codec": args.codec}
    if batch > 0:
        common["batch"] = batch
    if args.max_frames:
        common["max_frames"] = args.max_frames
    what = "portrait size (crop + paste-back)" if args.pasteback else "512x512 (crop none, no paste-back)"
    for mode in _writer_modes(args.writer):
        seq = {"sequential": True} if mode == "sequential" else {}
        cli = ["--image", common["image"], "--audio", str(audio), "--out", str(tmp / "cold.mp4"),
               "--weights", str(weights), *([] if args.pasteback else ["--crop", "none", "--no-pasteback"]),
               "--device", args.device, "--dtype", dtype, "--codec", args.codec, *_batch_args(batch),
               *(["--sequential"] if seq else [])]
        if args.max_frames:
            cli += ["--max-frames", str(args.max_frames)]
        takes = [("warm take 1 (loads)", {**common, **seq, "audio": str(audio), "out": str(tmp / "w1.mp4"), "seed": 1}),
                 ("warm re-take new seed", {**common, **seq, "audio": str(audio), "out": str(tmp / "w2.mp4"), "seed": 2})]
        print(f"[{mode} writer] clip {args.speed_seconds:g} s, {dtype}, batch {batch if batch > 0 else 'auto'}, "
              f"{what}, codec {args.codec}", flush=True)
        run_takes("animate", cli, takes, args.threads)
    return 0


def run(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="jv-bench-animate-") as tmp_name:
        tmp = Path(tmp_name)
        weights = args.weights
        if weights is None:
            sys.path.insert(0, str(REPO / "tools"))
            import make_synthetic_weights

            weights = tmp / "weights"
            print(f"writing synthetic {args.config} weights (random: timings real, pictures noise)", flush=True)
            make_synthetic_weights.main(["--config", args.config, "--out", str(weights)])
        if args.whole:
            return run_whole(args, weights, tmp)
        fps = 25.0
        print(f"load average: {os.getloadavg()[0]:.2f} (shared machine: contention inflates times)", flush=True)
        if not args.skip_speed:
            audio = _audio(tmp / "speed.wav", args.speed_seconds)
            print(f"speed: {args.speed_seconds:g} s clip, 512x512 output, device {args.device}", flush=True)
            peaks: dict[str, float] = {}
            runs = [(d, b, m) for d in args.dtype for b in args.batch for m in _writer_modes(args.writer)]
            for dtype, batch, mode in runs:
                r = _run_animate(weights, audio, tmp / "s.mp4", dtype=dtype, batch=batch, device=args.device,
                                 max_frames=args.max_frames, threads=args.threads,
                                 sequential=mode == "sequential", codec=args.codec)
                video_s = r["frames"] / fps
                render = r["timings"].get("render", float("nan"))
                per_frame = render / max(r["frames"], 1)
                print(f"  {dtype:9s} batch {batch:2d} {mode:10s}: {r['frames']} frames, wall {r['wall_s']:.1f} s = "
                      f"{r['wall_s'] / video_s:.2f} s per s of video (render {render / video_s:.2f} s/s, "
                      f"{per_frame:.3f} s/frame = {_gflops_line(dtype, per_frame, args.device, peaks)}), "
                      f"peak RSS {r['host_mb']:.0f} MiB", flush=True)
        if not args.skip_memory:
            dtype, batch = args.dtype[0], args.batch[0]
            cap = f", rendering at most {args.max_frames} frames" if args.max_frames else ""
            print(f"memory: {dtype}, batch {batch}{cap}; each clip in a fresh process", flush=True)
            rss = []
            for seconds in args.seconds:
                audio = _audio(tmp / f"m{seconds:g}.wav", seconds)
                r = _run_animate(weights, audio, tmp / "m.mp4", dtype=dtype, batch=batch, device=args.device,
                                 max_frames=args.max_frames, threads=args.threads)
                n_all = int(round(seconds * fps)) + 3
                upstream_extra = n_all * 512 * 512 * 3 / 2**20
                rss.append(r["host_mb"])
                print(f"  {seconds:5.0f} s clip: peak RSS {r['host_mb']:.0f} MiB ({r['frames']} frames rendered, "
                      f"wall {r['wall_s']:.1f} s); upstream would also hold {n_all} frames = "
                      f"+{upstream_extra:.0f} MiB (512² only, more with paste-back)", flush=True)
            if len(rss) > 1:
                print(f"  RSS spread across clip lengths: {max(rss) - min(rss):.0f} MiB", flush=True)
    return 0
