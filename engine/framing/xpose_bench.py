"""``python -m engine.framing.xpose_bench [--weights DIR] [--image IMG] [--dtype fp32|bf16] [--threads N]``

Prints how long X-Pose takes per portrait once loaded (wall and CPU seconds, per run), the load
time and the peak memory. Without ``--weights`` it writes an official-size synthetic
``xpose.pth`` to a temp folder first (random weights: the timing is the same, the points are noise).
Why a script and not a test: speed claims live in benchmarks that print numbers.
"""
from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", type=Path, default=None, help="weights folder with liveportrait_animals/xpose.pth")
    p.add_argument("--image", type=Path, default=None, help="picture (default: a 1202x800 random one)")
    p.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32")
    p.add_argument("--device", default=None, help="cpu | cuda | mps (default: the accelerator if any)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--runs", type=int, default=2)
    args = p.parse_args(argv)

    import numpy as np
    import torch

    from engine.framing import xpose
    from engine.framing.xpose_prompts import load_prompts

    if args.threads:
        torch.set_num_threads(args.threads)
    tmp = None
    root = args.weights
    if root is None:
        from engine.framing.xpose_synthetic import write_xpose_weights

        tmp = tempfile.TemporaryDirectory(prefix="xpose-bench-")
        root = Path(tmp.name)
        write_xpose_weights(root, "official", 0)
    path = root / xpose.XPOSE_FILE
    if args.image is not None:
        from engine.framing.frame import load_picture

        img = load_picture(args.image)
    else:
        img = np.random.default_rng(0).integers(0, 256, (800, 1202, 3), dtype=np.uint8)
    device = args.device or xpose.default_device()
    dtype = torch.bfloat16 if args.dtype == "bf16" else None
    t0 = time.perf_counter()
    model = xpose.load_model(path, device)
    load_s = time.perf_counter() - t0
    instance, keypoints = load_prompts(9)
    print(f"xpose: {path} config={'official' if model.cfg == type(model.cfg).official() else 'custom'} "
          f"device={device} dtype={args.dtype} threads={torch.get_num_threads()} load={load_s:.2f}s")
    for i in range(args.runs):
        w0, c0 = time.perf_counter(), time.process_time()
        x = xpose.preprocess(img)
        pre_s = time.perf_counter() - w0
        out = xpose.run_network(model, x, instance, keypoints, dtype=dtype)
        faces = xpose.decode(out, 9, img.shape[1], img.shape[0])
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        print(f"run {i + 1}: {img.shape[1]}x{img.shape[0]} -> {tuple(x.shape[-2:][::-1])} wall={wall:.2f}s "
              f"cpu={cpu:.2f}s (resize+normalise {pre_s:.2f}s) best score {faces[0].score:.3f}")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak host memory {peak_mb:.0f} MB")
    if device == "cuda":
        print(f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**20:.0f} MB")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
