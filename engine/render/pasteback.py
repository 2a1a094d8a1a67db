"""Paste the 512² rendered face back into the full-resolution portrait.

Upstream warps ``mask_template.png`` and each frame with the crop's inverse affine and blends
``clip(mask·frame + (1−mask)·original)``. We build an equivalent feathered mask ourselves
(the template is not part of the weights): 1 in the middle of the crop, a smooth fall-off to
0 towards the crop border. The warped mask and the float original are computed once.

:class:`PasteBack` runs on the CPU (cv2, frame by frame, on the writer thread);
:class:`DevicePasteBack` is the same blend in torch on the render device (CUDA/MPS), for whole
batches, so only finished uint8 frames leave the GPU.
"""
from __future__ import annotations

import cv2
import numpy as np
import torch

CROP_SIZE = 512


def feathered_mask(size: int = CROP_SIZE, margin: float = 0.08, feather: float = 0.10) -> np.ndarray:
    """(size,size) float32 in [0,1]: zero within ``margin`` of the border, ramp over ``feather``."""
    coord = (np.arange(size, dtype=np.float32) + 0.5) / size
    edge = np.minimum(coord, 1.0 - coord)                       # distance to nearest border, 0..0.5
    ramp = np.clip((edge - margin) / feather, 0.0, 1.0)
    ramp = ramp * ramp * (3 - 2 * ramp)                        # smoothstep
    return np.outer(ramp, ramp).astype(np.float32)             # (size,size)


