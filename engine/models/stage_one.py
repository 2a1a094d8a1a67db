"""LivePortrait stage one: F, M, W, G, S loaded from the official files, plus the source path.

This is the API the animation pipeline builds on: ``StageOne.load(layout)``, ``extract(image)``
→ :class:`SourceInfo`, ``warp_decode(f_s, x_s, x_d)`` → frames in (0,1), ``stitch``, and
:func:`frames_to_uint8`. Upstream equivalent: ``LivePortraitWrapper`` @1986663 (spec §1.7).

Speed options (all opt-in except the two exact folds):
* spectral norm of G is always folded at load (exact, see spade.py);
* eval BatchNorm is folded into the preceding conv by default (``fold_bn=True``; rounding-level
  differences, ~1e-7 relative; ``fold_bn=False`` keeps upstream's two-step path);
* ``dtype`` is the one precision of W+G (:func:`engine.device.select_precision`): float32 (default);
  bfloat16 = bf16-resident channels-last conv weights under autocast, precision-sensitive layers
  float32 (what ``bench render`` measures and ``animate --dtype bf16`` runs); float16 = autocast
  over float32 weights (GPUs). F and M always run float32 (once per portrait).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch import nn

from engine.checkpoints import load_state_dict_strict, safe_torch_load, strip_module_prefix, check_state_dict
from engine.errors import OFFICIAL_WEIGHTS_HINT, ImageError, WeightsCorrupt
from engine.models.appearance import AppearanceFeatureExtractor
from engine.models.blocks import fold_batchnorm
from engine.models.config import LivePortraitConfig
from engine.models.keypoints import rotation_matrix, transform_keypoint
from engine.models.motion_extractor import MotionExtractor
from engine.models.spade import SPADEDecoder, fold_spectral_norm
from engine.models.stitching import CHECKPOINT_ENTRIES, StitchingRetargetingNetwork, stitch
from engine.models.warping import WarpingNetwork
from engine.weights import WeightsLayout

INPUT_SIZE = 256


@dataclass
class SourceInfo:
    """Everything the animation needs about the source portrait (torch tensors, batch 1)."""

    f_s: torch.Tensor    # (1, 32, 16, 64, 64) appearance volume
    x_c: torch.Tensor    # (1, 21, 3) canonical keypoints (M "kp")
    exp: torch.Tensor    # (1, 21, 3) expression deformation
    scale: torch.Tensor  # (1, 1)
    t: torch.Tensor      # (1, 3)
    pitch: torch.Tensor  # (1, 1) degrees
    yaw: torch.Tensor    # (1, 1) degrees
    roll: torch.Tensor   # (1, 1) degrees
    R: torch.Tensor      # (1, 3, 3) rotation, keypoints multiply on the right
    x_s: torch.Tensor    # (1, 21, 3) transformed source keypoints


def preprocess_image(image: np.ndarray) -> torch.Tensor:
    """RGB uint8 H×W×3 → (1, 3, 256, 256) float32 in [0, 1] (cv2 INTER_LINEAR resize if needed)."""
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        raise ImageError(f"expected an RGB image array H×W×3, got {getattr(image, 'shape', type(image))}")
    if image.shape[0] != INPUT_SIZE or image.shape[1] != INPUT_SIZE:
        import cv2

        image = cv2.resize(image, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_LINEAR)
    x = image[np.newaxis].astype(np.float32) / 255.0  # (1, 256, 256, 3)
    x = np.clip(x, 0, 1)
    return torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()  # (1, 3, 256, 256)


def read_image_rgb(path: str | Path) -> np.ndarray:
    """cv2.imread → RGB uint8 (what upstream's ``load_image_rgb`` does)."""
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise ImageError(f"cannot read image {path} (missing, unreadable or not an image)")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def frames_to_uint8(out: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) float → (B, H, W, 3) uint8: clip [0,1], ×255, clip, truncating cast (upstream)."""
    arr = np.transpose(out.detach().float().cpu().numpy(), [0, 2, 3, 1])
    arr = np.clip(arr, 0, 1)
    return np.clip(arr * 255, 0, 255).astype(np.uint8)


def _as_dtype(dtype: torch.dtype | str | None) -> torch.dtype:
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    from engine.contract.protocol import canonical_dtype

    names = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    name = canonical_dtype(dtype)
    if name not in names:
        raise ValueError(f"unsupported dtype {dtype!r} (float32, bfloat16 or float16)")
    return names[name]


class StageOne:
    """The five LivePortrait networks in eval mode on one device."""

    def __init__(self, cfg: LivePortraitConfig, appearance: AppearanceFeatureExtractor, motion: MotionExtractor,
                 warping: WarpingNetwork, generator: SPADEDecoder, mlps: dict[str, nn.Module],
                 device: str | torch.device = "cpu", dtype: torch.dtype | str | None = None) -> None:
        self.cfg = cfg
        self.device = torch.device(device)
        self.dtype = _as_dtype(dtype)
        self.F = appearance.to(self.device).eval()
        self.M = motion.to(self.device).eval()
        self.W = warping.to(self.device).eval()
        self.G = generator.to(self.device).eval()
        self.S = {k: v.to(self.device).eval() for k, v in mlps.items()}
        self._channels_last = False

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, layout: WeightsLayout, device: str | torch.device = "cpu", *,
             dtype: torch.dtype | str | None = None, fold_bn: bool = True, fast: bool = True,
             config: LivePortraitConfig | None = None) -> "StageOne":
        """Load F, M, W, G, S from ``layout`` (sizes from ``layout.models_yaml`` if present).

        ``fold_bn=False, fast=False`` is upstream's exact op order; the defaults change only
        rounding (both are tested against the upstream reference).
        """
        cfg = config or LivePortraitConfig.for_weights(layout.models_yaml)
        app, mot = AppearanceFeatureExtractor(cfg.appearance), MotionExtractor(cfg.motion)
        warp, gen = WarpingNetwork(cfg.warping), SPADEDecoder(cfg.spade)
        for module, path, what in ((app, layout.appearance_feature_extractor, "appearance feature extractor"),
                                   (mot, layout.motion_extractor, "motion extractor"),
                                   (warp, layout.warping_module, "warping module")):
            load_state_dict_strict(module, safe_torch_load(path, what=f"LivePortrait {what}"), path)
        gpath = layout.spade_generator
        load_state_dict_strict(gen, safe_torch_load(gpath, what="LivePortrait SPADE generator"), gpath,
                               expected=gen.official_key_shapes(), convert=fold_spectral_norm)
        mlps = load_stitching(layout.stitching_retargeting, cfg)
        if fold_bn:
            fold_batchnorm(app)
            fold_batchnorm(warp)
        s1 = cls(cfg, app, mot, warp, gen, mlps, device=device, dtype=dtype)
        if fast:
            s1._speed_up()
        return s1

    def _speed_up(self) -> None:
        """Graph changes that keep the maths (rounding-level differences; parity-tested):

        * convs of the dense motion net whose channel counts are not multiples of 16
          (110→64, 142→142, 142→22) get zero-padded channels so oneDNN uses its fast kernels;
        * W's occlusion conv (2272→1, 7×7) runs as a channel GEMM + 49 shifted adds (TapSumConv2d);
        * SPADE: the ``1 +`` of ``1 + γ`` moves into mlp_gamma's bias and the modulation is one
          addcmul;
        * under bf16 the small precision-sensitive layers (occlusion, W third/fourth, G conv_img,
          ~13 GFLOP of 1234) stay float32;
        * bfloat16: conv weights stored channels-last (NHWC/NDHWC), the layout oneDNN's AMX/AVX-512
          bf16 kernels want; activations follow the weights' layout.
        """
        from engine.models.blocks import ChannelPaddedConv, Float32Island, TapSumConv2d, cast_weights, to_channels_last
        from engine.models.spade import SPADE

        dm = self.W.dense_motion_network
        hg = dm.hourglass
        if hg.encoder.down_blocks[0].conv.in_channels % 16:
            hg.encoder.down_blocks[0].conv = ChannelPaddedConv(hg.encoder.down_blocks[0].conv)
        if hg.decoder.conv.in_channels % 16:
            hg.decoder.conv = ChannelPaddedConv(hg.decoder.conv)
        if dm.mask.in_channels % 16 or dm.mask.out_channels % 16:
            dm.mask = ChannelPaddedConv(dm.mask)
        if isinstance(dm.occlusion, nn.Conv2d) and dm.occlusion.out_channels == 1:
            dm.occlusion = Float32Island(TapSumConv2d(dm.occlusion))
        # cheap, precision-sensitive layers stay float32 under bf16 autocast (PSNR 40.7 → ~42.5 dB)
        self.W.third.conv = Float32Island(self.W.third.conv)
        self.W.fourth = Float32Island(self.W.fourth)
        if isinstance(self.G.conv_img, nn.Sequential):
            self.G.conv_img[0] = Float32Island(self.G.conv_img[0])
        else:
            self.G.conv_img = Float32Island(self.G.conv_img)
        with torch.no_grad():
            for m in self.G.modules():
                if isinstance(m, SPADE) and not m.fast:
                    m.mlp_gamma.bias += 1
                    m.fast = True
        if self.dtype == torch.bfloat16:
            to_channels_last(self.W)
            to_channels_last(self.G)
            self._channels_last = True
            # store conv weights in bf16 once instead of autocast re-casting ~100M numbers per call
            cast_weights(self.W, torch.bfloat16)
            cast_weights(self.G, torch.bfloat16)

    # ------------------------------------------------------------------ source
    def preprocess(self, image: np.ndarray | torch.Tensor) -> torch.Tensor:
        if isinstance(image, torch.Tensor):
            x = image.float()
            if x.ndim == 3:
                x = x.unsqueeze(0)
            if x.shape[1:] != (3, INPUT_SIZE, INPUT_SIZE):
                raise ImageError(f"expected a (B, 3, 256, 256) tensor in [0,1], got {tuple(x.shape)}")
        else:
            x = preprocess_image(image)
        return x.to(self.device)

    @torch.no_grad()
    def extract(self, image: np.ndarray | torch.Tensor) -> SourceInfo:
        """F and M on the source (fp32 always: it runs once per portrait)."""
        x = self.preprocess(image)  # (1, 3, 256, 256)
        f_s = self.F(x)  # (1, C, D, 64, 64)
        info = self.M.kp_info(x)
        R = rotation_matrix(info["pitch"], info["yaw"], info["roll"])  # (1, 3, 3)
        x_s = transform_keypoint(info["kp"], R, info["exp"], info["scale"], info["t"])  # (1, K, 3)
        return SourceInfo(f_s=f_s, x_c=info["kp"], exp=info["exp"], scale=info["scale"], t=info["t"],
                          pitch=info["pitch"], yaw=info["yaw"], roll=info["roll"], R=R, x_s=x_s)

    # ------------------------------------------------------------------ per frame
    @contextlib.contextmanager
    def _precision(self) -> Iterator[None]:
        if self.dtype == torch.float32:
            yield
        else:
            with torch.autocast(device_type=self.device.type, dtype=self.dtype):
                yield

    @torch.no_grad()
    def warp(self, f_s: torch.Tensor, x_s: torch.Tensor, x_d: torch.Tensor) -> dict[str, torch.Tensor]:
        """W only; f_s and x_s (batch 1) are broadcast over the B driving keypoint sets (B, K, 3)."""
        b = x_d.shape[0]
        f_s = f_s.expand(b, *f_s.shape[1:]) if f_s.shape[0] != b else f_s
        x_s = x_s.expand(b, *x_s.shape[1:]) if x_s.shape[0] != b else x_s
        with self._precision():
            out = self.W(self._layout(f_s), kp_source=x_s, kp_driving=x_d)
        return {k: v.float().contiguous() for k, v in out.items()}

    @torch.no_grad()
    def decode(self, feature: torch.Tensor) -> torch.Tensor:
        with self._precision():
            return self.G(self._layout(feature)).float().contiguous()

    @torch.no_grad()
    def warp_decode(self, f_s: torch.Tensor, x_s: torch.Tensor, x_d: torch.Tensor) -> torch.Tensor:
        """W then G: (B, 3, 512, 512) float32 in (0, 1)."""
        b = x_d.shape[0]
        f_s = f_s.expand(b, *f_s.shape[1:]) if f_s.shape[0] != b else f_s
        x_s = x_s.expand(b, *x_s.shape[1:]) if x_s.shape[0] != b else x_s
        with self._precision():
            out = self.G(self._layout(self.W(self._layout(f_s), kp_source=x_s, kp_driving=x_d)["out"]))
        return out.float().contiguous()

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        if not self._channels_last:
            return x
        return x.contiguous(memory_format=torch.channels_last_3d if x.dim() == 5 else torch.channels_last)

    @torch.no_grad()
    def stitch(self, x_s: torch.Tensor, x_d: torch.Tensor) -> torch.Tensor:
        """Spec §1.6: x_d' = x_d + Δ (B, K, 3); x_s broadcast over the batch."""
        if x_s.shape[0] != x_d.shape[0]:
            x_s = x_s.expand(x_d.shape[0], *x_s.shape[1:])
        return stitch(self.S["stitching"], x_s, x_d)


def load_stitching(path: Path, cfg: LivePortraitConfig) -> dict[str, nn.Module]:
    """The three MLPs from the dict container; 'module.' substrings stripped as upstream does."""
    container = safe_torch_load(path, what="LivePortrait stitching/retargeting module")
    if not isinstance(container, dict):
        raise WeightsCorrupt(f"{path} does not hold the expected dict of state dicts "
                             f"(found {type(container).__name__}). {OFFICIAL_WEIGHTS_HINT}")
    mlps: dict[str, nn.Module] = {}
    for name, entry in CHECKPOINT_ENTRIES.items():
        if entry not in container:
            raise WeightsCorrupt(f"{path} is missing entry {entry!r} ({name} MLP). {OFFICIAL_WEIGHTS_HINT}")
        net = StitchingRetargetingNetwork(cfg.stitching[name])
        state = container[entry]
        check_state_dict({k: tuple(v.shape) for k, v in net.state_dict().items()},
                         strip_module_prefix(state) if isinstance(state, dict) else state, f"{path} [{entry}]")
        net.load_state_dict(strip_module_prefix(state), strict=True)
        mlps[name] = net
    return mlps
