"""A stand-in for the Hugging Face hub on 127.0.0.1, for the fetch tests (stdlib only: it also runs
inside the bpy interpreters).

It answers what huggingface_hub and ``engine fetch`` ask, with the headers the real hub sends:
``HEAD/GET /{repo}/resolve/{rev}/{path}``: a small (git) file is a 200 with ``ETag`` = its git blob
sha1, ``X-Repo-Commit`` and ``Content-Length``; a large (LFS) file is a 302 to ``/cdn/{sha256}`` with
``X-Linked-Etag`` = its sha256, ``X-Linked-Size`` and ``X-Repo-Commit``; a missing file is a 404 with
``X-Error-Code: EntryNotFound``. ``/cdn/...`` (a second origin, like the hub's CDN) serves the bytes
with HTTP Range support, optionally slowly (``bytes_per_s``) so a test can stop a download midway.

Knobs for failure tests: ``truncate`` (announce the whole file, send less and hang up), ``corrupt``
(send other bytes than the published hash says), ``announce`` (a wrong size in the hub's answer). Every request is logged in ``requests`` (method, path, Range).
Hostile knobs (issue #28): ``headers`` (replace the hub's headers for a file: a crafted ``X-Linked-Etag``,
``Location``, ``X-Linked-Size``), ``redirect_get`` (a GET of a hub file answers 302 there), ``drop_after``
(the first GET of every file hangs up after that many bytes), ``stall_after`` (every GET stops sending
after that many bytes until the server stops); ``auth`` logs (path, Authorization) of every request.
"""
from __future__ import annotations

import hashlib
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

COMMIT = "0123456789abcdef0123456789abcdef01234567"
LFS_SUFFIXES = (".pth", ".pt", ".pkl", ".onnx", ".bin")


