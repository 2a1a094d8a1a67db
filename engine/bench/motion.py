"""``python -m engine bench motion``: seconds per 100-frame window and real-time factor.

Runs on official-size synthetic weights (written once into ``--weights-cache``) unless
``--weights`` is given. For each sampler/steps pair: wall time of the whole window loop
(HuBERT + sampler) per window, RTF = compute time / audio time, and for the exact sampler
the max difference between the hoisted (fast) and plain attention paths. Upstream's cost on
this class of CPU (spec §7): 0.40 s HuBERT + 50 × 0.047 s DiT = 2.75 s per window.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

UPSTREAM_HUBERT_S = 0.40
UPSTREAM_STEP_S = 0.047
UPSTREAM_WINDOW_S = UPSTREAM_HUBERT_S + 50 * UPSTREAM_STEP_S   # 2.75

DEFAULT_CONFIGS = "ancestral:0,ddim:10,ddim:20,ddim:25,dpmpp_2m:10,dpmpp_2m:20,dpmpp_2m:25"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", default=None, help="weights folder (default: official-size synthetic weights)")
    p.add_argument("--weights-cache", default=str(Path(tempfile.gettempdir()) / "joyvasa_bench_official"),
                   help="where synthetic official-size weights are written once (~760 MB)")
    p.add_argument("--windows", type=int, default=2, help="100-frame windows of audio per run (default 2)")
    p.add_argument("--configs", default=DEFAULT_CONFIGS,
                   help="comma list sampler:steps (0 = sampler default; ancestral:0 = exact, all N)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--device", default="cpu", help="cpu|cuda|mps|auto")
    p.add_argument("--repeat", type=int, default=2, help="runs per config; the fastest is reported (shared CPUs)")
    p.add_argument("--no-plain", action="store_true", help="skip the upstream-equivalent plain-attention run")
    w = p.add_argument_group("whole process (--whole): cold one-shot process vs warm takes through `engine serve`")
    w.add_argument("--whole", action="store_true", help="measure whole processes and warm takes instead")
    w.add_argument("--audio", default=None, help="speech for --whole (default: examples/speech.wav tiled to --seconds)")
    w.add_argument("--seconds", type=float, default=20.0, help="speech length for --whole (default 20, as upstream's figure)")
    w.add_argument("--sampler", default=None, help="--whole: sampler (default: the engine's default)")
    w.add_argument("--steps", type=int, default=None, help="--whole: steps (default: the sampler's)")


#: upstream JoyVASA's whole motion process for 20 s of speech on this machine class (issue #8)
UPSTREAM_MOTION_PROCESS_S = (16.5, 17.6)


def _speech(path: Path, seconds: float, reverse: bool = False) -> Path:
    import numpy as np
    import soundfile as sf

    wave, sr = sf.read(str(Path(__file__).resolve().parents[2] / "examples" / "speech.wav"), dtype="float32")
    if reverse:  # different audio content of the same length: a "new line" for the warm worker
        wave = wave[::-1].copy()
    n = int(seconds * sr)
    sf.write(str(path), np.tile(wave, int(np.ceil(n / len(wave))))[:n], sr)
    return path


def run_whole(args: argparse.Namespace) -> int:
    from engine.bench.takes import run_takes

    root = _weights(args)
    with tempfile.TemporaryDirectory(prefix="jv-bench-takes-") as tmp_name:
        tmp = Path(tmp_name)
        audio = Path(args.audio) if args.audio else _speech(tmp / "line.wav", args.seconds)
        other = _speech(tmp / "other.wav", args.seconds, reverse=True)
        opts: dict = {}
        if args.sampler:
            opts["sampler"] = args.sampler
        if args.steps:
            opts["steps"] = args.steps
        cli = [x for k, v in opts.items() for x in (f"--{k}", str(v))]
        base = {"weights": str(root), "device": args.device}
        takes = [("warm take 1 (loads)", {**base, **opts, "audio": str(audio), "out": str(tmp / "w1.npz"), "seed": 1}),
                 ("warm re-take new seed", {**base, **opts, "audio": str(audio), "out": str(tmp / "w2.npz"), "seed": 2}),
                 ("warm take new audio", {**base, **opts, "audio": str(other), "out": str(tmp / "w3.npz"), "seed": 3})]
        print(f"speech: {args.seconds:g} s; sampler {args.sampler or 'default'} steps {args.steps or 'default'}; "
              f"weights {root}", flush=True)
        return run_takes("motion", ["--audio", str(audio), "--out", str(tmp / "cold.npz"), "--weights", str(root),
                                    "--device", args.device, *cli],
                         takes, args.threads or 0, UPSTREAM_MOTION_PROCESS_S, repeat=args.repeat)


def _weights(args: argparse.Namespace) -> Path:
    if args.weights:
        return Path(args.weights)
    root = Path(args.weights_cache)
    marker = root / ".complete"
    if not marker.is_file():
        from engine.motion.synthetic import write_joyvasa_weights

        print(f"writing official-size synthetic JoyVASA weights to {root} ...", flush=True)
        write_joyvasa_weights(root, "official", seed=0)
        marker.write_text("ok\n")
    return root


def run(args: argparse.Namespace) -> int:
    if args.whole:
        return run_whole(args)
    import numpy as np
    import torch

    from engine.device import select_device
    from engine.motion.generate import MotionModel, MotionOptions, generate_coef
    from engine.runner import peak_rss_mb
    from engine.weights import WeightsLayout

    if args.threads:
        torch.set_num_threads(args.threads)
    device = select_device(args.device)
    root = _weights(args)
    t0 = time.perf_counter()
    model = MotionModel.load(WeightsLayout(root), device)
    load_s = time.perf_counter() - t0
    cfg = model.config
    L = cfg.n_motions
    n_raw = args.windows * 640 * L - 1920 - 640                  # exactly `windows` windows
    rng = np.random.default_rng(0)
    tt = np.arange(n_raw) / 16000
    wave = (0.2 * np.sin(2 * np.pi * 3 * tt) * np.sin(2 * np.pi * 200 * tt) + rng.normal(0, 0.01, n_raw)).astype(np.float32)
    audio_s = n_raw / 16000
    print(f"device {device}, threads {torch.get_num_threads()}, D={cfg.motion_feat_dim} L={L} P={cfg.n_prev_motions} "
          f"F={cfg.feature_dim} N={model.schedule.N}, load {load_s:.2f} s, {args.windows} windows = {audio_s:.2f} s audio")

    # component timings
    with torch.no_grad():
        def timed(fn, reps: int = 10) -> float:
            fn()
            best = float("inf")
            for _ in range(reps):
                t1 = time.perf_counter()
                fn()
                best = min(best, time.perf_counter() - t1)
            return best

        audio = torch.from_numpy(wave[: 640 * L]).unsqueeze(0)
        a = model.encode(audio)
        hubert_s = timed(lambda: model.encode(audio), reps=3)
        dit = model.dit
        x = torch.randn(2, L, cfg.motion_feat_dim, device=device)
        t = torch.full((2,), 25, dtype=torch.long, device=device)
        mp = model.start_motion.expand(2, -1, -1)
        ap = model.start_audio.expand(2, -1, -1)
        a2 = a.expand(2, -1, -1)
        cross = dit.precompute_memory(dit.memory(a2, ap))

        step_plain = timed(lambda: dit(x, t, a2, mp, ap, hoist=False))
        step_fast = timed(lambda: dit(x, t, None, mp, None, cross=cross))
    print(f"HuBERT+map per window: {hubert_s:.3f} s (upstream {UPSTREAM_HUBERT_S:.2f} s)")
    print(f"DiT step, CFG batch 2: plain {step_plain * 1000:.1f} ms, hoisted {step_fast * 1000:.1f} ms "
          f"(upstream {UPSTREAM_STEP_S * 1000:.0f} ms)")

    rows = []
    ref_exact = None
    for item in [c for c in args.configs.split(",") if c]:
        name, _, steps_txt = item.partition(":")
        steps = int(steps_txt) if steps_txt and int(steps_txt) > 0 else None
        opts = MotionOptions(seed=0, sampler=name, steps=steps, cfg_scale=2.0)
        dt, cpu = float("inf"), float("inf")
        for _ in range(max(1, args.repeat)):
            t0, c0 = time.perf_counter(), time.process_time()
            coef = generate_coef(model, wave, opts)
            dt, cpu = min(dt, time.perf_counter() - t0), min(cpu, time.process_time() - c0)
        n_steps = steps or (model.schedule.N if name == "ancestral" else None)
        if name == "ancestral" and steps is None:
            ref_exact = coef
        rows.append((f"{name}:{n_steps or 'default'}", dt / args.windows, dt / audio_s, cpu / args.windows))
    if not args.no_plain:
        dt, cpu = float("inf"), float("inf")
        for _ in range(max(1, args.repeat)):
            t0, c0 = time.perf_counter(), time.process_time()
            coef_plain = generate_coef(model, wave, MotionOptions(seed=0, sampler="ancestral", cfg_scale=2.0),
                                       hoist=False)
            dt, cpu = min(dt, time.perf_counter() - t0), min(cpu, time.process_time() - c0)
        rows.append(("ancestral:N plain (upstream-equivalent)", dt / args.windows, dt / audio_s, cpu / args.windows))
        if ref_exact is not None:
            print(f"exact mode, hoisted vs plain attention: max |diff| = {np.abs(ref_exact - coef_plain).max():.2e}")
    print(f"(fastest of {max(1, args.repeat)} runs per config)")
    plain_cpu = rows[-1][3] if not args.no_plain else None
    print(f"{'sampler:steps':42s} {'s/window':>9s} {'RTF':>7s} {'vs upstream 2.75 s':>19s} {'CPU s/window':>13s}"
          f" {'CPU vs plain':>13s}")
    for label, spw, rtf, cpu_w in rows:
        rel = f"{plain_cpu / cpu_w:12.2f}x" if plain_cpu else f"{'-':>13s}"
        print(f"{label:42s} {spw:9.3f} {rtf:7.3f} {UPSTREAM_WINDOW_S / spw:18.2f}x {cpu_w:13.3f} {rel}")
    print("CPU seconds (all threads) are robust to other processes on a shared machine; 'CPU vs plain' compares "
          "with the upstream-equivalent plain-attention path in this run")
    print(f"upstream (spec §7): {UPSTREAM_WINDOW_S:.2f} s/window = {UPSTREAM_HUBERT_S:.2f} s HuBERT + 50 x "
          f"{UPSTREAM_STEP_S:.3f} s; RTF {UPSTREAM_WINDOW_S / 4.0:.3f}")
    print(f"peak RSS {peak_rss_mb():.0f} MiB")
    return 0
