"""Safe loading of the JoyVASA motion-generator checkpoint and the sizes it implies.

Loading goes through the one safe loader, :func:`engine.checkpoints.safe_torch_load`. Why a
restricted load: the official ``.pt`` is ``{'args': argparse.Namespace, 'model': OrderedDict,
'iter': int}``; ``args`` contains a ``pathlib.PosixPath``. A full unpickle would
run arbitrary code from a downloaded file, so we use ``torch.load(weights_only=True)`` with an
allow-list of exactly the extra types the container needs. Paths are rebuilt as *pure* paths
(``PurePosixPath``/``PureWindowsPath``) so a checkpoint saved on Linux also loads on Windows.

Architecture sizes come from tensor shapes first (both the (D=73, P=10) and the first-upload
(D=70, P=25) generations exist), ``args`` second (upstream spec §2.1, §2.2, §6).
"""
from __future__ import annotations

import argparse
import pathlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import OFFICIAL_WEIGHTS_HINT, WeightsCorrupt

#: exactly the non-tensor types the official container pickles (besides OrderedDict, which
#: torch's weights-only unpickler already allows)
SAFE_GLOBALS: list[Any] = [
    argparse.Namespace,
    (pathlib.PurePosixPath, "pathlib.PosixPath"),
    (pathlib.PureWindowsPath, "pathlib.WindowsPath"),
    (pathlib.PurePosixPath, "pathlib._local.PosixPath"),      # Python >= 3.13 pickles
    (pathlib.PureWindowsPath, "pathlib._local.WindowsPath"),
]


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """The motion-generator container through the one safe loader (:func:`engine.checkpoints.safe_torch_load`)
    with the allow-list above; a bare state dict is wrapped as ``{"model": ...}``."""
    from engine.checkpoints import safe_torch_load

    obj = safe_torch_load(path, what="JoyVASA motion-generator checkpoint", allowed_globals=SAFE_GLOBALS)
    if isinstance(obj, dict) and "model" in obj:
        return obj
    if isinstance(obj, dict) and any(k.startswith("denoising_net.") for k in obj):
        return {"args": None, "model": obj, "iter": None}  # a bare state dict
    raise WeightsCorrupt(f"{path} is not a JoyVASA motion-generator checkpoint (no 'model' state dict). "
                         f"{OFFICIAL_WEIGHTS_HINT}")


@dataclass(frozen=True)
class MotionGenConfig:
    """Sizes of one motion-generator checkpoint (read from tensors, then ``args``)."""

    motion_feat_dim: int   # D (73 official, 70 first upload)
    n_motions: int         # L, frames per window
    n_prev_motions: int    # P, context frames
    feature_dim: int       # F
    n_diff_steps: int      # N
    n_layers: int          # decoder layers (8, fixed by the upstream constructor)
    n_heads: int           # 8, fixed by the upstream constructor (not inferable from tensors)
    audio_model: str       # 'hubert_zh' | 'hubert_zh_ori' | 'hubert' | 'wav2vec2'
    fps: float             # 25
    pad_mode: str          # 'zero' | 'replicate'
    audio_hidden: int      # width of the audio encoder output (768 official)

    @property
    def n_tokens(self) -> int:
        return self.n_prev_motions + self.n_motions


def _arg(args: Any, name: str, default: Any) -> Any:
    value = getattr(args, name, None) if args is not None else None
    return default if value is None else value


def config_from_checkpoint(ckpt: dict[str, Any]) -> MotionGenConfig:
    sd = ckpt["model"]
    args = ckpt.get("args")
    try:
        _, P, D = sd["start_motion_feat"].shape               # (1,P,D)
        F = int(sd["start_audio_feat"].shape[-1])              # (1,P,F)
        S = int(sd["denoising_net.alignment_mask"].shape[0])   # (S,S), S = P + L
        N = int(sd["diffusion_sched.betas"].shape[0]) - 1      # (N+1,)
        audio_hidden = int(sd["audio_feature_map.weight"].shape[1])  # Linear(H -> F)
    except KeyError as exc:
        raise WeightsCorrupt(f"motion-generator checkpoint lacks tensor {exc.args[0]!r}") from None
    layers = {k.split(".")[3] for k in sd if k.startswith("denoising_net.transformer.layers.")}
    L = S - int(P)
    n_motions_arg = _arg(args, "n_motions", L)
    if int(n_motions_arg) != L:
        raise WeightsCorrupt(f"checkpoint args.n_motions={n_motions_arg} disagrees with its tensors (L={L})")
    return MotionGenConfig(
        motion_feat_dim=int(D), n_motions=L, n_prev_motions=int(P), feature_dim=F, n_diff_steps=N,
        n_layers=len(layers), n_heads=8, audio_model=str(_arg(args, "audio_model", "hubert_zh")),
        fps=float(_arg(args, "fps", 25)), pad_mode=str(_arg(args, "pad_mode", "zero")),
        audio_hidden=audio_hidden,
    )


def sub_state_dict(sd: dict[str, Any], prefix: str) -> dict[str, Any]:
    return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
