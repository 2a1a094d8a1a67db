"""Typed check of the audio encoder's ``config.json`` before anything is built from it.

Why: ``"hidden_size": "big"`` ended ``internal`` with a traceback from deep inside model
construction; a wrong value in a weights folder is ``weights_corrupt`` naming the file and key.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from engine.errors import WeightsCorrupt

#: integer fields the encoder is built from, with the largest sane value
INT_FIELDS = {"hidden_size": 1 << 16, "num_hidden_layers": 256, "num_attention_heads": 1024,
              "intermediate_size": 1 << 18, "num_conv_pos_embeddings": 4096, "num_conv_pos_embedding_groups": 4096}
LIST_FIELDS = ("conv_dim", "conv_kernel", "conv_stride")


def check_encoder_config(raw: Any, path: Path) -> None:
    """``weights_corrupt`` naming ``path`` and the key when a field has the wrong type or range."""
    if not isinstance(raw, dict):
        raise WeightsCorrupt(f"{path} must hold a JSON object (the audio encoder's settings)")

    def bad(key: str, want: str) -> WeightsCorrupt:
        return WeightsCorrupt(f"{path}: {key!r} must be {want}, got {str(raw[key])[:60]!r}; the audio encoder's "
                              "config.json is damaged (download chinese-hubert-base again)")

    for key, top in INT_FIELDS.items():
        if key in raw and (isinstance(raw[key], bool) or not isinstance(raw[key], int) or not 1 <= raw[key] <= top):
            raise bad(key, f"a whole number from 1 to {top}")
    lengths = set()
    for key in LIST_FIELDS:
        if key in raw:
            v = raw[key]
            if not isinstance(v, list) or not v or len(v) > 64 or any(
                    isinstance(x, bool) or not isinstance(x, int) or not 1 <= x <= 1 << 16 for x in v):
                raise bad(key, "a list of whole numbers")
            lengths.add(len(v))
    if len(lengths) > 1:
        raise WeightsCorrupt(f"{path}: {', '.join(LIST_FIELDS)} must have the same length")
    eps = raw.get("layer_norm_eps")
    if eps is not None and (isinstance(eps, bool) or not isinstance(eps, (int, float)) or not math.isfinite(eps)
                            or not 0 < eps < 1):
        raise bad("layer_norm_eps", "a small positive number")
    heads, hidden = raw.get("num_attention_heads", 12), raw.get("hidden_size", 768)
    if hidden % heads:
        raise WeightsCorrupt(f"{path}: hidden_size {hidden} is not a multiple of num_attention_heads {heads}")
