"""Measure the live stream's window cost, seams and distance from offline for candidate (H, F).

    python tools/live_sweep.py --weights W --audio examples/speech.wav --dtype fp32 --configs 20:5,25:5

Per dtype: one offline ``engine motion`` take (same seed, sampler, steps), then for each (H, F) a
stream fed in 20 ms blocks (as a microphone delivers it; the take does not depend on the blocks).
Prints, per (H, F): time per window (audio encoder + sampler; median, p95), whether it keeps up
(p95 <= H * 40 ms), the frame-latency estimate p95 = (0.95 H + F) * 40 ms + t_win p95, the seam
ratio (engine/live/metrics.py) and the distance from the offline take. Numbers, never asserts:
how docs/live.md "Choosing H and F" was measured. The real-time paced run is ``engine bench live``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", required=True, type=Path)
    p.add_argument("--audio", default="examples/speech.wav")
    p.add_argument("--dtype", default="fp32", help="comma list of fp32 / bf16")
    p.add_argument("--configs", default="20:5", help="comma list of H:F")
    p.add_argument("--sampler", default="dpmpp_2m")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    p.add_argument("--crossfade", type=int, default=0)
    p.add_argument("--time-windows", type=int, default=0,
                   help="only time this many windows of the first H:F (no offline take, no quality numbers)")
    args = p.parse_args(argv)

    import numpy as np
    import torch

    from engine.audio import as_wave
    from engine.live.metrics import distance, seam_continuity
    from engine.live.stream import MotionStream
    from engine.motion.generate import MotionModel, MotionOptions, generate_motion
    from engine.weights import WeightsLayout

    if args.threads:
        torch.set_num_threads(args.threads)
    layout = WeightsLayout(args.weights)
    model = MotionModel.load(layout)
    wave = as_wave(args.audio)
    load = Path("/proc/loadavg").read_text().split()[0] if Path("/proc/loadavg").is_file() else "?"
    print(f"# {args.audio}: {len(wave) / 16000:.2f} s; sampler {args.sampler} steps {args.steps or 'default'}; "
          f"torch threads {torch.get_num_threads()}; load average {load}")
    for name in args.dtype.split(","):
        dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[name]
        opts = MotionOptions(seed=args.seed, sampler=args.sampler, steps=args.steps)
        if args.time_windows:
            H, F = (int(v) for v in args.configs.split(",")[0].split(":"))
            st = MotionStream(model, opts, hop=H, lookahead=F, dtype=dtype)
            i = 0
            while st.n_windows < args.time_windows and i < len(wave):
                st.feed(wave[i:i + 320])
                i += 320
            for w in st.windows:
                print(f"[{name}] window at frame {w.start:4d}: encode {w.encode_s:.3f} s, sample {w.sample_s:.3f} s "
                      f"(wall), CPU {w.cpu_s:.3f} s", flush=True)
            continue
        t0 = time.perf_counter()
        off = generate_motion(model, wave, opts, dtype=dtype)
        t_off = time.perf_counter() - t0
        other = generate_motion(model, wave, MotionOptions(seed=args.seed + 1, sampler=args.sampler,
                                                           steps=args.steps), dtype=dtype)
        ref = distance(other.coef, off.coef)
        off_seams = seam_continuity(off.coef, range(model.config.n_motions, off.n_frames, model.config.n_motions))
        print(f"[{name}] offline: {t_off:.2f} s for {off.n_frames} frames; seed vs seed+1 distance "
              f"{ref.rms:.3f} (exp {ref.rms_exp:.3f}, pose {ref.rms_pose:.3f}); offline window seams "
              f"p99 {off_seams.p99_seam:.3f} vs inside {off_seams.p99_inside:.3f}")
        print(f"[{name}]   H   F  windows  enc_med  smp_med  win_min  win_med  win_p95  cpu_med  budget  keeps_up  "
              f"latency_p95  seam_p99  inside_p99  ratio  dist   dist_exp  dist_pose")
        for cfg in args.configs.split(","):
            H, F = (int(v) for v in cfg.split(":"))
            st = MotionStream(model, opts, hop=H, lookahead=F, dtype=dtype, crossfade=args.crossfade,
                              controls=None)
            st.feed(np.zeros(0, np.float32))
            for i in range(0, len(wave), 320):
                st.feed(wave[i:i + 320])
            st.finish()
            ws = list(st.windows)[1:] or list(st.windows)          # the first window warms up
            enc = np.array([w.encode_s for w in ws])
            smp = np.array([w.sample_s for w in ws])
            win = enc + smp
            cpu = np.array([w.cpu_s for w in ws])
            p95 = float(np.percentile(win, 95))
            budget = H * 0.04
            lat = (0.95 * H + F) * 0.04 + p95
            seams = seam_continuity(st.take_motion().coef, [w.commit[0] for w in st.windows if w.commit[0] > 0])
            d = distance(st.take_motion().coef, off.coef)
            print(f"[{name}] {H:3d} {F:3d} {st.n_windows:8d} {np.median(enc):8.3f} {np.median(smp):8.3f} "
                  f"{win.min():8.3f} {np.median(win):8.3f} {p95:8.3f} {np.median(cpu):8.3f} {budget:7.2f} {'yes' if p95 <= budget else 'NO':>9s} "
                  f"{lat:12.2f} {seams.p99_seam:9.3f} {seams.p99_inside:11.3f} {seams.ratio:6.2f} "
                  f"{d.rms:6.3f} {d.rms_exp:9.3f} {d.rms_pose:10.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
