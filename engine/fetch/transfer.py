"""Bytes from the host into the weights folder, never a file that only looks complete.

Why a staging folder beside the weights folder: a cancelled, killed or failed download leaves its
bytes there (``<dest>.<etag>.part``), never under the final name, so nothing in the weights folder
is ever half-written, and the next run resumes with an HTTP Range request. A file is moved into
place only after its size and (where the host publishes one) its hash match; beside the folder
means the same file system, so the move is one rename.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import http.client
import os
import shutil
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Iterator

from engine.errors import DownloadFailed, Offline
from engine.fetch.hub import RemoteFile, auth_headers

CHUNK = 1 << 20
#: a host that sends nothing for this long has dropped the connection
READ_TIMEOUT_S = 30.0


def staging_dir(out: Path) -> Path:
    """``DIR/../.DIR.joyvasa-fetch``: beside the weights folder, same file system, stable across runs.
    When only DIR itself is writable (its parent is not), the hidden ``DIR/.joyvasa-fetch`` instead:
    its files still end in ``.part`` under a folder no loader reads."""
    out = Path(out).absolute()
    beside = out.parent / f".{out.name}.joyvasa-fetch"
    if not beside.exists() and out.is_dir() and not os.access(out.parent, os.W_OK) and os.access(out, os.W_OK):
        return out / ".joyvasa-fetch"
    return beside


LOCK_NAME = ".lock"


@contextlib.contextmanager
def exclusive(staging: Path, out: Path) -> Iterator[None]:
    """One fetch per weights folder at a time: two runs appending to the same partial would move a
    file into DIR while the other still writes to it. An OS lock, so a killed run never leaves it held."""
    staging.mkdir(parents=True, exist_ok=True)
    fh = open(staging / LOCK_NAME, "a+")
    try:
        try:
            if os.name == "nt":
                import msvcrt

                msvcrt.locking(fh.fileno(), msvcrt.LK_NBLCK, 1)
            else:
                import fcntl

                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise DownloadFailed(f"another `engine fetch` is downloading into {out} right now (Blender's Download "
                                 "Weights or a terminal); let it finish or stop it, then run again") from None
        yield
        with contextlib.suppress(OSError):
            (staging / LOCK_NAME).unlink()
    finally:
        fh.close()


def partial_path(staging: Path, remote: RemoteFile) -> Path:
    """Where ``remote``'s bytes collect; the hash in the name keeps bytes of an older upload apart."""
    tag = (remote.etag or f"size{remote.size}")[:16]
    return staging / f"{remote.file.dest}.{tag}.part"


def partial_bytes(staging: Path, remote: RemoteFile) -> int:
    part = partial_path(staging, remote)
    try:
        return min(part.stat().st_size, remote.size)
    except OSError:
        return 0


def file_hash(path: Path, kind: str) -> str:
    """sha256 of the content, or the git blob sha1 (what the hub's ETag is for small files)."""
    h = hashlib.sha256() if kind == "sha256" else hashlib.sha1()
    if kind == "git-sha1":
        h.update(f"blob {path.stat().st_size}\0".encode())
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def matches(path: Path, remote: RemoteFile) -> bool:
    """``path`` is exactly the host's file (size, then hash where one is published)."""
    try:
        if not path.is_file() or path.stat().st_size != remote.size:
            return False
    except OSError:
        return False
    return remote.hash_kind is None or file_hash(path, remote.hash_kind) == remote.etag


def _drop_older_partials(part: Path) -> None:
    """Bytes of another upload of the same file cannot be resumed: remove them."""
    stem = part.name[: -len(".part")].rsplit(".", 1)[0]
    for other in part.parent.glob(f"{stem}.*.part"):
        if other != part:
            with contextlib.suppress(OSError):
                other.unlink()


def download(remote: RemoteFile, part: Path, host: str, on_bytes: Callable[[int], None]) -> None:
    """Bring ``part`` up to ``remote.size`` bytes, resuming what is there; ``on_bytes(have)`` after
    every chunk (it may raise to cancel: the bytes so far stay for the next run)."""
    part.parent.mkdir(parents=True, exist_ok=True)
    _drop_older_partials(part)
    have = part.stat().st_size if part.is_file() else 0
    if have > remote.size:
        part.unlink()
        have = 0
    on_bytes(have)
    if have == remote.size:
        return
    headers = {"Accept-Encoding": "identity", **auth_headers(remote.url, host)}
    if have:
        headers["Range"] = f"bytes={have}-"
    name = remote.file.dest
    try:
        resp = urllib.request.urlopen(urllib.request.Request(remote.url, headers=headers), timeout=READ_TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # the host says our partial is not a prefix it knows: start over
            part.unlink()
            raise DownloadFailed(f"{name}: the host refused to resume (HTTP 416); the partial was removed, "
                                 "run again") from None
        raise DownloadFailed(f"{name}: {host} answered HTTP {exc.code} for {remote.url}; run again to resume") from None
    except (urllib.error.URLError, OSError) as exc:
        raise Offline(f"{name}: cannot reach {remote.url} ({getattr(exc, 'reason', exc)}); run again to resume") from None
    with resp:
        if have and resp.status != 206:   # the host ignored the Range: take the whole file again
            have = 0
        try:
            with open(part, "ab" if have else "wb") as fh:
                read = getattr(resp, "read1", resp.read)
                while True:
                    chunk = read(CHUNK)
                    if not chunk:
                        break
                    if have + len(chunk) > remote.size:
                        fh.close()
                        part.unlink()
                        raise DownloadFailed(f"{name}: the host sent more than the {remote.size} bytes it announced; "
                                             "the partial was removed, run again")
                    fh.write(chunk)
                    have += len(chunk)
                    on_bytes(have)
                fh.flush()
                os.fsync(fh.fileno())
        except (TimeoutError, ConnectionError, http.client.HTTPException) as exc:
            raise DownloadFailed(f"{name}: the connection dropped after {have} of {remote.size} bytes ({exc}); "
                                 "run again to resume") from None
    if have != remote.size:
        raise DownloadFailed(f"{name}: the host ended the file after {have} of {remote.size} bytes; run again to resume")


def verify_and_place(remote: RemoteFile, part: Path, final: Path) -> None:
    """Move ``part`` to ``final`` only if size and hash match; a mismatch removes the partial."""
    size = part.stat().st_size
    if size != remote.size:
        raise DownloadFailed(f"{remote.file.dest}: {size} bytes downloaded, the host announced {remote.size}; "
                             "run again to resume")
    kind = remote.hash_kind
    if kind is not None:
        got = file_hash(part, kind)
        if got != remote.etag:
            part.unlink()
            raise DownloadFailed(f"{remote.file.dest}: {kind} {got[:12]}... does not match the host's "
                                 f"{remote.etag[:12]}... (damaged download or a changed mirror); the partial was "
                                 "removed, run again")
    final.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(part, final)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        from engine.fileio import atomic_path   # DIR is its own mount: copy beside, then rename

        with atomic_path(final) as tmp:
            shutil.copyfile(part, tmp)
        part.unlink()


def remove_empty_dirs(root: Path) -> None:
    """The staging folder goes once nothing is left in it."""
    if not root.is_dir():
        return
    for folder in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):
            folder.rmdir()
    with contextlib.suppress(OSError):
        root.rmdir()