class PasteBack:
    """Blend frames into ``original`` (H,W,3 uint8 RGB) through ``M_c2o`` (2x3 crop→original)."""

    def __init__(self, original: np.ndarray, M_c2o: np.ndarray, crop_size: int = CROP_SIZE) -> None:
        self.H, self.W = original.shape[:2]
        self.crop_size = crop_size
        self.original = original
        self.M = np.asarray(M_c2o, dtype=np.float64)
        mask = cv2.warpAffine(feathered_mask(crop_size), self.M, (self.W, self.H), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        self.mask = mask[..., None].astype(np.float32)             # (H,W,1)
        self.base = (1.0 - self.mask) * original.astype(np.float32)  # (H,W,3), the constant term

    @property
    def size(self) -> tuple[int, int]:
        return self.W, self.H

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        """(512,512,3) uint8 → (H,W,3) uint8."""
        warped = cv2.warpAffine(frame, self.M, (self.W, self.H), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        out = self.mask * warped.astype(np.float32) + self.base
        return np.clip(out, 0, 255).astype(np.uint8)


def frames_to_uint8_tensor(out: "torch.Tensor") -> "torch.Tensor":
    """(B,3,H,W) float → (B,H,W,3) uint8 on the same device, bit-equal to
    :func:`engine.models.stage_one.frames_to_uint8` (clip, ×255, clip, truncating cast).

    Why: on a GPU only the finished uint8 frame should cross to the CPU (4× fewer bytes than
    float32, and no CPU work in the render loop)."""
    return _u8_values(out).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def _u8_values(out: "torch.Tensor") -> "torch.Tensor":
    """The uint8 values of ``frames_to_uint8`` as float32 (B,3,H,W), still on the device."""
    return torch.trunc((out.float().clamp(0.0, 1.0) * 255.0).clamp(0.0, 255.0))


class DevicePasteBack:
    """:class:`PasteBack` in torch on the render device: (B,3,512,512) float → (B,H,W,3) uint8.

    Why: on CUDA/MPS the warp + blend of every frame would otherwise be CPU work between GPU
    batches. Same maths as the CPU path: the frame is cut to uint8 exactly as
    ``frames_to_uint8`` does, warped with bilinear interpolation through ``M_c2o`` (zero outside
    the crop, rounded to uint8 like ``cv2.warpAffine``), blended with the *same* warped mask and
    base (taken from the CPU :class:`PasteBack`, so those are bit-identical) and truncated. Only the
    pixels under the mask are computed; the rest of the portrait is copied. Tested equal to the
    CPU path within 1 grey level (cv2's own bilinear rounding differs from exact bilinear at ties).
    """

    def __init__(self, cpu: PasteBack, device: "torch.device | str", *, chunk_mb: float = 256.0) -> None:
        H, W, size = cpu.H, cpu.W, cpu.crop_size
        self.H, self.W, self.device = H, W, torch.device(device)
        mask = cpu.mask[..., 0]
        pix = np.flatnonzero(mask > 0)                              # output pixels the face touches
        ys, xs = np.divmod(pix, W)
        inv = cv2.invertAffineTransform(cpu.M)                      # original → crop coordinates
        sx = inv[0, 0] * xs + inv[0, 1] * ys + inv[0, 2]
        sy = inv[1, 0] * xs + inv[1, 1] * ys + inv[1, 2]
        x0, y0 = np.floor(sx), np.floor(sy)
        fx, fy = sx - x0, sy - y0
        x0, y0 = x0.astype(np.int64), y0.astype(np.int64)
        taps, weights = [], []
        for dy, dx, wgt in ((0, 0, (1 - fx) * (1 - fy)), (0, 1, fx * (1 - fy)),
                            (1, 0, (1 - fx) * fy), (1, 1, fx * fy)):
            yy, xx = y0 + dy, x0 + dx
            inside = (yy >= 0) & (yy < size) & (xx >= 0) & (xx < size)
            taps.append(np.where(inside, yy * size + xx, size * size))   # outside → the zero pixel
            weights.append(wgt)
        dev = self.device
        self.n_pix = int(pix.size)
        self.pix = torch.from_numpy(pix.astype(np.int64)).to(dev)
        self.taps = torch.from_numpy(np.stack(taps, 1).reshape(-1)).to(dev)          # (P*4,)
        self.weights = torch.from_numpy(np.stack(weights, 1).astype(np.float32)).to(dev)  # (P,4)
        self.mask = torch.from_numpy(mask.reshape(-1)[pix].astype(np.float32)).to(dev)[:, None]
        self.base = torch.from_numpy(cpu.base.reshape(-1, 3)[pix]).to(dev)            # (P,3)
        self.original = torch.from_numpy(np.ascontiguousarray(cpu.original).reshape(-1, 3)).to(dev)
        self.crop_size = size
        # frames per step: the gathered taps (P*4*3 float32) dominate; bound them (8 GB cards)
        self.chunk = max(1, int(chunk_mb * 2**20 // max(1, self.n_pix * 4 * 3 * 4 * 2)))
        # device memory held while pasting: the constant tables + one chunk's working set (MiB)
        tables = self.n_pix * (8 + 4 * 8 + 4 * 4 + 4 + 3 * 4) + H * W * 3
        self.working_mb = (tables + self.chunk * (self.n_pix * 4 * 3 * 4 * 2 + H * W * 3 * 2)) / 2**20

    @property
    def size(self) -> tuple[int, int]:
        return self.W, self.H

    def __call__(self, out: "torch.Tensor") -> "torch.Tensor":
        frames = []
        for k in range(0, int(out.shape[0]), self.chunk):
            frames.append(self._paste(out[k:k + self.chunk]))
        return frames[0] if len(frames) == 1 else torch.cat(frames)

    def _paste(self, out: "torch.Tensor") -> "torch.Tensor":
        b, s = int(out.shape[0]), self.crop_size
        src = _u8_values(out).permute(0, 2, 3, 1).reshape(b, s * s, 3)
        src = torch.cat([src, src.new_zeros(b, 1, 3)], 1)                   # index s*s = zero pixel
        taps = src[:, self.taps].reshape(b, self.n_pix, 4, 3)
        warped = torch.round((taps * self.weights[None, :, :, None]).sum(2))  # cv2: uint8, rounded
        face = (self.mask * warped + self.base).clamp(0.0, 255.0).to(torch.uint8)
        canvas = self.original.expand(b, -1, -1).clone()
        canvas[:, self.pix] = face
        return canvas.reshape(b, self.H, self.W, 3)
