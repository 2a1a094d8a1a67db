"""De-normalisation of generated motion with ``motion_template.pkl`` (upstream spec §2.7).

The template is a pickle (protocol 4) of 35 float32 numpy arrays. A pickle can run code, so it
is read with a restricted :class:`pickle.Unpickler` whose ``find_class`` admits only what numpy
arrays and scalars need; anything else raises :class:`WeightsCorrupt`.
"""
from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.errors import WeightsCorrupt, WeightsMissing, OFFICIAL_WEIGHTS_HINT

if TYPE_CHECKING:
    import torch

#: (module, name) pairs a dict of numpy arrays may reference (numpy 1.x and 2.x spellings)
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("builtins", "dict"),
    ("collections", "OrderedDict"),
}

#: keys inference reads (spec §2.7)
REQUIRED_KEYS = ("mean_exp", "std_exp", "min_scale", "max_scale", "min_t", "max_t",
                 "min_pitch", "max_pitch", "min_yaw", "max_yaw", "min_roll", "max_roll")


class _ArraysOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise WeightsCorrupt(f"motion template refers to {module}.{name}; only numpy arrays are allowed "
                                 "(refusing to run code from a weights file)")
        return super().find_class(module, name)


def load_template(path: str | Path) -> dict[str, np.ndarray]:
    path = Path(path)
    if not path.is_file():
        raise WeightsMissing(f"missing motion template {path}. {OFFICIAL_WEIGHTS_HINT}")
    try:
        data = _ArraysOnlyUnpickler(io.BytesIO(path.read_bytes())).load()
    except WeightsCorrupt as exc:  # name the file
        raise WeightsCorrupt(f"{path}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a damaged file
        raise WeightsCorrupt(f"motion template {path} is unreadable: {type(exc).__name__}: {exc}") from exc
    if not isinstance(data, dict):
        raise WeightsCorrupt(f"motion template {path} is not a dict of arrays")
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise WeightsCorrupt(f"motion template {path} lacks {', '.join(missing)}")
    out = {k: np.asarray(v) for k, v in data.items()}
    check_template(out, path)
    return out


#: values per statistic that :func:`denormalize` reads (exp: 21 x 3 offsets; t: x, y, z)
TEMPLATE_SIZES = {"exp": 63, "scale": 1, "t": 3, "pitch": 1, "yaw": 1, "roll": 1}


def check_template(data: dict[str, np.ndarray], path: Path) -> None:
    """Each statistic :func:`denormalize` reads is finite numbers of the size it needs, so a
    damaged template is ``weights_corrupt`` at load, not a broadcasting error after sampling."""
    for key in REQUIRED_KEYS:
        arr = data[key]
        want = TEMPLATE_SIZES[key.split("_", 1)[1]]
        if arr.dtype.kind not in "fiu" or arr.size != want:
            raise WeightsCorrupt(f"motion template {path}: {key!r} must be {want} number(s), got "
                                 f"{arr.dtype.str} of shape {arr.shape}")
        if not np.all(np.isfinite(arr)):
            raise WeightsCorrupt(f"motion template {path}: {key!r} contains NaN or infinite values")


def _rotation_matrix(pitch: torch.Tensor, yaw: torch.Tensor, roll: torch.Tensor) -> torch.Tensor:
    """R from degrees, (B,1) -> (B,3,3) (spec §1.3; shared with the renderer)."""
    from engine.models.keypoints import rotation_matrix

    return rotation_matrix(pitch, yaw, roll)


def rotation_matrix_np(pitch: np.ndarray, yaw: np.ndarray, roll: np.ndarray) -> np.ndarray:
    import torch

    to_t = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32).reshape(-1))  # noqa: E731
    return _rotation_matrix(to_t(pitch), to_t(yaw), to_t(roll)).numpy().astype(np.float32)


def denormalize(coef: np.ndarray, template: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Normalised (n, >=70) model output -> exp/scale/t/pitch/yaw/roll/R (upstream arithmetic).

    Upstream multiplies a torch float32 tensor by numpy float32 arrays; ``max - min`` is
    formed in numpy first. Indices 70.. (D = 73) are ignored as upstream does.
    """
    import torch

    v = torch.from_numpy(np.ascontiguousarray(coef, dtype=np.float32))     # (n,D)
    f32 = lambda k: torch.from_numpy(np.asarray(template[k], dtype=np.float32))  # noqa: E731
    rng = lambda k: torch.from_numpy(np.asarray(template[f"max_{k}"], dtype=np.float32)  # noqa: E731
                                     - np.asarray(template[f"min_{k}"], dtype=np.float32))
    n = v.shape[0]
    exp = v[:, :63] * f32("std_exp") + f32("mean_exp")                     # (n,63)
    scale = v[:, 63:64] * rng("scale") + f32("min_scale")                  # (n,1)
    t = v[:, 64:67] * rng("t") + f32("min_t")                              # (n,3)
    pitch = v[:, 67:68] * rng("pitch") + f32("min_pitch")                  # (n,1)
    yaw = v[:, 68:69] * rng("yaw") + f32("min_yaw")
    roll = v[:, 69:70] * rng("roll") + f32("min_roll")
    R = _rotation_matrix(pitch, yaw, roll) if n else torch.zeros(0, 3, 3)  # (n,3,3)
    return {"exp": exp.reshape(n, 21, 3).numpy(), "scale": scale.numpy(), "t": t.numpy(),
            "pitch": pitch.numpy(), "yaw": yaw.numpy(), "roll": roll.numpy(),
            "R": R.numpy().astype(np.float32)}
