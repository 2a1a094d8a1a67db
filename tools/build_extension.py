"""Build the installable extension zip: the add-on + the engine sources it launches.

Layout of the zip (what Blender's installer expects: manifest next to __init__.py at the root):

    blender_manifest.toml  __init__.py  ops_*.py ...  core/contract/ (synced from engine/contract/)  core/...
    engine_src/engine/...           the engine package, run as `<engine python> -m engine`
    engine_src/requirements.txt     the engine's dependencies (from pyproject.toml), for the
                                    preferences' "Create Engine Environment" button

Usage:
    python tools/build_extension.py [--out dist] [--validate] [--blender-ext PATH]

``--validate`` runs Blender's own validator on the finished zip, found on its own: ``--blender-ext
PATH`` if given, else a ``blender`` (4.2+) on PATH (``blender --command extension validate``), else
``blender_ext.py`` inside a bpy wheel of the test venvs (``.venvs/bpy-*``, made by
``tools/setup_bpy_envs.sh``). With none of them it says how to get one and exits 2.
"""
from __future__ import annotations

import argparse
import shutil
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


NO_VALIDATOR = ("no Blender extension validator found: install Blender 4.2 or newer and put `blender` on PATH, "
                "or run `bash tools/setup_bpy_envs.sh` once (it makes the bpy test venvs under .venvs/, whose "
                "bpy wheels hold blender_ext.py), or pass --blender-ext PATH/TO/blender_ext.py")


def validator_command(zpath: Path, blender_ext: Path | None = None) -> list[str] | None:
    """How to validate ``zpath``: --blender-ext, then a ``blender`` on PATH, then the bpy venvs' wheel."""
    if blender_ext is not None:
        return [sys.executable, str(blender_ext), "validate", str(zpath)]
    blender = shutil.which("blender")
    if blender:
        return [blender, "--factory-startup", "--command", "extension", "validate", str(zpath)]
    found = find_blender_ext()
    return [sys.executable, str(found), "validate", str(zpath)] if found else None


def validate(zpath: Path, blender_ext: Path | None) -> int:
    cmd = validator_command(zpath, blender_ext)
    if cmd is None:
        print(NO_VALIDATOR, file=sys.stderr)
        return 2
    print(f"validating with: {' '.join(cmd[:-1])}", file=sys.stderr)
    cp = subprocess.run(cmd, capture_output=True, text=True)
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
