"""Render benchmark: F and M once, then W+G per frame at official size (fp32 / bf16, batch sizes).

Prints plain lines: seconds per frame (W and G split), achieved GFLOP/s against the FLOP table in
engine/profiling.py, peak RSS, PSNR of bfloat16 frames against float32, and upstream's CPU numbers
(spec §7: 7.40 s/frame fp32 = W 1.95 + G 5.34, 2 threads) beside ours. Uses random official-size
weights written to a temp dir unless ``--weights`` is given. The machine may be shared: the load
average and the process CPU seconds per frame are printed so contention can be judged (wall time
under contention grows; CPU seconds much less).
"""
from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path


def _csv(kind):
    return lambda text: [kind(v.strip()) for v in text.split(",") if v.strip()]


def default_dtypes(device: torch.device, asked: list[str] | None) -> list[str]:
    """The dtypes to time: what was asked, else float32 plus bfloat16 where bfloat16 is native.
    Emulated bfloat16 (a CPU without AVX512-BF16/AMX) took ~100x float32's time per frame here
    (W+G 110 s for one tiny frame against 1.06 s), so it is timed only when asked for, with a warning."""
    from engine.device import cpu_has_native_bf16

    native = device.type != "cpu" or cpu_has_native_bf16()
    if asked is None:
        if not native:
            _log("bfloat16 left out: this CPU has no native bfloat16 (AVX512-BF16/AMX); emulated it is ~100x "
                 "slower than float32. Ask for it with --dtype float32,bfloat16 to time it anyway.")
        return ["float32", "bfloat16"] if native else ["float32"]
    if not native and any(d.lower() in ("bfloat16", "bf16") for d in asked):
        _log("warning: this CPU has no native bfloat16: bfloat16 is emulated and ~100x slower than float32")
    return asked


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", type=Path, default=None,
                   help="weights folder (default: random official-size LivePortrait weights in a temp dir)")
    p.add_argument("--frames", type=int, default=4, help="frames timed per (batch, dtype) setting (default 4)")
    p.add_argument("--batch", type=_csv(int), default=[1, 4], help="comma-separated batch sizes (default 1,4)")
    p.add_argument("--dtype", type=_csv(str), default=None,
                   help="comma-separated: float32,bfloat16,float16 (default float32,bfloat16 where bfloat16 is "
                        "native: a GPU, or a CPU with AVX512-BF16/AMX; float32 alone elsewhere; float16 on GPUs only)")
    p.add_argument("--warmup", type=int, default=1, help="untimed calls before each setting (default 1)")
    p.add_argument("--exact", action="store_true",
                   help="upstream op order: no BatchNorm folding, no channel padding / fused SPADE")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--variants", type=_csv(str), default=[],
                   help="also time these W+G execution variants per setting: eager,graph,compile (CUDA graph of "
                        "the batch shape, torch.compile of W and G; measure-only, animate does not use them)")
    p.add_argument("--device", default="cpu", help="cpu|cuda|mps|auto (default cpu; on a GPU the batch list may "
                   "include 0 = sized from free memory, as animate does)")


def _log(msg: str) -> None:
    print(msg, flush=True)


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from engine.models.stage_one import StageOne
    from engine.device import select_device
    from engine.profiling import GFLOP, UPSTREAM_SECONDS, load_average, peak_rss_mb
    from engine.weights import WeightsLayout

    if args.threads:
        torch.set_num_threads(args.threads)
    args.device = select_device(args.device)
    tmp = None
    if args.weights is None:
        from engine.models.synthetic_lp import write_liveportrait_weights

        tmp = tempfile.TemporaryDirectory(prefix="joyvasa_bench_")
        t0 = time.perf_counter()
        write_liveportrait_weights(Path(tmp.name), "official", args.seed)
        _log(f"weights: random official-size LivePortrait weights in {tmp.name} "
             f"(written in {time.perf_counter() - t0:.1f} s)")
        root = Path(tmp.name)
    else:
        root = args.weights
        _log(f"weights: {root}")
    try:
        return _bench(args, WeightsLayout(root), np, torch, StageOne, GFLOP, UPSTREAM_SECONDS,
                      load_average, peak_rss_mb)
    finally:
        if tmp is not None:
            tmp.cleanup()


