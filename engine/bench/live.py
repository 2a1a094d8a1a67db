"""``python -m engine bench live``: a WAV streamed through the ``pcm`` source, per (H, F) and pace.

What it prints per run (docs/live.md explains each number; docs/benchmarks.md holds the table):
frame latency (audio arrival -> ``live_frame`` event) median / p95 / max; the steady-state playout
delay D (the session's ``live_stats``); seconds per window (mean, and p95); whether the stream
keeps up (lag at the end no larger than at the start, the real-time pace only); seam continuity
(p99 frame-to-frame change at hop seams / inside hops, engine/live/metrics.py) and the distance
from the offline take on the same seed, sampler and dtype; the process's memory (RSS) over time.

Audio arrives as a microphone's would (``--pace realtime``: 20 ms blocks at their wall-clock
time) or as fast as the session takes it (``fast``: the TTS case, 1 s blocks). The session is the
same code the worker runs (engine/live/session.py), in this process; only the socket is missing.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:   # annotations only: `engine bench --help` must not import torch
    import numpy as np

    from engine.contract.npz_reader import MotionData
    from engine.live.sources import PcmSource
    from engine.live.stream import MotionStream
    from engine.motion.generate import MotionModel
    from engine.weights import WeightsLayout

DEFAULT_SETTINGS = "25:5,10:5,50:5"
REPO = Path(__file__).resolve().parents[2]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", default=None, help="weights folder (default: official-size synthetic weights)")
    p.add_argument("--weights-cache", default=str(Path(tempfile.gettempdir()) / "joyvasa_bench_official"),
                   help="where synthetic official-size weights are written once")
    p.add_argument("--audio", default=str(REPO / "examples" / "speech.wav"), help="speech to stream")
    p.add_argument("--seconds", type=float, default=None,
                   help="loop the audio to this length (e.g. 300 for the 5-minute sustained run)")
    p.add_argument("--settings", default=DEFAULT_SETTINGS, help=f"comma list H:F (default {DEFAULT_SETTINGS})")
    p.add_argument("--pace", default="realtime,fast", help="comma list of realtime, fast (default both)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sampler", default=None, help="motion sampler (default: the engine's)")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="auto")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--no-offline", action="store_true", help="skip the offline take and the distance to it")
    p.add_argument("--json", default=None, help="also write every run's numbers to this JSON file")


def _load() -> str:
    try:
        return " ".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        return "?"


def _rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        from engine.profiling import peak_rss_mb

        return peak_rss_mb()


class _Memory(threading.Thread):
    """RSS every second while a run streams: (seconds since start, MiB)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.samples: list[tuple[float, float]] = []
        self.done = threading.Event()

    def run(self) -> None:
        t0 = time.monotonic()
        while not self.done.wait(1.0 if self.samples else 0.0):
            self.samples.append((time.monotonic() - t0, _rss_mb()))


def _push(pcm: PcmSource, wave: np.ndarray, pace: str) -> None:
    """The client: 20 ms blocks at their real time, or 1 s blocks as fast as they are taken."""
    from engine.errors import BadRequest
    from engine.live.sources import BLOCK, RATE

    step = BLOCK if pace == "realtime" else RATE
    t0 = time.monotonic()
    for start in range(0, len(wave), step):
        block = wave[start:start + step]
        if pace == "realtime":
            wait = t0 + (start + len(block)) / RATE - time.monotonic()
            if wait > 0:
                time.sleep(wait)
        while True:
            try:
                pcm.queue.put(block)
                break
            except BadRequest:          # the session is 30 s behind (fast pace): wait for it
                time.sleep(0.05)
    pcm.stop()


def _percentile(values: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(np.asarray(values, float), q)) if values else float("nan")


def _keeps_up(latencies: list[float], windows: list[float], hop: int) -> tuple[float, float, bool]:
    """(worst frame latency of the first quarter, of the last quarter, keeps up). Latency saw-tooths
    over a hop, so compare whole quarters' maxima: keeping up = the end no worse than the start plus
    one hop (a stream that falls behind gains latency with every window) AND the mean window fits
    in the audio of one hop (t_win <= H x 40 ms; over a short run the trend alone can hide a slow
    drift)."""
    if len(latencies) < 8 or not windows:
        return float("nan"), float("nan"), False
    q = len(latencies) // 4
    start, end = max(latencies[:q]), max(latencies[-q:])
    return start, end, end <= start + hop / 25 + 0.1 and sum(windows) / len(windows) <= hop / 25


