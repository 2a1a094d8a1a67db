"""LivePortrait motion template (``.pkl``): the driving-template dict LivePortrait writes for a
driving video and accepts back as ``-d template.pkl`` (also FasterLivePortrait, ComfyUI nodes).

    {"n_frames": int, "output_fps": int,
     "motion": [{"scale": (1,1), "R": (1,3,3), "exp": (1,21,3), "t": (1,3)} float32, ...],
     "c_eyes_lst": [(1,2) float32, ...], "c_lip_lst": [(1,1) float32, ...]}

``R`` is LivePortrait's ``get_rotation_matrix`` output (row-vector convention), which is
exactly the motion file's ``R``. Plain ``pickle`` (protocol 4) of numpy arrays and built-in
types only, so a reader can load it with an unpickler that admits numpy arrays and nothing else.

``c_eyes_lst`` / ``c_lip_lst`` are LivePortrait's eye- and lip-open ratios of the driving
frames. We have no driving landmarks; LivePortrait's loader nevertheless looks the keys up, so
they are filled from the semantic readout (eye open = ``EYE_OPEN * (1 - blink)``, lip open =
``LIP_OPEN_MAX * jawOpen``). They are only read when LivePortrait's eye/lip retargeting is on.
"""
from __future__ import annotations

import math
import pickle
from pathlib import Path
from typing import Any

import numpy as np

import engine.export.arkit as arkit
from engine.motion.npz import MotionData

EYE_OPEN = 0.35       # LivePortrait's typical open-eye ratio
LIP_OPEN_MAX = 0.5    # lip ratio at jawOpen = 1


def template(frames: MotionData) -> dict[str, Any]:
    n = frames.n_frames
    f32 = np.float32
    scale = np.asarray(frames.scale, f32).reshape(n)
    weights = arkit.channel_weights(frames.exp, groups=("mouth", "eyes"))
    eyes = np.stack([EYE_OPEN * (1 - weights["eyeBlinkLeft"]), EYE_OPEN * (1 - weights["eyeBlinkRight"])], 1)
    lip = LIP_OPEN_MAX * weights["jawOpen"]
    motion = [{"scale": scale[i].reshape(1, 1).copy(),
               "R": np.asarray(frames.R[i], f32).reshape(1, 3, 3).copy(),
               "exp": np.asarray(frames.exp[i], f32).reshape(1, 21, 3).copy(),
               "t": np.asarray(frames.t[i], f32).reshape(1, 3).copy()} for i in range(n)]
    return {"n_frames": int(n), "output_fps": int(round(frames.fps)), "motion": motion,
            "c_eyes_lst": [eyes[i].reshape(1, 2).astype(f32) for i in range(n)],
            "c_lip_lst": [np.array([[lip[i]]], f32) for i in range(n)]}


class _Numpy1CompatPickler(pickle._Pickler):  # type: ignore[name-defined]
    """Names numpy's array reconstruction ``numpy.core.multiarray._reconstruct``, which numpy 1.x
    has and numpy 2.x still resolves (to ``numpy._core``): a pickle written by numpy 2 names
    ``numpy._core.multiarray`` and fails in numpy-1.x clients (FasterLivePortrait, many ComfyUI
    installs) with ``No module named 'numpy._core'``. The pure-Python pickler is used because its
    ``save_global`` can be overridden; the template is small."""

    def save_global(self, obj: Any, name: str | None = None) -> None:
        module = getattr(obj, "__module__", "") or ""
        if module.startswith("numpy._core."):
            self.save("numpy.core." + module[len("numpy._core."):])
            self.save(name or obj.__qualname__)
            self.write(pickle.STACK_GLOBAL)
            self.memoize(obj)
            return
        super().save_global(obj, name)


#: LivePortrait stores ``output_fps`` as an integer: a template must play at a whole frame rate
def integer_fps(fps: float) -> int:
    """The whole frame rate an lp-pkl export is resampled to (12.5 -> 13: the template then lasts
    as long as the audio, instead of 75 frames at 12 fps = 6.25 s against 6.0 s of audio)."""
    return max(1, int(math.floor(float(fps) + 0.5)))


def write_pkl(path: Path, frames: MotionData) -> None:
    if abs(frames.fps - round(frames.fps)) > 1e-6:
        raise ValueError(f"lp-pkl needs a whole frame rate, got {frames.fps:g} (engine.export resamples first)")
    with open(path, "wb") as fh:
        _Numpy1CompatPickler(fh, protocol=4).dump(template(frames))
