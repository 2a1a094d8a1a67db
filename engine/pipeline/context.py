"""What a pipeline run needs besides its config: the reporter and the model cache.

Why a cache object even for one-shot commands: the ``serve`` worker keeps one :class:`ModelCache`
for its whole life so the second take reuses the networks of the first; a one-shot command
gets a fresh one. The pipeline code is the same either way, so what ``serve`` runs is exactly
what ``engine motion``/``engine animate`` run.

Keys: (kind, weights folder, device, precision, variant). Each entry also remembers the size and
mtime of its files, so replacing a weight file on disk makes the next request reload it.
Audio features (the HuBERT output, independent of seed and sampler) are cached by the audio's
content hash: re-taking the same line with a new seed skips the audio encoder.
"""
from __future__ import annotations

import gc
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, TypeVar

from engine.runner import Reporter

#: what a cache entry holds (a network set, audio features): the caller's loader decides
T = TypeVar("T")

#: audio-feature entries kept (each is n_windows x (L, F) floats: ~100 KB per 4 s of speech)
FEATURE_CACHE_SIZE = 16


def _fingerprint(paths: Iterable[Path]) -> tuple[tuple[str, int, int], ...]:
    out = []
    for p in paths:
        try:
            st = Path(p).stat()
            out.append((str(p), st.st_size, st.st_mtime_ns))
        except OSError:
            out.append((str(p), -1, -1))
    return tuple(out)


class ModelCache:
    """Loaded networks keyed by (kind, weights folder, device, precision, variant); counts loads."""

    def __init__(self) -> None:
        self._models: dict[tuple[str, ...], tuple[tuple[tuple[str, int, int], ...], Any]] = {}
        self._features: OrderedDict[tuple[str, ...], Any] = OrderedDict()
        self.loads: Counter[str] = Counter()
        self.feature_hits = 0

    def get(self, key: tuple[str, ...], files: Iterable[Path], load: Callable[[], T]) -> T:
        """The cached object for ``key`` if its ``files`` are unchanged, else ``load()`` (counted)."""
        stamp = _fingerprint(files)
        hit = self._models.get(key)
        if hit is not None and hit[0] == stamp:
            return hit[1]
        self._models.pop(key, None)
        obj = load()
        self._models[key] = (stamp, obj)
        self.loads[key[0]] += 1
        return obj

    def features(self, key: tuple[str, ...], compute: Callable[[], T]) -> T:
        """Audio features by (model key, audio content hash); LRU of :data:`FEATURE_CACHE_SIZE`."""
        if key in self._features:
            self._features.move_to_end(key)
            self.feature_hits += 1
            return self._features[key]
        value = compute()
        self._features[key] = value
        while len(self._features) > FEATURE_CACHE_SIZE:
            self._features.popitem(last=False)
        return value

    @property
    def keys(self) -> list[tuple[str, ...]]:
        return list(self._models)

    def loaded(self, kind: str) -> list[Any]:
        """The cached objects of one kind ("motion", "stage_one"), e.g. to inspect their precision."""
        return [obj for key, (_stamp, obj) in self._models.items() if key[0] == kind]

    def release(self) -> int:
        """Drop every network and cached feature; return GPU memory to the driver (e.g. for Cycles)."""
        n = len(self._models)
        self._models.clear()
        self._features.clear()
        gc.collect()
        import sys

        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()
        return n


@dataclass
class Context:
    """One run of a pipeline function: where events go and where networks come from."""

    reporter: Reporter
    models: ModelCache = field(default_factory=ModelCache)
