"""X-Pose's prompt embeddings: the shipped plain-array file, and the restricted reader for upstream's pickles.

Why: X-Pose is prompted with CLIP text embeddings that LivePortrait precomputed and pickled
(``clip_embedding_{9,68}.pkl``, MIT): float16 tensors saved on ``cuda:0``, so a plain unpickle
fails without CUDA and runs torch's storage loader. The engine ships the same numbers converted
once into ``data/xpose_prompts.npz`` (plain arrays, read with ``allow_pickle=False``; notice in
``data/xpose_prompts.LICENSE``), so no pickle is opened at run time. :func:`read_prompt_pickle` is
for the conversion and for reference folders that carry their own prompt pickles (parity): it
admits only the three rebuild calls such a file needs and maps every storage to the CPU.

    python -m engine.framing.xpose_prompts SRC_DIR     # re-create data/xpose_prompts.npz
"""
from __future__ import annotations

import collections
import io
import pickle
import sys
from pathlib import Path

import numpy as np

DATA = Path(__file__).with_name("data")
PROMPTS_FILE = DATA / "xpose_prompts.npz"
#: keypoint prompt sets upstream ships: 9 animal-face points (what framing uses) and 68 face points
SETS = (9, 68)
#: the 9 points, in upstream's order (``predefined_keypoints.animal_face``)
POINT_NAMES_9 = ("right eye right", "right eye left", "left eye right", "left eye left", "nose tip",
                 "lip right", "lip left", "upper lip", "lower lip")


class PromptError(ValueError):
    """A prompt file is missing, unsafe or not the expected shape."""


def _load_storage_bytes(data: bytes) -> object:
    import torch

    # the inner object is one storage saved by torch.save: the weights-only reader handles it
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


class _PromptUnpickler(pickle.Unpickler):
    """Admits exactly what a pickled tuple of tensors needs; anything else is refused, never run."""

    def find_class(self, module: str, name: str) -> object:
        import torch

        allowed = {
            ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
            ("torch.storage", "_load_from_bytes"): _load_storage_bytes,
            ("collections", "OrderedDict"): collections.OrderedDict,
        }
        fn = allowed.get((module, name))
        if fn is None:
            raise pickle.UnpicklingError(f"refused global {module}.{name}")
        return fn


def read_prompt_pickle(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(instance (1, 512), keypoints (K, 512)) from an upstream ``clip_embedding_K.pkl``, dtype kept."""
    import torch

    p = Path(path)
    if not p.is_file():
        raise PromptError(f"prompt file {p} not found")
    try:
        with open(p, "rb") as fh:
            obj = _PromptUnpickler(fh).load()
    except (pickle.UnpicklingError, EOFError, RuntimeError, ValueError, TypeError, AttributeError) as exc:
        raise PromptError(f"{p} is not an X-Pose prompt pickle ({type(exc).__name__}: {exc})") from None
    if (not isinstance(obj, tuple) or len(obj) != 2 or not all(isinstance(t, torch.Tensor) for t in obj)
            or obj[0].ndim != 2 or obj[1].ndim != 2 or obj[0].shape[1] != obj[1].shape[1]):
        raise PromptError(f"{p} does not hold (instance, keypoints) embedding tensors")
    return obj[0].detach().cpu().numpy(), obj[1].detach().cpu().numpy()


def load_prompts(k: int = 9, path: Path = PROMPTS_FILE) -> tuple[np.ndarray, np.ndarray]:
    """The shipped (instance, keypoints) embeddings for ``k`` points (float16, as upstream stores them)."""
    if k not in SETS:
        raise PromptError(f"no X-Pose prompt set with {k} points (have {SETS})")
    try:
        with np.load(path, allow_pickle=False) as z:
            return np.array(z[f"instance_{k}"]), np.array(z[f"keypoints_{k}"])
    except (OSError, KeyError, ValueError) as exc:
        raise PromptError(f"{path} is missing or damaged ({exc}); reinstall the engine") from None


def convert(src_dir: Path, out: Path = PROMPTS_FILE) -> Path:
    """Upstream's two pickles in ``src_dir`` → one ``.npz`` of plain float16 arrays (bit-equal)."""
    from engine.fileio import atomic_path

    arrays: dict[str, np.ndarray] = {}
    for k in SETS:
        ins, kpt = read_prompt_pickle(Path(src_dir) / f"clip_embedding_{k}.pkl")
        if kpt.shape[0] != k:
            raise PromptError(f"clip_embedding_{k}.pkl holds {kpt.shape[0]} keypoint rows, expected {k}")
        arrays[f"instance_{k}"], arrays[f"keypoints_{k}"] = ins, kpt
    with atomic_path(out, suffix=".npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)
    return out


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m engine.framing.xpose_prompts SRC_DIR (holding clip_embedding_9.pkl, _68.pkl)")
    print(convert(Path(sys.argv[1])))