def run_one(model: MotionModel, layout: WeightsLayout, wave: np.ndarray, hop: int, lookahead: int, pace: str,
            args: argparse.Namespace, offline: tuple[MotionData, ...] | None) -> dict[str, Any]:
    from engine.device import select_device, select_motion_precision
    from engine.jobs import LiveJob
    from engine.live.session import LiveSession
    from engine.live.sources import PcmSource
    from engine.pipeline.live import open_stream, take_motion

    job = LiveJob.from_dict({"out": "bench.npz", "source": "pcm", "hop": hop, "lookahead": lookahead,
                             "seed": args.seed, "device": args.device, "dtype": args.dtype,
                             **({"sampler": args.sampler} if args.sampler else {}),
                             **({"steps": args.steps} if args.steps else {})})
    device = select_device(job.runtime.device)
    precision = select_motion_precision(device, job.runtime.dtype, job.motion.sampler)
    from engine.pipeline.live import warm_up

    window_s = warm_up(model, layout, job, precision, None)
    stream = open_stream(model, layout, job, precision, None)
    pcm = PcmSource()
    counts = {"live_frame": 0, "live_stats": 0}

    def emit(kind: str, **fields: Any) -> None:
        counts[kind] = counts.get(kind, 0) + 1

    session = LiveSession(stream, pcm, emit, hop=hop, lookahead=lookahead,
                          window_s=window_s)
    mem = _Memory()
    mem.start()
    pusher = threading.Thread(target=_push, args=(pcm, wave, pace), daemon=True)
    t0 = time.monotonic()
    pusher.start()
    session.run()
    wall = time.monotonic() - t0
    pusher.join()
    mem.done.set()
    mem.join()
    st = session.stats
    lat_start, lat_end, keeps = _keeps_up(st.latencies, st.windows, hop)
    lags = [lag for _, lag in st.lags]
    take = take_motion(stream)
    row: dict[str, Any] = {
        "hop": hop, "lookahead": lookahead, "pace": pace, "audio_s": round(len(wave) / 16000, 2), "wall_s": round(wall, 2),
        "frames": st.frames, "events": counts.get("live_frame", 0),
        "latency_median_s": _percentile(st.latencies, 50), "latency_p95_s": _percentile(st.latencies, 95),
        "latency_max_s": max(st.latencies) if st.latencies else float("nan"),
        "delay_s": st.delay(), "window_mean_s": sum(st.windows) / len(st.windows) if st.windows else float("nan"),
        "window_p95_s": _percentile(st.windows, 95), "windows": len(st.windows),
        "latency_first_quarter_s": lat_start, "latency_last_quarter_s": lat_end,
        "lag_max_s": max(lags) if lags else float("nan"), "keeps_up": keeps if pace == "realtime" else None,
        "load_average": _load(),
        "mem_mb": [(round(t, 1), round(m, 1)) for t, m in mem.samples],
    }
    row.update(_quality(take, stream, offline))
    return row


def _quality(take: MotionData, stream: MotionStream, offline: tuple[MotionData, ...] | None) -> dict[str, Any]:
    """Seam continuity and distance from the offline take (engine/live/metrics.py, on coef)."""
    try:
        from engine.live import metrics
    except ImportError:
        return {}
    seams = [w.commit[0] for w in stream.windows if w.commit[0] > 0]
    st = metrics.seam_continuity(take.coef, seams)
    out: dict[str, Any] = {"seam": {"ratio_p99": st.ratio, "p99_seam": st.p99_seam, "p99_inside": st.p99_inside,
                                    "n_seams": st.n_seams}}
    if offline is not None:
        d = metrics.distance(take.coef, offline[0].coef)
        ref = metrics.distance(offline[1].coef, offline[0].coef)
        out["offline"] = {"rms": d.rms, "rms_exp": d.rms_exp, "rms_pose": d.rms_pose,
                          "other_seed_rms": ref.rms}
    return out


def _fmt(v: Any, spec: str = ".2f") -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "NO"
    if isinstance(v, float) and v != v:
        return "nan"
    return format(v, spec) if isinstance(v, (int, float)) else str(v)


