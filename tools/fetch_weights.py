"""Download the official weights into the layout the engine expects, then verify them.

    python tools/fetch_weights.py --out DIR [--animals] [--detector]

Sources (Hugging Face):
  KwaiVGI/LivePortrait                 liveportrait/...        -> DIR/liveportrait/...
  jdh-algo/JoyVASA                     motion_generator/...    -> DIR/JoyVASA/...
  TencentGameMate/chinese-hubert-base  config.json ...         -> DIR/TencentGameMate:chinese-hubert-base/
Downloads resume where they stopped (huggingface_hub keeps partial files). Afterwards every
file is loaded with the engine's strict loaders (the ``doctor`` checks). Without network
access the script says so within seconds and points to the manual route (README "Weights").
"""
from __future__ import annotations

import argparse
import os
import socket
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

HUBERT_DIR = "chinese-hubert-base" if os.name == "nt" else "TencentGameMate:chinese-hubert-base"

#: (repo, file in the repo, sub-folder of DIR it goes under (keeping the repo path))
FILES: list[tuple[str, str, str]] = [
    ("KwaiVGI/LivePortrait", "liveportrait/base_models/appearance_feature_extractor.pth", ""),
    ("KwaiVGI/LivePortrait", "liveportrait/base_models/motion_extractor.pth", ""),
    ("KwaiVGI/LivePortrait", "liveportrait/base_models/warping_module.pth", ""),
    ("KwaiVGI/LivePortrait", "liveportrait/base_models/spade_generator.pth", ""),
    ("KwaiVGI/LivePortrait", "liveportrait/retargeting_models/stitching_retargeting_module.pth", ""),
    ("jdh-algo/JoyVASA", "motion_generator/motion_generator_hubert_chinese.pt", "JoyVASA"),
    ("jdh-algo/JoyVASA", "motion_template/motion_template.pkl", "JoyVASA"),
    ("TencentGameMate/chinese-hubert-base", "config.json", HUBERT_DIR),
    ("TencentGameMate/chinese-hubert-base", "preprocessor_config.json", HUBERT_DIR),
]
ANIMAL_FILES = [("KwaiVGI/LivePortrait", f"liveportrait_animals/base_models/{n}.pth", "")
                for n in ("appearance_feature_extractor", "motion_extractor", "warping_module", "spade_generator")]
DETECTOR_FILES = [("KwaiVGI/LivePortrait", "insightface/models/buffalo_l/det_10g.onnx", ""),
                  ("KwaiVGI/LivePortrait", "insightface/models/buffalo_l/2d106det.onnx", ""),
                  ("KwaiVGI/LivePortrait", "liveportrait/landmark.onnx", "")]

MANUAL = ("Manual route: download the files listed in README.md 'Weights' in a browser (or on a "
          "machine with internet access) and put them under DIR in the same layout, then run "
          "`python -m engine doctor --weights DIR`.")


class Offline(RuntimeError):
    pass


def check_online(host: str = "huggingface.co", port: int = 443, timeout: float = 4.0) -> None:
    """Raise Offline within ``timeout`` seconds if the hub cannot be reached (DNS included)."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip() not in ("", "0"):
        raise Offline("HF_HUB_OFFLINE is set")
    result: list[BaseException | None] = []

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            result.append(None)
        except OSError as exc:
            result.append(exc)

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout)
    if not result:
        raise Offline(f"no answer from {host}:{port} within {timeout:.0f} s")
    if result[0] is not None:
        raise Offline(f"cannot reach {host}:{port}: {result[0]}")


def download(out: Path, files: list[tuple[str, str, str]]) -> list[Path]:
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise SystemExit("huggingface_hub is not installed: pip install 'huggingface_hub>=0.20' "
                         "(or: pip install -e .[fetch])") from None
    paths = []
    for i, (repo, filename, sub) in enumerate(files, 1):
        target_dir = out / sub if sub else out
        print(f"[{i}/{len(files)}] {repo}: {filename}", file=sys.stderr, flush=True)
        path = hf_hub_download(repo_id=repo, filename=filename, local_dir=str(target_dir))
        paths.append(Path(path))
    return paths


def verify(out: Path) -> int:
    from engine.commands.doctor import build_report, print_text

    report = build_report(str(out))
    print_text(report, out=sys.stderr)
    return 0 if report["ok"] else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, type=Path, help="weights folder to fill (created if needed)")
    p.add_argument("--animals", action="store_true", help="also the LivePortrait animal models (--animal)")
    p.add_argument("--detector", action="store_true",
                   help="also InsightFace/landmark ONNX files (LivePortrait-style face crop)")
    p.add_argument("--timeout", type=float, default=4.0, help="seconds to wait for the connectivity check")
    p.add_argument("--verify-only", action="store_true", help="skip downloading; only check DIR")
    args = p.parse_args(argv)
    files = FILES + (ANIMAL_FILES if args.animals else []) + (DETECTOR_FILES if args.detector else [])
    if not args.verify_only:
        try:
            check_online(timeout=args.timeout)
        except Offline as exc:
            print(f"offline: {exc}. Cannot download the weights from Hugging Face here.\n{MANUAL}",
                  file=sys.stderr)
            return 2
        args.out.mkdir(parents=True, exist_ok=True)
        try:
            download(args.out, files)
        except KeyboardInterrupt:
            print("interrupted; run the same command again to resume", file=sys.stderr)
            return 130
        except Exception as exc:  # noqa: BLE001 - network/hub errors: one clear line
            print(f"download failed: {type(exc).__name__}: {exc}\nRun the same command again to resume. {MANUAL}",
                  file=sys.stderr)
            return 1
    return verify(args.out)


if __name__ == "__main__":
    sys.exit(main())