def git_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class HubServer:
    """``with HubServer(files) as hub: ... hub.url ...``; always stopped on exit."""

    def __init__(self, files: dict[tuple[str, str], bytes], *, bytes_per_s: float | None = None) -> None:
        self.files = dict(files)
        self.bytes_per_s = bytes_per_s
        self.truncate: set[tuple[str, str]] = set()
        self.announce: dict[tuple[str, str], int] = {}   # a wrong X-Linked-Size the hub's HEAD reports
        self.corrupt: set[tuple[str, str]] = set()
        self.requests: list[tuple[str, str, str | None]] = []
        self.headers: dict[tuple[str, str], dict[str, str]] = {}
        self.redirect_get: dict[tuple[str, str], str] = {}
        self.drop_after: int | None = None
        self.stall_after: int | None = None
        self.auth: list[tuple[int, str, str | None]] = []
        self._dropped: set[str] = set()
        self._stopping = threading.Event()
        self._servers: list[ThreadingHTTPServer] = []   # [hub, cdn]: two origins, as on the real hub

    # -- what the hub publishes -------------------------------------------------------------
    def sha256(self, key: tuple[str, str]) -> str:
        return hashlib.sha256(self.files[key]).hexdigest()

    def is_lfs(self, path: str) -> bool:
        return path.endswith(LFS_SUFFIXES)

    def body(self, key: tuple[str, str]) -> bytes:
        data = self.files[key]
        if key in self.corrupt:
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        if key in self.truncate:
            data = data[: len(data) * 3 // 4]
        return data

    def size(self, key: tuple[str, str]) -> int:
        return len(self.files[key])

    @property
    def url(self) -> str:
        """The hub (what HF_ENDPOINT names)."""
        return f"http://127.0.0.1:{self._servers[0].server_address[1]}"

    @property
    def cdn_url(self) -> str:
        """Where large files' bytes are: another origin, so huggingface_hub stops at the redirect
        and reads the ``X-Linked-*`` headers of the hub's answer (as it does with the real CDN)."""
        return f"http://127.0.0.1:{self._servers[1].server_address[1]}"

    # -- life cycle -------------------------------------------------------------------------
    def start(self) -> "HubServer":
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_HEAD(self) -> None:
                hub._answer(self, head=True)

            def do_GET(self) -> None:
                hub._answer(self, head=False)

        for name in ("hub", "cdn"):
            httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
            httpd.daemon_threads = True
            self._servers.append(httpd)
            threading.Thread(target=httpd.serve_forever, name=f"{name}-server", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        for httpd in self._servers:
            httpd.shutdown()
            httpd.server_close()
        self._servers = []

    def __enter__(self) -> "HubServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- answers ----------------------------------------------------------------------------
    def _send(self, h: BaseHTTPRequestHandler, status: int, headers: dict[str, str], data: bytes = b"",
              head: bool = False) -> None:
        h.send_response(status)
        for k, v in headers.items():
            h.send_header(k, v)
        declared = int(headers.get("Content-Length", str(len(data))))
        h.send_header("Content-Length", str(declared))
        h.end_headers()
        if not head and data:
            path = h.path.split("?", 1)[0]
            if self.drop_after is not None and path not in self._dropped and len(data) > self.drop_after:
                self._dropped.add(path)           # the first GET of this file: hang up midway
                data = data[: self.drop_after]
            if self.stall_after is not None and len(data) > self.stall_after:
                self._write(h, data[: self.stall_after])
                self._stopping.wait(120)          # silent until the test ends
                h.close_connection = True
                return
            self._write(h, data)
            if len(data) < declared:   # a dropped connection: hang up mid-body
                h.close_connection = True

    def _write(self, h: BaseHTTPRequestHandler, data: bytes) -> None:
        step = 16384
        try:
            for i in range(0, len(data), step):
                h.wfile.write(data[i:i + step])
                h.wfile.flush()
                if self.bytes_per_s:
                    time.sleep(step / self.bytes_per_s)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _answer(self, h: BaseHTTPRequestHandler, head: bool) -> None:
        path = h.path.split("?", 1)[0]
        self.requests.append((h.command, path, h.headers.get("Range")))
        self.auth.append((h.server.server_address[1], path, h.headers.get("Authorization")))
        if path.startswith("/cdn/"):
            return self._cdn(h, path[len("/cdn/"):], head)
        parts = path.lstrip("/").split("/")
        if len(parts) < 5 or parts[2] != "resolve":
            return self._send(h, 404, {"X-Error-Code": "RepoNotFound"}, b"not found", head)
        repo, path_in_repo = "/".join(parts[:2]), "/".join(parts[4:])
        key = (repo, path_in_repo)
        if key not in self.files:
            return self._send(h, 404, {"X-Error-Code": "EntryNotFound", "X-Error-Message": "Entry not found",
                                       "X-Repo-Commit": COMMIT}, b"Entry not found", head)
        if not head and key in self.redirect_get and h.server is self._servers[0]:
            return self._send(h, 302, {"Location": self.redirect_get[key]}, b"", head)
        if self.is_lfs(path_in_repo):
            sha = self.sha256(key)
            return self._send(h, 302, {"Location": f"{self.cdn_url}/cdn/{sha}", "X-Repo-Commit": COMMIT,
                                       "X-Linked-Etag": f'"{sha}"',
                                       "X-Linked-Size": str(self.announce.get(key, self.size(key))),
                                       "ETag": f'"{git_sha1(sha.encode())}"', **self.headers.get(key, {})},
                              b"", head)
        data = self.body(key)
        return self._send(h, 200, {"ETag": f'"{git_sha1(self.files[key])}"', "X-Repo-Commit": COMMIT,
                                   "Content-Length": str(self.size(key)), "Accept-Ranges": "bytes",
                                   **self.headers.get(key, {})}, data, head)

    def _cdn(self, h: BaseHTTPRequestHandler, sha: str, head: bool) -> None:
        key = next((k for k in self.files if self.is_lfs(k[1]) and self.sha256(k) == sha), None)
        if key is None:
            return self._send(h, 404, {}, b"no such object", head)
        data = self.body(key)
        size = self.size(key)
        rng = h.headers.get("Range")
        if rng and rng.startswith("bytes="):
            start = int(rng[len("bytes="):].split("-", 1)[0])
            if start >= size:
                return self._send(h, 416, {"Content-Range": f"bytes */{size}"}, b"", head)
            return self._send(h, 206, {"Content-Range": f"bytes {start}-{size - 1}/{size}",
                                       "Accept-Ranges": "bytes", "Content-Length": str(size - start)},
                              data[start:], head)
        return self._send(h, 200, {"Accept-Ranges": "bytes", "Content-Length": str(size)}, data, head)


def official_layout(weights: Path) -> dict[tuple[str, str], bytes]:
    """The hub's repositories as they hold the files ``engine fetch`` wants, filled from a synthetic
    weights folder (tools/make_synthetic_weights.py): KwaiVGI/LivePortrait (liveportrait/...),
    jdh-algo/JoyVASA (motion_generator/..., motion_template/...), TencentGameMate/chinese-hubert-base."""
    weights = Path(weights)
    files: dict[tuple[str, str], bytes] = {}
    lp = weights / "liveportrait"
    for path in sorted(lp.rglob("*.pth")):
        rel = path.relative_to(weights).as_posix()
        files[("KwaiVGI/LivePortrait", rel)] = path.read_bytes()
    for sub in ("motion_generator/motion_generator_hubert_chinese.pt", "motion_template/motion_template.pkl"):
        files[("jdh-algo/JoyVASA", sub)] = (weights / "JoyVASA" / sub).read_bytes()
    hubert = next(p for p in (weights / "TencentGameMate:chinese-hubert-base", weights / "chinese-hubert-base")
                  if p.is_dir())
    for name in ("config.json", "preprocessor_config.json"):
        files[("TencentGameMate/chinese-hubert-base", name)] = (hubert / name).read_bytes()
    return files


def with_animals(files: dict[tuple[str, str], bytes]) -> dict[tuple[str, str], bytes]:
    """LivePortrait's animal models (same containers as the human ones) under liveportrait_animals/."""
    out = dict(files)
    for (repo, path), data in files.items():
        if path.startswith("liveportrait/base_models/"):
            out[(repo, path.replace("liveportrait/", "liveportrait_animals/", 1))] = data
    return out
