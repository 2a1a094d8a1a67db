"""Make the README's picture (docs/img/overview.png) with the project's own commands.

    .venv/bin/python tools/docs_picture.py [--out docs/img/overview.png] [--work DIR]

Why a script: the picture must be reproducible from a clone and honest about what it shows.
Inputs are the freely licensed examples (examples/README.md: NASA portrait, CC0 speech). Steps:

1. ``engine crop --json --out`` frames the face (real detector, real landmarks: no weights needed);
2. ``tools/make_synthetic_weights.py --config tiny`` writes *random* weights (no real weights can
   be downloaded where this runs);
3. ``engine motion`` and ``engine animate --preview`` run the real pipeline on those weights;
4. ``tools/docs_keys_bpy.py`` keys that motion onto a small rig with the installed extension inside
   a bpy wheel (``--bpy``, default: the newest ``.venvs/bpy-*``) and reads the F-curves back;
5. matplotlib lays out: the framing, the 512x512 crop, a preview frame and the keyed curves.

Panels 3 and 4 come from random weights: the caption printed on them says so. The voice level
(``vad_db``) is measured from the audio and is real.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
PORTRAIT = REPO / "examples" / "portrait.jpg"
SPEECH = REPO / "examples" / "speech.wav"
#: saturated and far apart, so the 256-colour palette keeps them apart
LINE_COLOURS = ("#0050e0", "#ff8c00", "#d00000")
SYNTHETIC_NOTE = "tiny SYNTHETIC weights (random numbers): shows the pipeline runs, not what real weights give"


def run(*argv: str) -> str:
    """Run one command of ours, fail loudly with its stderr."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    proc = subprocess.run([sys.executable, *argv], cwd=REPO, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return proc.stdout


def find_bpy_python(arg: Path | None) -> Path:
    """The bpy wheel's interpreter that keys the take (step 4)."""
    if arg is not None:
        return arg
    found = sorted((REPO / ".venvs").glob("bpy-*/bin/python"),
                   key=lambda p: tuple(int(x) for x in p.parent.parent.name[4:].split(".")))
    if not found:
        raise SystemExit("no bpy venv under .venvs/: run tools/setup_bpy_envs.sh or pass --bpy PYTHON")
    return found[-1]


def make_inputs(work: Path, bpy_python: Path) -> dict[str, Path | dict]:
    """Steps 1-4: framing, synthetic weights, motion, preview, keys (each skipped if already there)."""
    crop_png, crop_json = work / "crop.png", work / "crop.json"
    if not crop_json.is_file():
        out = run("-m", "engine", "crop", "--image", str(PORTRAIT), "--out", str(crop_png), "--json")
        crop_json.write_text(out)
    weights = work / "weights"
    if not (weights / "SYNTHETIC_WEIGHTS.json").is_file():
        run("tools/make_synthetic_weights.py", "--config", "tiny", "--out", str(weights))
    motion = work / "motion.npz"
    if not motion.is_file():
        run("-m", "engine", "motion", "--audio", str(SPEECH), "--weights", str(weights), "--out", str(motion),
            "--seed", "0")
    video = work / "preview.mp4"
    if not video.is_file():
        run("-m", "engine", "animate", "--image", str(PORTRAIT), "--audio", str(SPEECH), "--weights", str(weights),
            "--motion", str(motion), "--out", str(video), "--preview")
    keys = work / "keys.json"
    if not keys.is_file():
        proc = subprocess.run([str(bpy_python), "tools/docs_keys_bpy.py", "--motion", str(motion), "--out", str(keys)],
                              cwd=REPO, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"keying in bpy failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return {"crop_png": crop_png, "framing": json.loads(crop_json.read_text()), "motion": motion,
            "video": video, "keys": json.loads(keys.read_text())}


def preview_frames(video: Path, picks: tuple[int, ...]) -> list[np.ndarray]:
    """A few decoded frames of the preview clip (PyAV, the engine's own video dependency)."""
    import av

    frames = []
    with av.open(str(video)) as box:
        for i, frame in enumerate(box.decode(video=0)):
            if i in picks:
                frames.append(frame.to_ndarray(format="rgb24"))
    return frames


