"""Provenance hashes are cached by (path, size, mtime): a changed file is re-hashed, an unchanged one is not."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from engine import checkpoints


@pytest.fixture()
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(checkpoints.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(checkpoints, "_HASHES", {})
    return tmp_path / "cache"


def test_hash_is_cached_on_disk_and_refreshed_when_the_file_changes(tmp_path: Path, cache_dir: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "w.pt"
    f.write_bytes(b"a" * 1000)
    assert checkpoints.sha256_file(f) == hashlib.sha256(b"a" * 1000).hexdigest()
    assert (cache_dir / "sha256.json").is_file()
    # a new process (empty memory cache) reads the digest from disk without hashing the file
    monkeypatch.setattr(checkpoints, "_HASHES", {})
    real_open = open

    def no_read(path, *a, **k):  # type: ignore[no-untyped-def]
        assert Path(path) != f.resolve(), "re-hashed an unchanged file"
        return real_open(path, *a, **k)

    monkeypatch.setattr("builtins.open", no_read)
    assert checkpoints.sha256_file(f) == hashlib.sha256(b"a" * 1000).hexdigest()
    monkeypatch.setattr("builtins.open", real_open)
    # same size, new content and mtime: hashed again
    f.write_bytes(b"b" * 1000)
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert checkpoints.sha256_file(f) == hashlib.sha256(b"b" * 1000).hexdigest()


def test_cache_can_be_switched_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(checkpoints.CACHE_ENV, "off")
    monkeypatch.setattr(checkpoints, "_HASHES", {})
    f = tmp_path / "w.pt"
    f.write_bytes(b"xyz")
    assert checkpoints.sha256_file(f) == hashlib.sha256(b"xyz").hexdigest()
    assert checkpoints._hash_cache_file() is None
