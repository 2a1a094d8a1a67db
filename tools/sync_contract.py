"""Copy the contract package ``engine/contract/`` verbatim into ``joyvasa_blender/core/contract/``.

Why whole files: the add-on never imports the engine (it runs inside Blender's Python, the
engine in its own venv), yet both must speak the same protocol, read the same motion files and
project expressions the same way. Copying whole files (diffusers' "Copied from" without the
regular expressions) keeps one source and makes a drift a one-line test failure.

    python tools/sync_contract.py --check    # exit 1 and list what differs (the tests run this)
    python tools/sync_contract.py --fix      # copy the engine's files over the add-on's

``--check`` also refuses a contract file that imports the rest of the engine (or anything but
the standard library, numpy and its sibling contract files). stdlib only.
"""
from __future__ import annotations

import argparse
import ast
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO / "engine" / "contract"
COPY = REPO / "joyvasa_blender" / "core" / "contract"
SUFFIXES = (".py", ".json")
#: what a contract file may import besides its sibling files (relative imports)
ALLOWED_IMPORTS = {"numpy"} | set(sys.stdlib_module_names)


def contract_files(folder: Path) -> dict[str, Path]:
    """name -> path of every contract file (``*.py``, ``*.json``) directly in ``folder``."""
    if not folder.is_dir():
        return {}
    return {p.name: p for p in sorted(folder.iterdir()) if p.is_file() and p.suffix in SUFFIXES}


def import_problems(path: Path) -> list[str]:
    """Absolute imports of ``path`` outside ALLOWED_IMPORTS (a contract file must stand alone)."""
    problems = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module or ""]
        else:
            continue
        problems += [f"{path.relative_to(REPO)}:{node.lineno} imports {name}" for name in names
                     if name.split(".")[0] not in ALLOWED_IMPORTS]
    return problems


def differences() -> list[str]:
    """Every way the add-on's copy differs from the source, and every forbidden import."""
    src, dst = contract_files(SOURCE), contract_files(COPY)
    out = [p for path in src.values() if path.suffix == ".py" for p in import_problems(path)]
    for name, path in src.items():
        if name not in dst:
            out.append(f"{(COPY / name).relative_to(REPO)} is missing")
        elif dst[name].read_bytes() != path.read_bytes():
            out.append(f"{dst[name].relative_to(REPO)} differs from {path.relative_to(REPO)}")
    out += [f"{path.relative_to(REPO)} has no source in engine/contract/" for name, path in dst.items()
            if name not in src]
    return out


def fix() -> list[str]:
    """Make the copy equal the source; returns what was written or removed."""
    COPY.mkdir(parents=True, exist_ok=True)
    src, dst = contract_files(SOURCE), contract_files(COPY)
    done = []
    for name, path in src.items():
        if name not in dst or dst[name].read_bytes() != path.read_bytes():
            shutil.copyfile(path, COPY / name)
            done.append(f"copied {path.relative_to(REPO)} -> {(COPY / name).relative_to(REPO)}")
    for name, path in dst.items():
        if name not in src:
            path.unlink()
            done.append(f"removed {path.relative_to(REPO)}")
    return done


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", action="store_true", help="exit 1 if the add-on's copy differs")
    mode.add_argument("--fix", action="store_true", help="copy engine/contract/ over the add-on's copy")
    args = ap.parse_args(argv)
    if args.fix:
        for line in fix():
            print(line)
    problems = differences()
    for line in problems:
        print(line, file=sys.stderr)
    if problems:
        print("run: python tools/sync_contract.py --fix (edit only engine/contract/; imports: stdlib, numpy, "
              "sibling contract files)", file=sys.stderr)
        return 1
    if args.check:
        print(f"contract in sync: {len(contract_files(SOURCE))} files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
