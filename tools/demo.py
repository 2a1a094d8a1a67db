"""The README's main job: animate the bundled portrait with the bundled speech into ``out/``.

    python tools/demo.py                        # official weights from --weights / $JOYVASA_WEIGHTS
    python tools/demo.py --weights DIR          # the full example, the real thing
    python tools/demo.py --full                 # no weights: render every frame anyway (slow on CPU)

With the official weights it renders the whole example (~9 s, 225 frames) into ``out/demo.mp4``.
Without them it cannot show a face, so it does the honest thing that finishes in about a minute
and a half on 2 CPU cores: it writes *synthetic* weights of the official sizes (random numbers,
flagged by a SYNTHETIC_WEIGHTS.json marker) into ``.cache/synthetic-weights/official``, renders a
**preview** of the full example (``engine animate --preview``: every 10th frame over the full
soundtrack + a contact sheet) with exactly the networks and code path of the real run, and
reports what it produced, the measured time per frame, what the full render would take on this
machine and how to get the real weights.

On a CPU with native bfloat16 (AVX512-BF16 / AMX) it renders in bfloat16: ``bench render``
measured it ~3x faster than float32 there (docs/benchmarks.md). Extra arguments
after ``--`` go to ``python -m engine animate`` (e.g. ``-- --dtype float32`` or ``-- --device cuda``).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(1, str(REPO / "tools"))

PORTRAIT = REPO / "examples" / "portrait.jpg"
SPEECH = REPO / "examples" / "speech.wav"
FETCH_HINT = (".venv/bin/python -m engine fetch --out weights   (or see docs/install.md), then:\n"
              "      .venv/bin/python tools/demo.py --weights weights")


def say(msg: str) -> None:
    print(f"demo: {msg}", file=sys.stderr, flush=True)


def official_weights(arg: str | None) -> Path | None:
    """The weights folder if it holds every required file and is not synthetic (cheap checks)."""
    raw = arg or os.environ.get("JOYVASA_WEIGHTS", "")
    if not raw:
        return None
    from engine.weights import WeightsLayout, synthetic_info

    layout = WeightsLayout(Path(raw).expanduser())
    needed = [*layout.liveportrait_files().values(), layout.motion_generator, layout.motion_template,
              layout.audio_encoder_dir() / "config.json"]
    missing = [str(p) for p in needed if not p.is_file()]
    if missing:
        say(f"{raw} lacks {len(missing)} weight file(s), e.g. {missing[0]}")
        return None
    if synthetic_info(layout.root) is not None:
        say(f"{raw} holds synthetic weights (SYNTHETIC_WEIGHTS.json), not the official ones")
        return None
    return layout.root


def synthetic_weights(config: str, cache: Path) -> Path:
    """Synthetic weights of ``config`` size in the cache, written once (marked as synthetic)."""
    from engine.weights import synthetic_info

    folder = cache / "synthetic-weights" / config
    done = folder / ".complete"
    if not (done.is_file() and synthetic_info(folder)):
        import make_synthetic_weights

        say(f"writing synthetic {config}-size weights to {folder} (once; 10 CPU-seconds and 1.5 GB at official size)")
        if make_synthetic_weights.main(["--config", config, "--out", str(folder)]) != 0:
            raise SystemExit("demo: could not create synthetic weights")
        done.write_text("ok\n")
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


def fast_dtype_args(extra: list[str]) -> list[str]:
    """``--dtype bfloat16`` when running on a CPU with native bf16 and the user chose nothing."""
    if any(a == "--dtype" or a.startswith("--dtype=") or a == "--device" or a.startswith("--device=")
           for a in extra):
        return []
    from engine.device import cpu_has_native_bf16, select_device

    if select_device("auto").type == "cpu" and cpu_has_native_bf16():
        return ["--dtype", "bfloat16"]
    return []


def run_engine(argv: list[str]) -> tuple[int, list[dict[str, Any]]]:
    """``python -m engine animate ... --progress json``: its readable progress (with ETA) goes
    straight to the terminal, its events are collected for the summary. Ctrl-C cancels it cleanly."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.Popen([sys.executable, "-m", "engine", "animate", *argv, "--progress", "json"],
                            stdout=subprocess.PIPE, text=True, env=env, cwd=REPO)
    events: list[dict[str, Any]] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            try:
                events.append(json.loads(line))
            except ValueError:
                continue
        return proc.wait(), events
    except KeyboardInterrupt:
        proc.wait()
        return 130, events


