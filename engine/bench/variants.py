"""W+G execution variants, measured only: eager, a CUDA graph of one fixed batch shape, and
``torch.compile`` of W and G (``bench render --variants eager,graph,compile``).

Why measure-only: issue 20 asks to take what is real on a GPU, and whether a variant is real
(speed-up, compile time, any difference from eager) can only be seen on one. ``animate`` uses
none of them until these lines show a gain; then it can adopt one as an opt-in path, with the
float32 eager path staying the exact one. Each variant prints fps, speed-up against eager, its
setup time (capture or compile) and the largest difference from eager's frames. A variant that
cannot run here (a CUDA graph on CPU, no compiler) prints why instead of failing the benchmark.
"""
from __future__ import annotations

import copy
import time
from typing import TYPE_CHECKING, Callable

import torch

if TYPE_CHECKING:
    from engine.models.stage_one import SourceInfo, StageOne

VARIANTS = ("eager", "graph", "compile")
Runner = Callable[[torch.Tensor], torch.Tensor]


def _eager(s1: StageOne, src: SourceInfo, batch: int, device: torch.device) -> Runner:
    return lambda kp: s1.warp_decode(src.f_s, src.x_s, kp)


def _graph(s1: StageOne, src: SourceInfo, batch: int, device: torch.device) -> Runner:
    """Capture one W+G call at this batch; replay copies new keypoints into the captured input."""
    if device.type != "cuda":
        raise RuntimeError("CUDA graphs need a CUDA device")
    static_kp = src.x_s.expand(batch, -1, -1).clone()
    cache = torch.is_autocast_cache_enabled()
    torch.set_autocast_cache_enabled(False)   # autocast's weight cache must not live inside a graph
    try:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):
                s1.warp_decode(src.f_s, src.x_s, static_kp)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_out = s1.warp_decode(src.f_s, src.x_s, static_kp)
    finally:
        torch.set_autocast_cache_enabled(cache)

    def run(kp: torch.Tensor) -> torch.Tensor:
        static_kp.copy_(kp)
        graph.replay()
        return static_out

    return run


def _compile(s1: StageOne, src: SourceInfo, batch: int, device: torch.device) -> Runner:
    """torch.compile of W and G (static shapes); the first call pays the compile time."""
    compiled = copy.copy(s1)
    compiled.W = torch.compile(s1.W, dynamic=False)
    compiled.G = torch.compile(s1.G, dynamic=False)
    return lambda kp: compiled.warp_decode(src.f_s, src.x_s, kp)


_BUILD = {"eager": _eager, "graph": _graph, "compile": _compile}


def measure_variants(s1: StageOne, src: SourceInfo, drive: torch.Tensor, batch: int, calls: int, names: list[str],
                     device: torch.device, label: str, log: Callable[[str], None]) -> dict[str, float]:
    """Print one line per variant; returns fps by variant (those that ran)."""
    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    kp0 = drive[:batch]
    with torch.inference_mode():
        reference = s1.warp_decode(src.f_s, src.x_s, kp0).clone()
    fps: dict[str, float] = {}
    for name in names:
        if name not in _BUILD:
            log(f"{label} variant {name}: unknown (choose from {', '.join(VARIANTS)})")
            continue
        try:
            t0 = time.perf_counter()
            with torch.inference_mode() if name != "graph" else torch.no_grad():
                run = _BUILD[name](s1, src, batch, device)
                first = run(kp0).clone()           # compile / capture / warm-up happen here
                sync()
                setup = time.perf_counter() - t0
                diff = float((first - reference).abs().max())
                t0 = time.perf_counter()
                for c in range(calls):
                    idx = [(c * batch + j) % drive.shape[0] for j in range(batch)]
                    run(drive[idx])
                sync()
                per = (time.perf_counter() - t0) / (calls * batch)
        except Exception as exc:  # noqa: BLE001 - a variant that cannot run here is a result, not a crash
            log(f"{label} variant {name}: not available here: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
            continue
        fps[name] = 1.0 / per
        speed = f", {fps[name] / fps['eager']:.2f}x eager" if "eager" in fps and name != "eager" else ""
        log(f"{label} variant {name}: {fps[name]:.2f} fps{speed}, setup {setup:.1f} s, "
            f"max |diff| vs eager {diff:.2e}")
    return fps
