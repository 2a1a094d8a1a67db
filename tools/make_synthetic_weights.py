"""Write random weights in the official layout: ``python tools/make_synthetic_weights.py --config tiny --out DIR``.

LivePortrait files come from :mod:`engine.models.synthetic_lp`; the JoyVASA motion generator,
template and HuBERT folder from :mod:`engine.motion.synthetic`; with ``--config official`` (or
``--only xpose``) also X-Pose's ``liveportrait_animals/xpose.pth`` (:mod:`engine.framing.xpose_synthetic`),
so the animal-face loader and its benchmark run at full size. The tiny "all" set has no X-Pose
file, so ``--animal`` there keeps the cat cascade / centred fallback. For tests and benchmarks only —
never commit the output (it is not a model, just shapes and noise).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", choices=("official", "tiny"), default="tiny")
    p.add_argument("--out", required=True, type=Path, help="weights folder to create / overwrite")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--only", choices=("all", "liveportrait", "joyvasa", "xpose"), default="all",
                   help="write only one part (default: LivePortrait + JoyVASA, + X-Pose for official)")
    args = p.parse_args(argv)

    from engine.models.synthetic_lp import write_liveportrait_weights

    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if args.only in ("all", "liveportrait"):
        write_liveportrait_weights(args.out, args.config, args.seed)
        print(f"LivePortrait ({args.config}) written to {args.out} in {time.perf_counter() - t0:.1f} s",
              file=sys.stderr)
    if args.only == "xpose" or (args.only == "all" and args.config == "official"):
        from engine.framing.xpose_synthetic import write_xpose_weights

        t2 = time.perf_counter()
        path = write_xpose_weights(args.out, args.config, args.seed)
        print(f"X-Pose ({args.config}) written to {path} in {time.perf_counter() - t2:.1f} s", file=sys.stderr)
        if args.only == "xpose":
            return 0
    if args.only in ("all", "joyvasa"):
        try:
            from engine.motion.synthetic import write_joyvasa_weights
        except ModuleNotFoundError as exc:
            if exc.name not in ("engine.motion.synthetic",):
                raise
            print("JoyVASA part skipped: engine/motion/synthetic.py (write_joyvasa_weights) is not in this "
                  "checkout yet; only the LivePortrait files were written", file=sys.stderr)
            return 0
        t1 = time.perf_counter()
        write_joyvasa_weights(args.out, args.config, args.seed)
        print(f"JoyVASA ({args.config}) written to {args.out} in {time.perf_counter() - t1:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