def render_rate(events: list[dict[str, Any]]) -> float | None:
    """Frames per second of the render stage (the engine's own warm-up-free estimate)."""
    rates = [e.get("rate") for e in events if e.get("type") == "progress" and e.get("stage") == "render"]
    rates = [r for r in rates if r]
    return rates[-1] if rates else None


def summary(events: list[dict[str, Any]], *, synthetic: bool, preview: bool, audio_s: float,
            wall_s: float) -> list[str]:
    """What was produced, what it is worth, what the real thing costs, how to get it."""
    from engine.weights import SYNTHETIC_NOTE

    outputs = next((e.get("outputs", {}) for e in events if e.get("type") == "done"), {})
    lines = [f"finished in {wall_s:.0f} s. Produced:"]
    for kind, path in outputs.items():
        lines.append(f"  {kind:14s} {os.path.relpath(path, Path.cwd())}")
    if synthetic:
        lines.append(f"  {SYNTHETIC_NOTE.upper()}: the video shows noise, not a talking face. It proves "
                     "that the whole pipeline (audio -> motion -> official-size renderer -> mp4 with sound) runs here.")
    rate = render_rate(events)
    totals = [e["total"] for e in events if e.get("type") == "progress" and e.get("stage") == "render"]
    if preview and totals:
        lines.append(f"  It is a PREVIEW (engine animate --preview): {totals[-1]} of the {round(audio_s * 25)} frames, "
                     "evenly spread over the full soundtrack, plus the contact sheet.")
        if rate:
            full = audio_s * 25 / rate
            lines.append(f"  Measured {1 / rate:.1f} s per frame: the full {audio_s:.0f} s example "
                         f"({round(audio_s * 25)} frames) takes ~{full / 60:.0f} min of rendering on this machine "
                         "(`python tools/demo.py --full`).")
    elif rate:
        lines.append(f"  Rendered at {1 / rate:.2f} s per frame.")
    if synthetic:
        lines.append("  The real thing: get the official weights with\n      " + FETCH_HINT)
    return lines


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
    p.add_argument("--full", action="store_true", help="without official weights: render every frame, not a preview")
    p.add_argument("--preview", action="store_true", help="with official weights: a preview instead of the full render")
    p.add_argument("--out", type=Path, default=REPO / "out" / "demo.mp4")
    p.add_argument("--seconds", type=float, default=None, help="use only the first S seconds of the speech")
    p.add_argument("--cache", type=Path, default=REPO / ".cache")
    args = p.parse_args(argv)

    t0 = time.monotonic()
    weights = official_weights(args.weights)
    synthetic = weights is None
    if synthetic:
        from engine.weights import SYNTHETIC_NOTE

        say("NO official weights found (--weights DIR or $JOYVASA_WEIGHTS) -> using " + SYNTHETIC_NOTE + ".")
        weights = synthetic_weights(args.config, args.cache)
    else:
        say(f"official weights from {weights}")
    preview = args.preview or (synthetic and not args.full)
    audio = trimmed_audio(args.seconds, args.cache)
    import soundfile as sf

    audio_s = sf.info(str(audio)).duration
    engine_args = ["--image", str(PORTRAIT), "--audio", str(audio), "--weights", str(weights), "--out", str(args.out),
                   *(["--preview"] if preview else []), *fast_dtype_args(extra), *extra]
    say(("preview of" if preview else "rendering") + f" the {audio_s:.1f} s example -> {args.out}"
        + (" (bfloat16: the faster measured path on this CPU)" if "bfloat16" in engine_args else ""))
    rc, events = run_engine(engine_args)
    if rc != 0:
        err = next((e for e in events if e.get("type") == "error"), None)
        say(f"engine animate failed (exit {rc})" + (f": [{err['code']}] {err['message']}" if err else ""))
        return rc
    for line in summary(events, synthetic=synthetic, preview=preview, audio_s=audio_s,
                        wall_s=time.monotonic() - t0):
        say(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
