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
import socket
import stat
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Callable, Iterator

from engine.errors import DownloadFailed, OutputError
from engine.fetch.hub import RemoteFile, auth_headers, same_origin

CHUNK = 1 << 20
#: a host that sends nothing for this long has dropped the connection
READ_TIMEOUT_S = 30.0
#: tries per file within one run when the connection drops (each resumes where the last stopped)
MAX_TRIES = 5
#: wait before the first retry; doubles after each
BACKOFF_S = 0.5


class Dropped(DownloadFailed):
    """The connection failed or ended early: worth another try (resuming), unlike a wrong hash."""


def staging_dir(out: Path) -> Path:
    """``DIR/../.DIR.joyvasa-fetch``: beside the weights folder, same file system, stable across runs.
    When only DIR itself is writable (its parent is not), the hidden ``DIR/.joyvasa-fetch`` instead:
    its files still end in ``.part`` under a folder no loader reads."""
    out = Path(out).absolute()
    beside = out.parent / f".{out.name}.joyvasa-fetch"
    if not os.path.lexists(beside) and out.is_dir() and not os.access(out.parent, os.W_OK) and os.access(out, os.W_OK):
        return out / ".joyvasa-fetch"
    return beside


LOCK_NAME = ".lock"


def check_staging(staging: Path) -> None:
    """The staging folder is absent or a real folder (not a symlink, not a file): fetch deletes in
    it, so a link to a user's folder would empty theirs. Checked before the first byte."""
    try:
        st = os.lstat(staging)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise OutputError(f"cannot use the staging folder {staging}: {exc.strerror or exc}") from None
    if stat.S_ISLNK(st.st_mode):
        raise OutputError(f"the staging folder {staging} is a symbolic link; fetch only downloads into a folder it "
                          "made itself: remove the link and run again")
    if not stat.S_ISDIR(st.st_mode):
        raise OutputError(f"the staging path {staging} is a file, not the folder fetch keeps partial downloads in; "
                          "move or remove it and run again")


def check_layout(out: Path, dests: list[str]) -> None:
    """Every weight file's folder can be a folder and the file itself is not a folder, before the first
    byte (not after a long download, at the rename)."""
    for dest in dests:
        final = out / dest
        folder = out
        for part in Path(dest).parent.parts:
            folder = folder / part
            if os.path.lexists(folder) and not folder.is_dir():
                raise OutputError(f"{folder} is a file where the weights need a folder (for {dest}); move it away "
                                  "and run again")
        if final.is_dir():
            raise OutputError(f"{final} is a folder where the weight file {dest} belongs; move it away and run again")
        if os.path.lexists(final) and not final.is_file():
            raise OutputError(f"{final} is not a regular file (a link to nothing, a pipe or a device); "
                              f"remove it so {dest} can be placed")


@contextlib.contextmanager
def exclusive(staging: Path, out: Path) -> Iterator[None]:
    """One fetch per weights folder at a time: two runs appending to the same partial would move a
    file into DIR while the other still writes to it. An OS lock, so a killed run never leaves it held."""
    check_staging(staging)
    staging.mkdir(parents=True, exist_ok=True)
    check_staging(staging)
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
    """Where ``remote``'s bytes collect; the hash in the name keeps bytes of an older upload apart.
    Built from our own names only: the host's ETag is hashed first (it may hold ``/../``)."""
    host_tag = f"{remote.etag or ''}|{remote.size}"
    tag = hashlib.sha256(host_tag.encode("utf-8", "replace")).hexdigest()[:16]
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


