"""Write random weights in the official layout: ``python tools/make_synthetic_weights.py --config tiny --out DIR``.

LivePortrait files come from :mod:`engine.models.synthetic_lp`; the JoyVASA motion generator,
template and HuBERT folder from :mod:`engine.motion.synthetic`. For tests and benchmarks only —
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
    p.add_argument("--only", choices=("all", "liveportrait", "joyvasa"), default="all",
                   help="write only one half (default: both)")
    args = p.parse_args(argv)

    from engine.models.synthetic_lp import write_liveportrait_weights

    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if args.only in ("all", "liveportrait"):
        write_liveportrait_weights(args.out, args.config, args.seed)
        print(f"LivePortrait ({args.config}) written to {args.out} in {time.perf_counter() - t0:.1f} s",
              file=sys.stderr)
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
