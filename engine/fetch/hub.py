"""What the hub says about each file: its size, its hash and where its bytes are.

Why through huggingface_hub: it is what users configure (``HF_ENDPOINT`` for a mirror,
``HF_HUB_OFFLINE``, a stored token for gated repositories), and its HEAD request already
follows the hub's redirects and reads the hub's headers (``X-Linked-Size``/``X-Linked-Etag``
for large files, ``ETag``/``Content-Length`` for small ones, ``X-Repo-Commit``). The bytes
themselves are fetched by :mod:`engine.fetch.transfer`.
"""
from __future__ import annotations

import os
import re
import socket
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from engine.errors import DownloadFailed, Offline
from engine.weights import HubFile

DEFAULT_ENDPOINT = "https://huggingface.co"
#: the reachability probe and each metadata request give up after this many seconds
PROBE_TIMEOUT_S = 3.0
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_GIT_SHA1 = re.compile(r"^[0-9a-f]{40}$")


def _true(value: str | None) -> bool:
    return (value or "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def endpoint() -> str:
    """The host to download from: ``$HF_ENDPOINT`` (a mirror) or huggingface.co."""
    return (os.environ.get("HF_ENDPOINT", "").strip() or DEFAULT_ENDPOINT).rstrip("/")


def offline_mode() -> bool:
    """``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) is set: the user asked for no network."""
    return _true(os.environ.get("HF_HUB_OFFLINE")) or _true(os.environ.get("TRANSFORMERS_OFFLINE"))


def file_url(f: HubFile, host: str, revision: str = "main") -> str:
    """The hub's address of one file (what a browser opens for the manual route)."""
    return f"{host}/{f.repo}/resolve/{revision}/{f.path}"


def manual_route(files: list[HubFile], host: str) -> str:
    """The text that tells a user without network how to get the files by hand."""
    lines = [f"  {file_url(f, host)}  ->  DIR/{f.dest}" for f in files]
    return ("Manual route: on a machine with internet access download these files (a browser is enough) and "
            "put them under DIR exactly as shown, or set HF_ENDPOINT to a reachable mirror and run again; then "
            "check them with `python -m engine fetch --out DIR --verify-only` (see docs/install.md):\n"
            + "\n".join(lines))


def probe(host: str, timeout: float = PROBE_TIMEOUT_S) -> None:
    """Raise :class:`Offline` within ``timeout`` seconds if ``host`` takes no TCP connection.

    A thread, because a DNS lookup ignores socket timeouts and can hang for half a minute."""
    if offline_mode():
        raise Offline("HF_HUB_OFFLINE is set, so nothing is downloaded")
    try:
        url = urlparse(host)
        port = url.port or (443 if url.scheme == "https" else 80)
    except ValueError as exc:   # "http://[::1" (unclosed bracket), "http://h:99999" (port out of range)
        raise Offline(f"HF_ENDPOINT {host!r} is not a valid address ({exc}); set it to an http(s) URL "
                      "such as https://huggingface.co") from None
    if url.scheme not in ("http", "https") or not url.hostname:
        raise Offline(f"HF_ENDPOINT {host!r} is not an http(s) address")
    result: list[BaseException | None] = []

    def connect() -> None:
        try:
            socket.create_connection((url.hostname, port), timeout=timeout).close()
            result.append(None)
        except OSError as exc:
            result.append(exc)

    worker = threading.Thread(target=connect, name="hub-probe", daemon=True)
    worker.start()
    worker.join(timeout)
    if not result:
        raise Offline(f"no answer from {host} within {timeout:.0f} s")
    if result[0] is not None:
        raise Offline(f"cannot reach {host}: {result[0]}")


@dataclass(frozen=True)
class RemoteFile:
    """One file as the host describes it."""

    file: HubFile
    url: str              # where its bytes are (the hub's redirect target, often a CDN)
    size: int
    etag: str | None      # sha256 for large (LFS/Xet) files, the git blob sha1 for small ones
    commit: str | None

    @property
    def hash_kind(self) -> str | None:
        """Which hash ``etag`` is: 'sha256', 'git-sha1', or None when the host published neither."""
        if self.etag and _SHA256.match(self.etag):
            return "sha256"
        if self.etag and _GIT_SHA1.match(self.etag):
            return "git-sha1"
        return None


def _names(exc: BaseException) -> set[str]:
    """Class names in the exception's MRO: huggingface_hub moved its errors between versions."""
    return {c.__name__ for c in type(exc).__mro__}


def classify(exc: BaseException, f: HubFile, host: str) -> Exception:
    """A coded engine error for a failed request about ``f``."""
    names = _names(exc)
    where = f"{f.repo}/{f.path}"
    if "OfflineModeIsEnabled" in names:
        return Offline("HF_HUB_OFFLINE is set, so nothing is downloaded")
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if names & {"EntryNotFoundError", "RemoteEntryNotFoundError"} or status == 404:
        return DownloadFailed(f"{where} is not on {host} (HTTP 404); if HF_ENDPOINT names a mirror, it lacks "
                              "this file: use the official host or the manual route")
    if names & {"GatedRepoError", "RepositoryNotFoundError"} or status in (401, 403):
        return DownloadFailed(f"{host} refused {where} (HTTP {status or 'refused'}): the repository is gated or "
                              "private there; log in with `hf auth login` or use the manual route")
    if status is not None:
        return DownloadFailed(f"{host} answered HTTP {status} for {where}; run again later (it resumes)")
    if names & {"ConnectionError", "ConnectError", "TimeoutException", "Timeout", "TimeoutError",
                "NetworkError", "ProtocolError", "RemoteProtocolError", "OSError"}:
        return Offline(f"{host} stopped answering while asked about {where} ({type(exc).__name__}: {exc})")
    return DownloadFailed(f"cannot ask {host} about {where}: {type(exc).__name__}: {exc}")


def describe(f: HubFile, host: str, timeout: float = PROBE_TIMEOUT_S) -> RemoteFile:
    """HEAD one file on ``host`` (huggingface_hub's metadata request); coded errors on failure."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    try:
        meta = get_hf_file_metadata(hf_hub_url(f.repo, f.path, endpoint=host), timeout=timeout)
    except Exception as exc:  # noqa: BLE001 - every failure becomes offline / download_failed
        raise classify(exc, f, host) from exc
    if meta.size is None:
        raise DownloadFailed(f"{host} did not say how large {f.repo}/{f.path} is; cannot check the download")
    return checked_remote(f, host, meta.location, meta.size, meta.etag, meta.commit_hash)


#: no official weight file comes near this; a larger announced size is a broken or hostile host
MAX_FILE_BYTES = 64 * 2**30


def checked_remote(f: HubFile, host: str, location: Any, size: Any, etag: Any, commit: Any) -> RemoteFile:
    """The host's answer as plain, checked values: a size in [0, MAX_FILE_BYTES], a location that is
    http(s) (a ``file://`` redirect would copy a local file into the weights folder), strings of
    sane length. Why: every header is written by the host, which we do not trust."""
    where = f"{f.repo}/{f.path}"
    try:
        size_int = int(size)
    except (TypeError, ValueError, OverflowError):
        raise DownloadFailed(f"{host} announced a size for {where} that is not a number ({str(size)[:40]!r})") from None
    if not 0 <= size_int <= MAX_FILE_BYTES:
        raise DownloadFailed(f"{host} announced {size_int} bytes for {where}, which is not a possible size "
                             f"(0 to {MAX_FILE_BYTES} bytes); use the official host")
    url = str(location or "")
    try:
        scheme = urlparse(url).scheme.lower()
    except ValueError:
        scheme = ""
    if scheme not in ("http", "https") or len(url) > 8192:
        raise DownloadFailed(f"{host} sent {where} to {url[:80]!r}, which is not an http(s) address; refused")
    tag = str(etag or "").strip().strip('"').lower()[:256] or None
    sha = str(commit)[:64] if commit else None
    return RemoteFile(f, url, size_int, tag, sha)


def same_origin(url: str, host: str) -> bool:
    """``url`` is on ``host``'s origin (scheme, host and port), the only place a token may go."""
    try:
        a, b = urlparse(url), urlparse(host)
        return (a.scheme.lower(), a.hostname, a.port) == (b.scheme.lower(), b.hostname, b.port)
    except ValueError:
        return False


def auth_headers(url: str, host: str) -> dict[str, str]:
    """The hub's headers (user agent, stored token) for requests to ``host`` itself; none for a
    CDN a redirect points to (a token must not leave the hub)."""
    if not same_origin(url, host):
        return {}
    from huggingface_hub.utils import build_hf_headers

    try:
        return dict(build_hf_headers())
    except Exception:  # noqa: BLE001 - an unreadable token file must not stop a public download
        return {}