class _Redirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects only to http(s), and keep the token only on the hub's own origin
    (huggingface_hub's rule: credentials never go to another host)."""

    def __init__(self, host: str) -> None:
        super().__init__()
        self.host = host

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        scheme = urllib.parse.urlparse(newurl).scheme.lower()
        if scheme not in ("http", "https"):
            raise DownloadFailed(f"the host redirected a download to {newurl[:80]!r}, which is not http(s); refused")
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and not same_origin(newurl, self.host):
            for name in ("Authorization", "Cookie"):
                new.remove_header(name)
                new.unredirected_hdrs.pop(name, None)
        return new


def _open(url: str, headers: dict[str, str], host: str) -> http.client.HTTPResponse:
    opener = urllib.request.build_opener(_Redirects(host))
    return opener.open(urllib.request.Request(url, headers=headers), timeout=READ_TIMEOUT_S)


def _socket_of(resp: object) -> socket.socket | None:
    raw = getattr(getattr(resp, "fp", None), "raw", None)
    return getattr(raw, "_sock", None)


@contextlib.contextmanager
def _hang_up_on_cancel(resp: object, cancelled: Callable[[], bool]) -> Iterator[None]:
    """A watcher that shuts the socket when ``cancelled()`` turns true: a read stalled on a silent
    host returns at once instead of after READ_TIMEOUT_S (cancel answers within a second)."""
    sock = _socket_of(resp)
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(0.2):
            if cancelled():
                with contextlib.suppress(OSError):
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)  # type: ignore[arg-type]
                return

    watcher = threading.Thread(target=watch, name="fetch-cancel", daemon=True) if sock is not None else None
    if watcher:
        watcher.start()
    try:
        yield
    finally:
        stop.set()


def download(remote: RemoteFile, part: Path, host: str, on_bytes: Callable[[int], None],
             cancelled: Callable[[], bool] = lambda: False) -> None:
    """Bring ``part`` up to ``remote.size`` bytes, resuming what is there; ``on_bytes(have)`` after
    every chunk (it may raise to cancel: the bytes so far stay for the next run). A dropped
    connection raises :class:`Dropped` (the caller retries)."""
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
        resp = _open(remote.url, headers, host)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # the host says our partial is not a prefix it knows: start over
            part.unlink()
            raise DownloadFailed(f"{name}: the host refused to resume (HTTP 416); the partial was removed, "
                                 "run again") from None
        if 300 <= exc.code < 400:   # urllib refuses a redirect to file:, ftp: ... before our handler sees it
            where = str((exc.headers or {}).get("Location", ""))[:80]
            raise DownloadFailed(f"{name}: the host redirected the download to {where!r}, which is not http(s); "
                                 "refused") from None
        cls = Dropped if exc.code in (408, 429) or exc.code >= 500 else DownloadFailed
        raise cls(f"{name}: {host} answered HTTP {exc.code} for {remote.url}; run again to resume") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise Dropped(f"{name}: cannot reach {remote.url} ({getattr(exc, 'reason', exc)}); run again to resume") from None
    with resp, _hang_up_on_cancel(resp, cancelled):
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
        except (TimeoutError, ConnectionError, http.client.HTTPException, ValueError) as exc:
            on_bytes(have)   # a cancel that hung up the socket is a cancel, not a drop
            raise Dropped(f"{name}: the connection dropped after {have} of {remote.size} bytes ({exc}); "
                          "run again to resume") from None
    on_bytes(have)
    if have != remote.size:
        raise Dropped(f"{name}: the host ended the file after {have} of {remote.size} bytes; run again to resume")


def download_with_retries(remote: RemoteFile, part: Path, host: str, on_bytes: Callable[[int], None],
                          on_retry: Callable[[int, float, str], None],
                          cancelled: Callable[[], bool] = lambda: False) -> None:
    """:func:`download`, tried up to MAX_TRIES times while the connection drops (each try resumes
    where the last stopped, waiting BACKOFF_S, then twice as long, ...); ``on_retry(try, wait_s,
    why)`` before each wait. The last drop is raised (``download_failed``)."""
    for attempt in range(1, MAX_TRIES + 1):
        try:
            return download(remote, part, host, on_bytes, cancelled)
        except Dropped as exc:
            if attempt == MAX_TRIES:
                raise DownloadFailed(f"{exc} (gave up after {MAX_TRIES} tries)") from None
            wait = BACKOFF_S * 2 ** (attempt - 1)
            on_retry(attempt + 1, wait, str(exc))
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                on_bytes(part.stat().st_size if part.is_file() else 0)   # cancel during the wait
                time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))


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


def remove_empty_dirs(root: Path, dests: list[str] | None = None) -> None:
    """The staging folder goes once nothing is left in it. Only folders fetch makes there (the weight
    files' folders, ``dests``) are candidates, never whatever else lies below, and never through a link."""
    if os.path.islink(root) or not root.is_dir():
        return
    folders = {root / p for d in (dests or []) for p in Path(d).parents if p != Path(".")}
    for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
        if not folder.is_symlink():
            with contextlib.suppress(OSError):
                folder.rmdir()
    with contextlib.suppress(OSError):
        root.rmdir()