def compose(inputs: dict, out: Path) -> None:
    """Step 4: one PNG, four panels, each captioned with what produced it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    framing = inputs["framing"]
    portrait = np.asarray(Image.open(PORTRAIT).convert("RGB"))
    m = np.asarray(framing["M_c2o"], dtype=float)
    side = framing["crop_size"]
    corners = np.array([[0, 0, 1], [side, 0, 1], [side, side, 1], [0, side, 1], [0, 0, 1]], dtype=float) @ m.T
    pts = np.asarray(framing["points"], dtype=float)

    fig = plt.figure(figsize=(12.0, 4.0), dpi=100)
    grid = fig.add_gridspec(3, 4, width_ratios=[1, 1, 1, 1.7])

    ax = fig.add_subplot(grid[:, 0])
    ax.imshow(portrait)
    ax.plot(corners[:, 0], corners[:, 1], color="#ffd000", lw=1.5)
    ax.scatter(pts[:, 0], pts[:, 1], s=10, color="#00e0ff")
    ax.set_xlim(0, portrait.shape[1])
    ax.set_ylim(portrait.shape[0], 0)
    ax.set_title(f"1  engine crop: {framing['method']}\nlandmarks + crop, roll {framing['angle_deg']:.1f}°",
                 fontsize=8)
    ax.axis("off")

    ax = fig.add_subplot(grid[:, 1])
    ax.imshow(np.asarray(Image.open(inputs["crop_png"]).convert("RGB")))
    ax.set_title(f"2  the 512² crop the networks see\nlip_open {framing['lip_open']}", fontsize=8)
    ax.axis("off")

    (frame,) = preview_frames(inputs["video"], (11,))
    ax = fig.add_subplot(grid[:, 2])
    ax.imshow(frame)
    ax.set_title("3  animate --preview, pasted back\n(synthetic weights: a grey face)", fontsize=8)
    ax.axis("off")

    keys = inputs["keys"]
    t = (np.asarray(keys["frames"]) - keys["frames"][0]) / float(keys["fps"])
    euler = np.asarray(keys["head_euler_deg"])
    ax = fig.add_subplot(grid[0, 3])
    for i, name in enumerate(("head X", "head Y", "head Z")):
        ax.plot(t, euler[:, i], lw=0.8, label=name, color=LINE_COLOURS[i])
    ax.set_ylabel("bone, deg", fontsize=7)
    ax.legend(fontsize=6, ncol=3, loc="upper left")
    ax.set_title(f"4  keyed in Blender {keys['blender']} by the add-on, read back\n"
                 "(synthetic weights: random motion)", fontsize=8)
    ax.tick_params(labelsize=6, labelbottom=False)
    ax = fig.add_subplot(grid[1, 3], sharex=ax)
    for i, name in enumerate(("jawOpen", "mouthSmileLeft", "eyeBlinkLeft")):
        ax.plot(t, keys["shape_keys"][name], lw=0.8, label=name, color=LINE_COLOURS[i])
    ax.set_ylabel("shape key", fontsize=7)
    ax.legend(fontsize=6, ncol=3, loc="upper left")
    ax.tick_params(labelsize=6, labelbottom=False)
    motion = np.load(inputs["motion"], allow_pickle=False)
    tm = np.arange(int(motion["n_frames"])) / float(motion["fps"]) + float(motion["audio_offset_s"])
    ax = fig.add_subplot(grid[2, 3], sharex=ax)
    ax.plot(tm, np.maximum(motion["vad_db"], -60), lw=0.8, color="#444")
    ax.set_ylabel("voice dB\n(real)", fontsize=7)
    ax.set_xlabel("audio time, s (examples/speech.wav)", fontsize=7)
    ax.tick_params(labelsize=6)

    fig.text(0.5, 0.01, SYNTHETIC_NOTE + " · inputs: examples/ (public domain / CC0) · tools/docs_picture.py",
             ha="center", fontsize=7, color="#a00000")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".joyvasa-part.{out.name}")
    fig.savefig(tmp, format="png")
    plt.close(fig)
    # 256 colours keep the photos readable at a third of the size (the README loads it)
    Image.open(tmp).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(tmp, format="PNG",
                                                                                               optimize=True)
    tmp.replace(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "img" / "overview.png")
    ap.add_argument("--work", type=Path, default=None, help="keep the intermediate files here (default: a temp dir)")
    ap.add_argument("--bpy", type=Path, default=None, help="a bpy wheel's Python (default: the newest .venvs/bpy-*)")
    args = ap.parse_args(argv)
    bpy_python = find_bpy_python(args.bpy)
    if args.work is not None:
        args.work.mkdir(parents=True, exist_ok=True)
        compose(make_inputs(args.work, bpy_python), args.out)
    else:
        with tempfile.TemporaryDirectory(prefix="joyvasa-docs-") as tmp:
            compose(make_inputs(Path(tmp), bpy_python), args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