def _line(r: dict[str, Any]) -> str:
    mem = r["mem_mb"]
    after_1min = [m for t, m in mem if t >= 60]
    mem_txt = (f"{mem[0][1]:.0f}->{mem[-1][1]:.0f}" if mem else "-") + (
        f" (after 1 min {min(after_1min):.0f}..{max(after_1min):.0f})" if after_1min else "")
    seam = r.get("seam", {})
    seam_txt = (f"{_fmt(seam.get('ratio_p99'))} ({seam.get('n_seams')} seams)") if seam else "-"
    dist = r.get("offline", {})
    dist_txt = ", ".join(f"{k} {_fmt(v, '.3g')}" for k, v in dist.items()) if dist else "-"
    return (f"H={r['hop']:3d} F={r['lookahead']:2d} {r['pace']:8s} | latency med/p95/max "
            f"{_fmt(r['latency_median_s'])}/{_fmt(r['latency_p95_s'])}/{_fmt(r['latency_max_s'])} s | D "
            f"{_fmt(r['delay_s'])} s | window {_fmt(r['window_mean_s'], '.3f')} s (p95 {_fmt(r['window_p95_s'], '.3f')}, "
            f"n {r['windows']}) | latency 1st->last quarter {_fmt(r['latency_first_quarter_s'])}->"
            f"{_fmt(r['latency_last_quarter_s'])} s, keeps up {_fmt(r['keeps_up'])} | frames {r['frames']}/{r['events']} events | seam p99 ratio {seam_txt} | "
            f"vs offline: {dist_txt} | RSS MB {mem_txt} | {r['audio_s']} s audio in {r['wall_s']} s, load {r['load_average']}")


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from engine.audio import as_wave
    from engine.device import select_device, select_motion_precision
    from engine.motion.generate import MotionModel, generate_motion
    from engine.weights import resolve_weights_dir

    if args.threads:
        torch.set_num_threads(args.threads)
    weights = args.weights or _synthetic(args.weights_cache)
    layout = resolve_weights_dir(weights, None)
    device = select_device(args.device)
    model = MotionModel.load(layout, device)
    wave = as_wave(args.audio)
    if args.seconds:
        n = int(args.seconds * 16000)
        wave = np.tile(wave, int(np.ceil(n / len(wave))))[:n].astype(np.float32)
    settings = [tuple(int(x) for x in s.split(":")) for s in args.settings.split(",") if s.strip()]
    paces = [p.strip() for p in args.pace.split(",") if p.strip()]
    print(f"bench live: {len(wave) / 16000:.1f} s of {Path(args.audio).name}, weights {weights}, device {device}, "
          f"torch threads {torch.get_num_threads()}, seed {args.seed}, load average {_load()}", flush=True)
    offline = None
    if not args.no_offline:   # engine motion on the same audio: the seed's take, and another seed's for scale
        from engine.jobs import LiveJob

        job = LiveJob.from_dict({"out": "x.npz", "source": "pcm", "seed": args.seed,
                                 **({"sampler": args.sampler} if args.sampler else {}),
                                 **({"steps": args.steps} if args.steps else {})})
        precision = select_motion_precision(device, args.dtype, job.motion.sampler)
        other = dataclasses.replace(job.motion, seed=args.seed + 1)
        t0 = time.monotonic()
        offline = tuple(generate_motion(model, wave, opts, dtype=precision.compute)
                        for opts in (job.motion, other))
        print(f"offline takes (seeds {args.seed}, {args.seed + 1}): {time.monotonic() - t0:.1f} s", flush=True)
    rows = []
    for hop, lookahead in settings:
        for pace in paces:
            row = run_one(model, layout, wave, hop, lookahead, pace, args, offline)
            rows.append(row)
            print(_line(row), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1, default=float))
    return 0


def _synthetic(cache: str) -> str:
    root = Path(cache)
    if not (root / "JoyVASA" / "motion_generator").is_dir():
        import subprocess
        import sys

        print(f"writing official-size synthetic weights to {root} (once)", flush=True)
        subprocess.run([sys.executable, str(REPO / "tools" / "make_synthetic_weights.py"), "--config", "official",
                        "--only", "joyvasa", "--out", str(root)], check=True)
    return str(root)
