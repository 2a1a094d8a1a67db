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
#: bytes in one file name (ext4, APFS, NTFS): temp names must fit too
NAME_MAX = 255
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


#: what mkstemp/mkdtemp add after the prefix (random letters), plus room for a short suffix
_RANDOM_LEN = 8
_SUFFIX_ROOM = 8


def _part_prefix(final: Path) -> str:
    """The temp-name prefix for ``final``; the embedded name is shortened (never the host or pid,
    which :func:`_stale` reads back) so that a legal 250-byte output name still gets a legal
    temp name."""
    tail = f".{_host()}.{os.getpid()}."
    room = NAME_MAX - _RANDOM_LEN - _SUFFIX_ROOM - len(os.fsencode(PART_PREFIX + tail))
    name = final.name
    while len(os.fsencode(name)) > room:
        name = name[:-1]
    return f"{PART_PREFIX}{name}{tail}"


def check_output_name(final: Path) -> None:
    """An output name the file system can hold (checked before work, not when the file is renamed)."""
    name = Path(final).name
    size = len(os.fsencode(name))
    if size > NAME_MAX:
        raise OutputError(f"output file name {name[:40]}... is {size} bytes long; file systems allow at most "
                          f"{NAME_MAX}: choose a shorter name")


#: Linux inode flags (linux/fs.h): FS_IMMUTABLE_FL, FS_APPEND_FL; FS_IOC_GETFLAGS
_FS_IOC_GETFLAGS = 0x80086601
_LINUX_NO_REPLACE = 0x10 | 0x20


def replace_blocker(path: Path) -> str | None:
    """Why an existing ``path`` cannot be replaced by a rename (None: it can, or it does not exist).

    Why before work: an immutable or append-only file (``chattr +i``, macOS ``chflags uchg``)
    only fails at the final ``os.replace``, after the whole render."""
    import stat

    try:
        st = os.lstat(path)
    except OSError:
        return None
    flags = getattr(st, "st_flags", 0)
    no_replace = sum(getattr(stat, n, 0) for n in ("UF_IMMUTABLE", "SF_IMMUTABLE", "UF_APPEND", "SF_APPEND"))
    if flags & no_replace:
        return "it is marked immutable or append-only (chflags)"
    if os.name == "posix" and stat.S_ISREG(st.st_mode):
        with contextlib.suppress(OSError, ImportError):
            import array
            import fcntl

            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0))
            try:
                buf = array.array("l", [0])
                fcntl.ioctl(fd, _FS_IOC_GETFLAGS, buf, True)
                if buf[0] & _LINUX_NO_REPLACE:
                    return "it is marked immutable or append-only (lsattr shows i or a; chattr -i to allow)"
            finally:
                os.close(fd)
    parent = _parent(Path(path))
    with contextlib.suppress(OSError):
        pst = os.stat(parent)
        euid = os.geteuid() if hasattr(os, "geteuid") else 0
        if pst.st_mode & stat.S_ISVTX and euid != 0 and euid not in (st.st_uid, pst.st_uid):
            return "it belongs to another user in a shared (sticky) folder"
    return None


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
        _replace_into_folder(tmp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _replace_into_folder(tmp: Path, final: Path) -> None:
    """The final rename, re-checking the output's folder: removed or replaced by a file while the
    work ran is a coded ``output_unwritable``, not a FileNotFoundError after a whole render."""
    try:
        os.replace(tmp, final)
    except (FileNotFoundError, NotADirectoryError):
        folder = _parent(final)
        what = "replaced by a file" if os.path.lexists(folder) else "removed"
        raise OutputError(f"the output folder {folder} was {what} while the work ran, so {final.name} could not be "
                          "put there (nothing was written); recreate the folder and run again") from None


def check_output_file(final: Path) -> None:
    """The folder of ``final`` is writable and ``final`` is not a folder (checked before any work)."""
    final = Path(final)
    check_output_name(final)
    if final.is_dir():
        raise OutputError(f"output {final} is a folder; give a file name such as {final / 'out'}{final.suffix or ''}")
    kind = _special_kind(final)
    if kind:   # a rename would replace a device (as root: /dev/null itself), a FIFO or a socket
        raise OutputError(f"output {final} exists and is {kind}, not a regular file; outputs are only ever "
                          "regular files: choose another name")
    ensure_writable_dir(_parent(final))
    why = replace_blocker(final)
    if why:
        raise OutputError(f"output {final} exists and cannot be replaced: {why}; choose another name")


def _special_kind(path: Path) -> str | None:
    """'a named pipe (FIFO)', 'a device', 'a socket' for an existing special file (through links), else None."""
    import stat

    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return None
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return None


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
        try:
            check_output_name(folder)
        except OutputError as exc:
            raise OutputError(f"--frames-dir: {exc}") from None
        if folder.exists() and not folder.is_dir():
            raise OutputError(f"--frames-dir {folder} is a file, not a folder")
        ensure_writable_dir(_parent(folder))
        if folder.is_dir():
            if not os.access(folder, os.W_OK | os.X_OK):
                raise OutputError(f"cannot write to --frames-dir {folder}: permission denied")
            for old in self.ours():
                why = replace_blocker(old)
                if why:
                    raise OutputError(f"--frames-dir {folder}: the old frame {old.name} cannot be replaced: {why}; "
                                      "choose another folder")
            foreign = self.foreign()
            if foreign and not self.overwrite:
                names = ", ".join(p.name for p in foreign[:3]) + (" ..." if len(foreign) > 3 else "")
                raise OutputError(
                    f"--frames-dir {folder} already holds {len(foreign)} file(s) that are not frames "
                    f"({names}); choose a new or empty folder, or pass --overwrite to write the frames "
                    "next to them (only frame_NNNNN.png files are ever replaced)")


@contextlib.contextmanager
def frames_output(folder: Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a staging folder for frames; on success they land in ``folder``, all or nothing.

    A new ``folder`` appears whole (one rename). In an existing folder the old frame files are
    first moved aside into a second staging folder, then the new frames moved in; if any rename
    fails (an immutable frame, the folder changed) every move is undone, so the folder is exactly
    as it was, never a mix of old and new frames. Nothing but our own ``frame_NNNNN.png`` files
    is ever moved. On error or cancel the staging folders go and ``folder`` is untouched.
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
            _replace_into_folder(tmp, final)
            return
        target.check()  # the folder may have changed while we rendered
        _swap_frames(tmp, final, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _swap_frames(new: Path, final: Path, target: FramesOutput) -> None:
    """Old frames of ``final`` aside, ``new``'s frames in; undone completely on any failure."""
    aside = Path(tempfile.mkdtemp(dir=_parent(final), prefix=_part_prefix(final)))
    moved_out: list[str] = []
    moved_in: list[str] = []
    try:
        for old in target.ours():
            os.replace(old, aside / old.name)
            moved_out.append(old.name)
        for name in sorted(p.name for p in new.iterdir()):
            os.replace(new / name, final / name)
            moved_in.append(name)
    except BaseException as exc:
        for name in reversed(moved_in):
            with contextlib.suppress(OSError):
                os.replace(final / name, new / name)
        for name in reversed(moved_out):
            with contextlib.suppress(OSError):
                os.replace(aside / name, final / name)
        if not any(aside.iterdir()):
            shutil.rmtree(aside, ignore_errors=True)
        if not isinstance(exc, OSError):
            raise
        where = Path(exc.filename) if exc.filename else final
        raise OutputError(f"cannot replace {where.name} in --frames-dir {final}: {exc.strerror or exc}; "
                          "the folder was left exactly as it was") from exc
    shutil.rmtree(aside, ignore_errors=True)
