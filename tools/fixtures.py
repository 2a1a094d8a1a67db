"""The test fixtures that ship with the repository, unpacked on demand.

Why: the parity fixtures (official-format checkpoints with random weights + the arrays that the
unmodified upstream code computed from them) must be in every clone, so that a user can run the
parity tests that back our main claim. They are ~15 MB of float32 data (barely compressible) and
contain .pth/.pt/.bin files, which the project keeps out of git as loose files. So they are stored
as one reproducible ``.tar.xz`` split into parts under 2 MiB (``tests/fixtures/NAME.tar.xz.NN``)
with a SHA-256 manifest, and unpacked once into ``.cache/fixtures/NAME-<hash>/`` (git-ignored;
a new archive gets a new folder, a damaged one is refused).

    python tools/fixtures.py unpack upstream_tiny_seed0      # prints the folder
    python tools/fixtures.py pack SRC_DIR                     # maintainers: re-create the parts

stdlib only: the tests and the README's parity command call it before anything else is imported.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"
CACHE = REPO / ".cache" / "fixtures"
PART_BYTES = 1_900_000  # < 2 MiB: the repository's per-file limit


class FixtureError(RuntimeError):
    """A fixture archive is missing or damaged (message says what to do)."""


def _manifest_path(name: str) -> Path:
    return FIXTURES / f"{name}.tar.xz.sha256.json"


def _parts(name: str) -> list[Path]:
    return sorted(FIXTURES.glob(f"{name}.tar.xz.[0-9][0-9]"))


def _read_archive(name: str) -> tuple[bytes, str]:
    """Concatenate and verify the parts; returns (archive bytes, sha256)."""
    man_path = _manifest_path(name)
    if not man_path.is_file():
        raise FixtureError(f"no fixture manifest {man_path} (is this a complete clone?)")
    manifest = json.loads(man_path.read_text())
    parts = _parts(name)
    if [p.name for p in parts] != manifest["parts"]:
        raise FixtureError(f"fixture {name}: expected parts {manifest['parts']}, found {[p.name for p in parts]}")
    data = b"".join(p.read_bytes() for p in parts)
    digest = hashlib.sha256(data).hexdigest()
    if digest != manifest["sha256"]:
        raise FixtureError(f"fixture {name}: archive sha256 {digest[:12]}... != manifest {manifest['sha256'][:12]}... "
                           "(damaged or a Git LFS pointer; re-clone the repository)")
    return data, digest


def unpack(name: str) -> Path:
    """The unpacked fixture folder (unpacks on first use; safe to call from parallel processes)."""
    man_path = _manifest_path(name)
    if man_path.is_file():
        key = json.loads(man_path.read_text())["sha256"][:12]
        target = CACHE / f"{name}-{key}"
        if (target / ".complete").is_file():
            return target / name
    data, digest = _read_archive(name)
    target = CACHE / f"{name}-{digest[:12]}"
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=CACHE))
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:xz") as tar:
            tar.extractall(tmp, filter="data")
        (tmp / ".complete").write_text(digest + "\n")
        try:
            os.rename(tmp, target)
        except OSError:  # another process finished first
            if not (target / ".complete").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target / name


def pack(src: Path) -> list[Path]:
    """Write tests/fixtures/<src.name>.tar.xz.NN + manifest, byte-reproducibly (sorted, fixed mtime/owner)."""
    name = src.name
    tar = subprocess.run(["tar", "-C", str(src.parent), "--sort=name", "--mtime=@0", "--owner=0", "--group=0",
                          "--numeric-owner", "--mode=u+rw,go+r,a-s", "-cf", "-", name],
                         check=True, capture_output=True).stdout
    data = subprocess.run(["xz", "-9e", "-T1", "-c"], input=tar, check=True, capture_output=True).stdout
    for old in _parts(name):
        old.unlink()
    FIXTURES.mkdir(parents=True, exist_ok=True)
    parts = []
    for i in range(0, len(data), PART_BYTES):
        p = FIXTURES / f"{name}.tar.xz.{i // PART_BYTES:02d}"
        p.write_bytes(data[i:i + PART_BYTES])
        parts.append(p)
    files = sorted(str(f.relative_to(src)) for f in src.rglob("*") if f.is_file())
    _manifest_path(name).write_text(json.dumps({
        "name": name, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data),
        "parts": [p.name for p in parts], "files": files,
        "unpack": f"python tools/fixtures.py unpack {name}"}, indent=1) + "\n")
    return parts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    u = sub.add_parser("unpack", help="unpack (once) and print the folder")
    u.add_argument("name")
    pk = sub.add_parser("pack", help="re-create tests/fixtures/<name>.tar.xz.NN from a folder")
    pk.add_argument("src", type=Path)
    args = ap.parse_args(argv)
    try:
        if args.cmd == "unpack":
            print(unpack(args.name))
        else:
            for p in pack(args.src):
                print(p.relative_to(REPO), p.stat().st_size)
    except FixtureError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
