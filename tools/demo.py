"""The README's main job: animate the bundled portrait with the bundled speech → out/demo.mp4.

    python tools/demo.py                    # official weights from --weights / $JOYVASA_WEIGHTS
    python tools/demo.py --config tiny      # no weights at hand: fast run on tiny random weights

With the official weights (found through ``--weights`` or ``$JOYVASA_WEIGHTS``) this renders
the real thing. Without them it writes *synthetic* weights in the official format into
``.cache/synthetic-weights/<config>`` (random numbers: the video shows noise, not a face — it
proves the whole pipeline runs, nothing more) and says so. ``--config official`` keeps the
official network sizes (≈7 s per frame on 2 CPU cores); ``--config tiny`` is fast.
Extra arguments after ``--`` go to ``python -m engine animate`` (e.g. ``-- --device cuda``).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(1, str(REPO / "tools"))

PORTRAIT = REPO / "examples" / "portrait.jpg"
SPEECH = REPO / "examples" / "speech.wav"


def official_weights(arg: str | None) -> Path | None:
    """The weights folder if it holds every required file (cheap presence check)."""
    raw = arg or os.environ.get("JOYVASA_WEIGHTS", "")
    if not raw:
        return None
    from engine.weights import WeightsLayout

    layout = WeightsLayout(Path(raw).expanduser())
    needed = [*layout.liveportrait_files().values(), layout.motion_generator, layout.motion_template,
              layout.audio_encoder_dir() / "config.json"]
    missing = [str(p) for p in needed if not p.is_file()]
    if missing:
        print(f"demo: {raw} lacks {len(missing)} weight file(s), e.g. {missing[0]}", file=sys.stderr)
        return None
    return layout.root


def synthetic_weights(config: str, cache: Path) -> Path:
    folder = cache / "synthetic-weights" / config
    marker = folder / ".complete"
    if not marker.is_file():
        import make_synthetic_weights

        print(f"demo: writing synthetic {config} weights to {folder} (once)", file=sys.stderr)
        if make_synthetic_weights.main(["--config", config, "--out", str(folder)]) != 0:
            raise SystemExit("demo: could not create synthetic weights")
        marker.write_text("ok\n")
    return folder


def trimmed_audio(seconds: float | None, cache: Path) -> Path:
    if not seconds:
        return SPEECH
    import soundfile as sf

    wave, sr = sf.read(str(SPEECH), dtype="float32")
    path = cache / f"speech_{seconds:g}s.wav"
    cache.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), wave[: int(seconds * sr)], sr)
    return path


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", default=None, help="official weights folder (default $JOYVASA_WEIGHTS)")
    p.add_argument("--config", choices=("official", "tiny"), default="official",
                   help="size of the synthetic weights used when no official weights are found")
    p.add_argument("--out", type=Path, default=REPO / "out" / "demo.mp4")
    p.add_argument("--seconds", type=float, default=None, help="use only the first S seconds of the speech")
    p.add_argument("--cache", type=Path, default=REPO / ".cache")
    args = p.parse_args(argv)

    weights = official_weights(args.weights)
    if weights is None:
        weights = synthetic_weights(args.config, args.cache)
        print("demo: NO official weights found -> using RANDOM synthetic weights: the video will show noise, "
              "not an animated face. Get the real weights with `python tools/fetch_weights.py --out DIR` "
              "and run `python tools/demo.py --weights DIR`.", file=sys.stderr)
        if args.config == "official" and not args.seconds:
            print("demo: official-size networks on CPU take ~7 s per frame (~25 min for this clip); "
                  "use --config tiny or --seconds 2 for a quick run", file=sys.stderr)
    else:
        print(f"demo: official weights from {weights}", file=sys.stderr)
    audio = trimmed_audio(args.seconds, args.cache)
    from engine.cli import main as engine_main

    t0 = time.monotonic()
    rc = engine_main(["animate", "--image", str(PORTRAIT), "--audio", str(audio), "--weights", str(weights),
                      "--out", str(args.out), *extra])
    if rc == 0:
        print(f"demo: wrote {args.out} in {time.monotonic() - t0:.0f} s", file=sys.stderr)
    return rc


if __name__ == "__main__":
    sys.exit(main())
