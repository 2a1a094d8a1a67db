"""Safe outputs: results appear under their final name only when complete, and nothing the
user did not ask to replace is ever removed.

Why: the add-on (and users) must never pick up a half-written motion file or video after a
crash or a cancel, and a ``--frames-dir`` pointing at a folder that already holds the user's
work must never wipe it. Files are written to a temp name in the same folder, then
``os.replace``-d. Every temp name starts with :data:`PART_PREFIX` and embeds the final name
and the writer's process id, so the next run of the same output can recognise and remove what
a killed run (SIGKILL cannot be caught) left behind, without touching a live run's files.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from engine.errors import OutputError

#: every partial output (file or folder) starts with this
PART_PREFIX = ".joyvasa-part."
#: the files a PNG sequence consists of; anything else in its folder belongs to the user
FRAME_RE = re.compile(r"^frame_\d{5,}\.png$")
#: Windows cannot probe a pid safely (os.kill terminates); partials older than this are stale there
_STALE_AGE_S = 24 * 3600


def _default_mode(path: Path, base: int) -> None:
    """mkstemp/mkdtemp create 0600/0700; give the final output the usual umask-based mode."""
    umask = os.umask(0)
    os.umask(umask)
    with contextlib.suppress(OSError):
        os.chmod(path, base & ~umask)


def _parent(final: Path) -> Path:
    return final.parent if str(final.parent) else Path(".")


def ensure_writable_dir(folder: Path) -> None:
    """Create ``folder`` if needed and prove we can write there (clear error otherwise)."""
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"output folder {folder} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=f"{PART_PREFIX}probe.", delete=True):
            pass
    except OSError as exc:
        raise OutputError(f"cannot write to output folder {folder}: {exc.strerror or exc}") from exc


def _host() -> str:
    """This machine's name as it appears in partial names (several machines may share a folder)."""
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname() or "host")[:32] or "host"


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    if os.name == "nt":  # no safe liveness probe (os.kill terminates): callers fall back to age
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: exists, another user's
        return True
    return True


def _old(entry: Path) -> bool:
    try:
        return time.time() - entry.lstat().st_mtime > _STALE_AGE_S
    except OSError:
        return False


#: current partial names: .joyvasa-part.<output name>.<host>.<pid>.<random>[suffix]
_CURRENT = re.compile(rf"^{re.escape(PART_PREFIX)}(?P<name>.+)\.(?P<host>[A-Za-z0-9-]+)\.(?P<pid>\d+)\."
                      r"[A-Za-z0-9_]+(\.[A-Za-z0-9]+)?$")


def _legacy_patterns(final: Path) -> list[re.Pattern[str]]:
    """Names used before issue #13: ``.<stem>.<random>.part<suffix>`` and ``.<name>.part-<random>``."""
    name, stem, sfx = re.escape(final.name), re.escape(final.stem), re.escape(final.suffix)
    return [re.compile(rf"^\.{stem}\.[a-z0-9_]{{8}}\.part{sfx}$"), re.compile(rf"^\.{name}\.part-[a-z0-9_]{{8}}$")]


def _stale(entry: Path, final: Path) -> bool:
    m = _CURRENT.match(entry.name)
    if m is not None:
        if m.group("host") == _host() and os.name != "nt":
            return not _pid_alive(int(m.group("pid")))   # this machine: the writer is gone
        return _old(entry)                               # another machine's (shared folder): by age only
    return any(p.match(entry.name) for p in _legacy_patterns(final))


def clean_stale_partials(final: Path) -> list[Path]:
    """Remove partials in ``final``'s folder left by runs that no longer exist (any output name:
    the add-on names its renders by time, so a re-run rarely has the same name); returns them.

    Never touched: partials of a live process on this machine, partials of other machines that
    are less than a day old, and anything without our prefix (except the exact pre-#13 names of
    ``final`` itself)."""
    final = Path(final)
    removed: list[Path] = []
    try:
        entries = list(_parent(final).iterdir())
    except OSError:
        return removed
    for entry in entries:
        if not entry.name.startswith(".") or not _stale(entry, final):
            continue
        with contextlib.suppress(OSError):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
            removed.append(entry)
    return removed


def _part_prefix(final: Path) -> str:
    return f"{PART_PREFIX}{final.name}.{_host()}.{os.getpid()}."


@contextlib.contextmanager
def atomic_path(final: Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temp path next to ``final``; rename it to ``final`` on success, delete on error.

    ``suffix`` keeps an extension some writers need (e.g. ``.mp4`` for the container guess).
    """
    final = Path(final)
    check_output_file(final)
    clean_stale_partials(final)
    sfx = suffix if suffix is not None else final.suffix
    fd, tmp_name = tempfile.mkstemp(dir=_parent(final), prefix=_part_prefix(final), suffix=sfx)
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


def check_output_file(final: Path) -> None:
    """The folder of ``final`` is writable and ``final`` is not a folder (checked before any work)."""
    final = Path(final)
    if final.is_dir():
        raise OutputError(f"output {final} is a folder; give a file name such as {final / 'out'}{final.suffix or ''}")
    ensure_writable_dir(_parent(final))


@dataclass(frozen=True)
class FramesOutput:
    """Where a PNG sequence goes and what may be touched there."""

    folder: Path
    overwrite: bool = False

    def ours(self) -> list[Path]:
        """Existing frame files of a previous run (the only files we may replace or remove)."""
        if not self.folder.is_dir():
            return []
        return sorted(p for p in self.folder.iterdir() if FRAME_RE.match(p.name) and p.is_file())

    def foreign(self) -> list[Path]:
        if not self.folder.is_dir():
            return []
        return sorted(p for p in self.folder.iterdir() if not (FRAME_RE.match(p.name) and p.is_file()))

    def check(self) -> None:
        """Refuse a file, an unwritable folder, or (without ``overwrite``) a folder holding user files."""
        folder = self.folder
        if folder.exists() and not folder.is_dir():
            raise OutputError(f"--frames-dir {folder} is a file, not a folder")
        ensure_writable_dir(_parent(folder))
        if folder.is_dir():
            if not os.access(folder, os.W_OK | os.X_OK):
                raise OutputError(f"cannot write to --frames-dir {folder}: permission denied")
            foreign = self.foreign()
            if foreign and not self.overwrite:
                names = ", ".join(p.name for p in foreign[:3]) + (" ..." if len(foreign) > 3 else "")
                raise OutputError(
                    f"--frames-dir {folder} already holds {len(foreign)} file(s) that are not frames "
                    f"({names}); choose a new or empty folder, or pass --overwrite to write the frames "
                    "next to them (only frame_NNNNN.png files are ever replaced)")


@contextlib.contextmanager
def frames_output(folder: Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temp folder for frames; on success they land in ``folder``.

    A new ``folder`` appears whole (one rename). In an existing folder only our own frame files
    are replaced, and frames of an earlier, longer run that this run did not write are removed;
    nothing else there is touched. On error or cancel the temp folder goes and ``folder`` is
    exactly as it was.
    """
    target = FramesOutput(Path(folder), overwrite)
    target.check()
    final = target.folder
    clean_stale_partials(final)
    tmp = Path(tempfile.mkdtemp(dir=_parent(final), prefix=_part_prefix(final)))
    try:
        yield tmp
        if not final.exists():
            _default_mode(tmp, 0o777)
            os.replace(tmp, final)
            return
        target.check()  # the folder may have changed while we rendered
        written = {p.name for p in tmp.iterdir()}
        for name in sorted(written):
            os.replace(tmp / name, final / name)
        for old in target.ours():
            if old.name not in written:
                old.unlink()
        shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
