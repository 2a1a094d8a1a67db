"""Atomic outputs: results appear under their final name only when complete.

Why: the add-on (and users) must never pick up a half-written motion file or video after a
crash or a cancel. Write to a hidden temp name in the same folder, then ``os.replace``.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from engine.errors import OutputError


def _default_mode(path: Path, base: int) -> None:
    """mkstemp/mkdtemp create 0600/0700; give the final output the usual umask-based mode."""
    umask = os.umask(0)
    os.umask(umask)
    with contextlib.suppress(OSError):
        os.chmod(path, base & ~umask)


def ensure_writable_dir(folder: Path) -> None:
    """Create ``folder`` if needed and prove we can write there (clear error otherwise)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".jv-probe-", delete=True):
            pass
    except OSError as exc:
        raise OutputError(f"cannot write to output folder {folder}: {exc.strerror or exc}") from exc


@contextlib.contextmanager
def atomic_path(final: Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temp path next to ``final``; rename it to ``final`` on success, delete on error.

    ``suffix`` keeps an extension some writers need (e.g. ``.mp4`` for the container guess).
    """
    final = Path(final)
    ensure_writable_dir(final.parent if str(final.parent) else Path("."))
    sfx = suffix if suffix is not None else final.suffix
    fd, tmp_name = tempfile.mkstemp(dir=final.parent, prefix=f".{final.stem}.", suffix=f".part{sfx}")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        _default_mode(tmp, 0o666)
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


@contextlib.contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Like :func:`atomic_path` for a folder (e.g. a PNG sequence). Replaces an old folder."""
    final = Path(final)
    ensure_writable_dir(final.parent if str(final.parent) else Path("."))
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.part-"))
    try:
        yield tmp
        _default_mode(tmp, 0o777)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
