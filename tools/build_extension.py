"""Build the installable extension zip: the add-on + the engine sources it launches.

Layout of the zip (what Blender's installer expects: manifest next to __init__.py at the root):

    blender_manifest.toml  __init__.py  ops_*.py ...  core/contract/ (synced from engine/contract/)  core/...
    engine_src/engine/...           the engine package, run as `<engine python> -m engine`
    engine_src/requirements.txt     the engine's dependencies (from pyproject.toml), for the
                                    preferences' "Create Engine Environment" button

Usage:
    python tools/build_extension.py [--out dist] [--validate] [--blender-ext PATH]

``--validate`` runs Blender's own validator (``blender_ext.py validate``; found inside a bpy
wheel under .venvs/ unless --blender-ext is given) on the finished zip.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXCLUDE_DIRS = {"__pycache__", ".pytest_cache", ".mypy_cache"}
EXCLUDE_SUFFIXES = {".pyc", ".pyo", ".zip", ".npz", ".pth", ".pt", ".bin", ".mp4"}

try:
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python < 3.11
    tomllib = None


def manifest_version() -> str:
    text = (REPO / "blender_manifest.toml").read_text()
    if tomllib is not None:
        return tomllib.loads(text)["version"]
    for line in text.splitlines():  # pragma: no cover
        if line.startswith("version"):
            return line.split("=", 1)[1].strip().strip('"')
    raise ValueError("no version in blender_manifest.toml")


def engine_requirements() -> list[str]:
    """The engine's runtime dependencies, read from pyproject.toml [project].dependencies."""
    if tomllib is None:  # pragma: no cover
        raise RuntimeError("Python 3.11+ is needed to read pyproject.toml")
    return list(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"])


def _files(root: Path):
    for path in sorted(root.rglob("*")):
        if path.is_dir() or any(part in EXCLUDE_DIRS for part in path.relative_to(root).parts):
            continue
        if path.suffix in EXCLUDE_SUFFIXES:
            continue
        yield path


def build(out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    zpath = out_dir / f"joyvasa_blender-{manifest_version()}.zip"
    addon, engine = REPO / "joyvasa_blender", REPO / "engine"
    with zipfile.ZipFile(zpath, "w", zipfile.ZIP_DEFLATED) as z:
        z.write(REPO / "blender_manifest.toml", "blender_manifest.toml")
        for path in _files(addon):
            z.write(path, path.relative_to(addon).as_posix())
        for path in _files(engine):
            z.write(path, ("engine_src/engine/" + path.relative_to(engine).as_posix()))
        reqs = "# engine requirements (generated from pyproject.toml by tools/build_extension.py)\n"
        z.writestr("engine_src/requirements.txt", reqs + "\n".join(engine_requirements()) + "\n")
    return zpath


def find_blender_ext() -> Path | None:
    for cand in sorted(REPO.glob(".venvs/bpy-*/lib/python3*/site-packages/bpy/*/scripts/addons_core/bl_pkg/cli/blender_ext.py"),
                       reverse=True):
        return cand
    return None


def validate(zpath: Path, blender_ext: Path | None) -> int:
    blender_ext = blender_ext or find_blender_ext()
    if blender_ext is None:
        print("no blender_ext.py found (run tools/setup_bpy_envs.sh or pass --blender-ext)", file=sys.stderr)
        return 2
    cp = subprocess.run([sys.executable, str(blender_ext), "validate", str(zpath)], capture_output=True, text=True)
    print((cp.stdout + cp.stderr).strip())
    return cp.returncode


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "dist")
    ap.add_argument("--validate", action="store_true")
    ap.add_argument("--blender-ext", type=Path)
    args = ap.parse_args()
    zpath = build(args.out)
    print(f"built {zpath} ({zpath.stat().st_size // 1024} KiB)")
    return validate(zpath, args.blender_ext) if args.validate else 0


if __name__ == "__main__":
    raise SystemExit(main())
