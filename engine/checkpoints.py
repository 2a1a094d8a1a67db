"""The one safe loader for every official checkpoint file (LivePortrait .pth, JoyVASA .pt, HuBERT .bin).

Every file is opened with ``torch.load(path, map_location="cpu", weights_only=True)``: torch's
restricted unpickler only rebuilds tensors and plain containers, so a pickle that tries to run
code is refused (→ :class:`WeightsCorrupt`). Containers that need extra classes (e.g.
``argparse.Namespace`` in the JoyVASA ``.pt``) pass them explicitly as ``allowed_globals``.
All errors name the file and end with :data:`OFFICIAL_WEIGHTS_HINT`.

Zip-format files are memory-mapped (``mmap=True``): tensors are read from the page cache when a
network copies them in, instead of being read into a second buffer first (cold start). The
SHA-256 recorded for provenance is cached by (path, size, mtime) so a 400 MB checkpoint is not
re-hashed on every run (:func:`sha256_file`).
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn

from engine.errors import OFFICIAL_WEIGHTS_HINT, WeightsCorrupt, WeightsMissing

#: where cached SHA-256 digests live (override with $JOYVASA_CACHE_DIR; "off" disables the file)
CACHE_ENV = "JOYVASA_CACHE_DIR"


def safe_torch_load(path: str | Path, *, what: str = "weight file", allowed_globals: Sequence[Any] = (),
                    mmap: bool = True) -> Any:
    """``torch.load`` with ``weights_only=True``; missing/truncated/unsafe files raise engine errors."""
    path = Path(path)
    if path.is_dir():
        raise WeightsMissing(f"{what} {path} is a folder, expected a file. {OFFICIAL_WEIGHTS_HINT}")
    if not path.is_file():
        raise WeightsMissing(f"missing {what} {path}. {OFFICIAL_WEIGHTS_HINT}")
    use_mmap = mmap and zipfile.is_zipfile(path)  # legacy (non-zip) pickles cannot be mapped
    try:
        if allowed_globals:
            with torch.serialization.safe_globals(list(allowed_globals)):
                return torch.load(path, map_location="cpu", weights_only=True, mmap=use_mmap)
        return torch.load(path, map_location="cpu", weights_only=True, mmap=use_mmap)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        if "weights only load failed" in text.lower():
            raise WeightsCorrupt(
                f"refused to load {what} {path}: it contains pickled objects that are not allowed in a weights "
                f"file (only tensors and plain containers are; possible code is never executed: "
                f"{_unpickler_reason(text)}). "
                f"Re-download the file from the official source. {OFFICIAL_WEIGHTS_HINT}") from None
        raise WeightsCorrupt(f"{what} {path} is corrupt or truncated ({_first_line(exc)}). Re-download it. "
                             f"{OFFICIAL_WEIGHTS_HINT}") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError, KeyError) as exc:
        raise WeightsCorrupt(f"{what} {path} is corrupt or truncated (torch.load failed: {_first_line(exc)}). "
                             f"Re-download it. {OFFICIAL_WEIGHTS_HINT}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def _unpickler_reason(text: str) -> str:
    """The restricted unpickler's own reason (e.g. 'Unsupported global: GLOBAL posix.system')."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for i, line in enumerate(lines):
        if "WeightsUnpickler error:" in line:
            rest = line.split("WeightsUnpickler error:", 1)[1].strip()
            return rest or (lines[i + 1] if i + 1 < len(lines) else "unsupported content")
        if "unsupported" in line.lower() and not line.startswith("Weights only load failed"):
            return line.rstrip(".")
    return "unsupported content"


def check_state_dict(expected: Mapping[str, Sequence[int]], state: Any, path: str | Path) -> None:
    """Raise :class:`WeightsCorrupt` naming the first missing, unexpected or mis-shaped key."""
    if not isinstance(state, Mapping):
        raise WeightsCorrupt(f"{path} does not hold a state dict (found {type(state).__name__}). "
                             f"{OFFICIAL_WEIGHTS_HINT}")
    missing = [k for k in expected if k not in state]
    if missing:
        raise WeightsCorrupt(f"{path} is missing key {missing[0]!r} ({len(missing)} missing in all): "
                             f"not the expected network or size. {OFFICIAL_WEIGHTS_HINT}")
    unexpected = [k for k in state if k not in expected]
    if unexpected:
        raise WeightsCorrupt(f"{path} has unexpected key {unexpected[0]!r} ({len(unexpected)} unexpected in "
                             f"all): not the expected network or size. {OFFICIAL_WEIGHTS_HINT}")
    for key, shape in expected.items():
        value = state[key]
        if not isinstance(value, torch.Tensor):
            raise WeightsCorrupt(f"{path}: key {key!r} is not a tensor ({type(value).__name__}). "
                                 f"{OFFICIAL_WEIGHTS_HINT}")
        if tuple(value.shape) != tuple(shape):
            raise WeightsCorrupt(f"{path}: key {key!r} has shape {tuple(value.shape)}, expected {tuple(shape)} "
                                 f"(weights of a different model size?). {OFFICIAL_WEIGHTS_HINT}")


def load_state_dict_strict(module: nn.Module, state: Any, path: str | Path, *,
                           expected: Mapping[str, Sequence[int]] | None = None,
                           convert: Callable[[Mapping[str, torch.Tensor]], Mapping[str, torch.Tensor]] | None = None,
                           ) -> None:
    """Check keys/shapes (against ``expected`` or ``module``'s own state dict) with clear errors,
    optionally ``convert`` the checked dict (e.g. fold spectral norm), then load strictly."""
    if expected is None:
        expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    check_state_dict(expected, state, path)
    if convert is not None:
        state = convert(state)
    module.load_state_dict(dict(state), strict=True)


def strip_module_prefix(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove every ``'module.'`` substring from the keys (DDP prefix), as upstream does."""
    return {k.replace("module.", ""): v for k, v in state.items()}


# -- provenance hash, cached -------------------------------------------------------------------------
_HASHES: dict[tuple[str, int, int], str] = {}


def _hash_cache_file() -> Path | None:
    raw = os.environ.get(CACHE_ENV, "")
    if raw.strip().lower() == "off":
        return None
    base = Path(raw) if raw else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "joyvasa"
    return base / "sha256.json"


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a (possibly 400 MB) file, cached in memory and on disk by (path, size, mtime_ns).

    Why: the motion file records the checkpoint's hash for reproducibility; hashing 400 MB costs
    ~0.5 s per run. A file that changes gets a new size or mtime and is hashed again.
    """
    path = Path(path).resolve()
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key in _HASHES:
        return _HASHES[key]
    cache_file = _hash_cache_file()
    stored: dict[str, Any] = {}
    if cache_file is not None and cache_file.is_file():
        try:
            stored = json.loads(cache_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            stored = {}
    entry = stored.get(key[0]) if isinstance(stored, dict) else None
    if isinstance(entry, dict) and entry.get("size") == st.st_size and entry.get("mtime_ns") == st.st_mtime_ns:
        _HASHES[key] = str(entry["sha256"])
        return _HASHES[key]
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    digest = h.hexdigest()
    _HASHES[key] = digest
    if cache_file is not None:
        stored = stored if isinstance(stored, dict) else {}
        stored[key[0]] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest}
        try:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache_file.with_name(f"{cache_file.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(stored, indent=0), encoding="utf-8")
            os.replace(tmp, cache_file)
        except OSError:
            pass  # a read-only home only costs the re-hash next time
    return digest