def _bench(args, layout, np, torch, StageOne, GFLOP, UPSTREAM, load_average, peak_rss_mb) -> int:
    from engine.device import auto_batch_size, describe_device, device_peak_mb
    from engine.profiling import matmul_peak_gflops

    device = args.device
    _log(f"torch {torch.__version__}, device {describe_device(device)}, threads {torch.get_num_threads()}, "
         f"mkldnn {torch.backends.mkldnn.is_available()}, load average {load_average()}")
    peaks = {}

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def load(dtype: str):
        t0 = time.perf_counter()
        s1 = StageOne.load(layout, device, dtype=dtype, fold_bn=not args.exact, fast=not args.exact)
        _log(f"load ({dtype}): {time.perf_counter() - t0:.2f} s ({'exact upstream op order' if args.exact else 'BatchNorm folded, padded channels, fused SPADE'}; "
             f"spectral norm folded)")
        return s1

    s1 = load("float32")
    rng = np.random.default_rng(args.seed)
    img = (rng.random((256, 256, 3)) * 255).astype(np.uint8)
    x = s1.preprocess(img)
    with torch.no_grad():
        if device.type == "cuda":  # first-call kernel selection is not F's or M's cost
            s1.F(x), s1.M.kp_info(x)
        sync()
        t0 = time.perf_counter()
        f_s = s1.F(x)
        sync()
        t_f = time.perf_counter() - t0
        t0 = time.perf_counter()
        s1.M.kp_info(x)
        sync()
        t_m = time.perf_counter() - t0
    src = s1.extract(img)
    _log(f"F (once): {t_f:.3f} s ({GFLOP['F'] / t_f:.1f} GFLOP/s; upstream {UPSTREAM['F']:.2f} s)   "
         f"M (once): {t_m:.3f} s ({GFLOP['M'] / t_m:.1f} GFLOP/s; upstream {UPSTREAM['M']:.2f} s)")
    del f_s
    max_batch = max(args.batch)
    n_kp = src.x_s.shape[1]
    gen = torch.Generator().manual_seed(args.seed)
    # one distinct driving keypoint set per frame; the same sets for every (batch, dtype)
    from engine.device import select_precision

    dtypes = [select_precision(device, d).name for d in default_dtypes(device, args.dtype)]   # fp16 GPU only
    batches_of = {d: [auto_batch_size(device, b or None, dtype=d) for b in args.batch] for d in dtypes}
    max_batch = max(max(b) for b in batches_of.values())
    drive = src.x_s + 0.03 * torch.randn(max(args.frames, max_batch), n_kp, 3, generator=gen).to(device)
    reference: dict[int, torch.Tensor] = {}  # fp32 frames, for PSNR of other dtypes
    results = []
    loaded = "float32"
    for dtype in dtypes:
        batches = batches_of[dtype]
        if dtype != loaded:
            s1 = None  # free the previous copy before loading the next one
            s1, loaded = load(dtype), dtype
        if dtype not in peaks:
            peaks[dtype] = matmul_peak_gflops(device, dtype)
            _log(f"fastest large matmul in {dtype} on this device: {peaks[dtype]:.0f} GFLOP/s")
        for batch in batches:
            calls = max(1, math.ceil(args.frames / batch))
            if device.type == "cuda":  # peak GPU memory of this setting alone (fits FRAME_MB in engine/device.py)
                torch.cuda.reset_peak_memory_stats(device)
            for _ in range(args.warmup):
                s1.warp_decode(src.f_s, src.x_s, drive[:batch])
            sync()
            t_w = t_g = 0.0
            frames = []
            cpu0 = time.process_time()
            for c in range(calls):
                idx = [(c * batch + j) % drive.shape[0] for j in range(batch)]
                t0 = time.perf_counter()
                w = s1.warp(src.f_s, src.x_s, drive[idx])["out"]
                sync()
                t1 = time.perf_counter()
                out = s1.decode(w)
                sync()
                t2 = time.perf_counter()
                t_w += t1 - t0
                t_g += t2 - t1
                frames.append((idx, out))
            n = calls * batch
            cpu = (time.process_time() - cpu0) / n
            per_w, per_g = t_w / n, t_g / n
            per = per_w + per_g
            psnr = ""
            for idx, out in frames:
                for j, i in enumerate(idx):
                    if dtype == "float32" and i not in reference:
                        reference[i] = out[j].clone()
            if dtype != "float32":
                errs = [float(((out[j] - reference[i]) ** 2).mean()) for idx, out in frames
                        for j, i in enumerate(idx) if i in reference]
                if errs:
                    mse = sum(errs) / len(errs)
                    psnr = f"  PSNR vs float32 {10 * math.log10(1.0 / max(mse, 1e-20)):.1f} dB"
            line = (f"W+G {dtype:8s} batch {batch}: {per:.3f} s/frame (W {per_w:.3f} + G {per_g:.3f}), "
                    f"{1 / per:.2f} fps, {GFLOP['WG'] / per:.0f} GFLOP/s "
                    f"({100 * GFLOP['WG'] / per / peaks[dtype]:.0f}% of the fastest matmul), "
                    f"{UPSTREAM['WG'] / per:.2f}x upstream, CPU {cpu:.2f} s/frame, peak RSS {peak_rss_mb():.0f} MiB"
                    + (f", peak GPU {device_peak_mb(device):.0f} MiB" if device.type == "cuda" else "") + psnr)
            _log(line)
            results.append((dtype, batch, per))
            if args.variants:  # measure-only execution variants (engine/bench/variants.py)
                from engine.bench.variants import measure_variants

                del frames
                measure_variants(s1, src, drive, batch, calls, args.variants, device, f"W+G {dtype} batch {batch}", _log)
    _log(f"upstream (spec §7, fp32, 2 threads): {UPSTREAM['WG']:.2f} s/frame "
         f"(W {UPSTREAM['W']:.2f} + G {UPSTREAM['G']:.2f}), {GFLOP['WG'] / UPSTREAM['WG']:.0f} GFLOP/s")
    if results:
        best = min(results, key=lambda r: r[2])
        _log(f"best: {best[0]} batch {best[1]}: {best[2]:.3f} s/frame = {UPSTREAM['WG'] / best[2]:.2f}x upstream; "
             f"load average now {load_average()}")
    return 0
