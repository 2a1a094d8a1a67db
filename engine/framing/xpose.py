"""Animal faces with X-Pose: the official ``liveportrait_animals/xpose.pth`` → 9 face points → upstream's crop.

Why: upstream (LivePortrait's animal mode, which JoyVASA uses) frames an animal from the 9
points X-Pose predicts for the prompt "face"; this module reproduces that (spec
``shared/spec/xpose.md``) on any device, with what upstream lacks: a score threshold (upstream
always returns its top query, even on a picture with no animal), a choice among several animals
(``--face-index``), and the score in the report.

The file is optional (X-Pose's licence is non-commercial research only): without it the cat
cascade / centred fallback / clicked points stay the way animals are framed (engine/framing/animal.py).

    upstream run(img, 'face', 'animal_face', box_threshold=0, iou_threshold=0) =
      resize (short side 800, long ≤ 1333, PIL bilinear) → ImageNet normalisation → network →
      sigmoid(logits) → NMS(IoU 0) → first kept query → pred_keypoints[:18] × (W, H).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:   # annotations only: torch and scipy load when X-Pose runs
    import torch
    from scipy.sparse import csr_matrix

    from engine.framing.geometry import Frame
    from engine.framing.xpose_model import XPose

#: where upstream's weights layout keeps the file (relative to the weights folder)
XPOSE_FILE = "liveportrait_animals/xpose.pth"
#: our own "no animal here": upstream has no threshold (it always returns its top query). Real
#: animal faces score well above this; empty pictures and non-animals score low.
MIN_SCORE = 0.3
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
SHORT_SIDE, LONG_MAX = 800, 1333


@dataclass(frozen=True)
class AnimalFace:
    """One detection, in pixels of the picture that was passed in."""

    score: float
    box: tuple[float, float, float, float]        # x, y, w, h
    points: np.ndarray                              # (K, 2) x, y; K = 9: see xpose_prompts.POINT_NAMES_9
    index: int                                      # query index among the 50 (upstream's kept_index)


def xpose_path(weights_root: Path | None) -> Path | None:
    """The X-Pose file in a weights folder, if it is there. Something under its name that is not a
    readable file (a folder, a FIFO, a symlink loop) is WeightsCorrupt naming it, not "absent"."""
    import os

    from engine.errors import WeightsCorrupt
    from engine.pathguard import input_problem

    if weights_root is None:
        return None
    p = Path(weights_root) / XPOSE_FILE
    if not os.path.lexists(p):
        return None
    why = input_problem(p)
    if why:
        raise WeightsCorrupt(f"{p} {why}; remove it or re-download {XPOSE_FILE}")
    return p


# -- loading ------------------------------------------------------------------------------------

def read_state_dict(path: Path) -> dict[str, Any]:
    """The state dict of an X-Pose file: ``{"model": state_dict}`` (upstream's container) with the
    DDP ``module.`` prefix removed, via the engine's safe loader (no code runs)."""
    from engine.checkpoints import safe_torch_load, strip_module_prefix
    from engine.errors import WeightsCorrupt

    obj = safe_torch_load(path, what="X-Pose weights")
    state = obj.get("model") if isinstance(obj, dict) and "model" in obj else obj
    if not isinstance(state, dict):
        raise WeightsCorrupt(f"{path} is not an X-Pose checkpoint (expected {{'model': state_dict}}, "
                             f"found {type(obj).__name__}). Re-download {XPOSE_FILE}.")
    return strip_module_prefix(state)


def build_from_state_dict(state: dict[str, Any], path: Path) -> XPose:
    """An :class:`XPose` sized from ``state``, loaded strictly (the first bad key is named)."""
    from engine.checkpoints import load_state_dict_strict
    from engine.errors import WeightsCorrupt
    from engine.framing.xpose_model import XPose, XPoseConfig

    try:
        cfg = XPoseConfig.from_state_dict(state)
    except KeyError as exc:
        raise WeightsCorrupt(f"{path} is missing key {exc.args[0]!r}: not an X-Pose checkpoint. "
                             f"Re-download {XPOSE_FILE}.") from None
    except (AttributeError, IndexError, TypeError, ValueError) as exc:
        raise WeightsCorrupt(f"{path}: unexpected tensor layout ({exc}): not an X-Pose checkpoint.") from None
    model = XPose(cfg)
    load_state_dict_strict(model, state, path)
    return model.eval()


_CACHE: dict[tuple[str, int, int, str], XPose] = {}
_LOCK = threading.Lock()


def load_model(path: Path, device: torch.device | str = "cpu") -> XPose:
    """The network for ``path`` on ``device``; kept per process (the warm worker frames many portraits)."""
    import torch

    st = Path(path).stat()
    key = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns, str(device))
    with _LOCK:
        model = _CACHE.get(key)
        if model is None:
            model = build_from_state_dict(read_state_dict(Path(path)), Path(path)).to(torch.device(device))
            _CACHE.clear()  # one X-Pose in memory at a time
            _CACHE[key] = model
    return model


def default_device() -> str:
    """The accelerator when there is one (X-Pose is ~10× faster there), else the CPU."""
    import torch

    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


# -- inference ----------------------------------------------------------------------------------

def resized_size(w: int, h: int, size: int = SHORT_SIDE, max_size: int = LONG_MAX) -> tuple[int, int]:
    """(width, height) upstream's ``RandomResize([800], max_size=1333)`` gives a w×h picture."""
    lo, hi = float(min(w, h)), float(max(w, h))
    if hi / lo * size > max_size:
        size = int(round(max_size * lo / hi))
    if (w <= h and w == size) or (h <= w and h == size):
        return w, h
    if w < h:
        return size, int(size * h / w)
    return int(size * w / h), size


def _resample_matrix(n_in: int, n_out: int) -> csr_matrix:
    """Pillow's bilinear resampling weights along one axis, as its 8-bit path uses them.

    Pillow (``Resample.c``): support 1 × max(scale, 1) (antialiased when shrinking), weights
    normalised in double, then fixed point with 22 fractional bits (``PRECISION_BITS``). Returned
    as a sparse (n_out, n_in) int64 matrix, so the products and sums are exact integers."""
    from scipy import sparse

    scale = n_in / n_out
    fscale = max(scale, 1.0)
    support = 1.0 * fscale
    rows, cols, vals = [], [], []
    for xx in range(n_out):
        center = (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), n_in)
        x = np.arange(xmin, xmax)
        w = np.clip(1.0 - np.abs((x - center + 0.5) / fscale), 0.0, None)
        total = w.sum()
        if total != 0.0:
            w = w / total
        fixed = np.where(w < 0, np.trunc(-0.5 + w * (1 << 22)), np.trunc(0.5 + w * (1 << 22))).astype(np.int64)
        rows += [xx] * len(x)
        cols += x.tolist()
        vals += fixed.tolist()
    return sparse.csr_matrix((np.array(vals, np.int64), (rows, cols)), shape=(n_out, n_in))


def _resample_axis0(img: np.ndarray, n_out: int) -> np.ndarray:
    """Resample axis 0 of a uint8 (N, M, C) array: exact integer sums, rounded and clipped as Pillow does."""
    n, m, c = img.shape
    K = _resample_matrix(n, n_out)
    out = np.empty((n_out, m, c), np.uint8)
    flat = img.reshape(n, m * c)
    step = max(1, (1 << 22) // max(n, 1))  # columns per chunk: bounded memory for 6000-px photos
    for j in range(0, m * c, step):
        acc = K @ flat[:, j:j + step].astype(np.int64)
        out.reshape(n_out, m * c)[:, j:j + step] = np.clip((acc + (1 << 21)) >> 22, 0, 255).astype(np.uint8)
    return out


def pil_bilinear_resize(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """``PIL.Image.resize((width, height), BILINEAR)`` on an RGB uint8 array, bit-exact, without Pillow
    (not an engine dependency): horizontal pass, then vertical, each rounded to uint8, as Pillow does."""
    h, w = img.shape[:2]
    out = img
    if width != w:
        out = _resample_axis0(np.ascontiguousarray(out.transpose(1, 0, 2)), width).transpose(1, 0, 2)
    if height != h:
        out = _resample_axis0(np.ascontiguousarray(out), height)
    return np.ascontiguousarray(out)


def preprocess(img: np.ndarray) -> torch.Tensor:
    """RGB uint8 (H, W, 3) → the normalised (1, 3, h, w) float32 tensor upstream feeds the network.

    The resize is Pillow's bilinear (antialiased when shrinking), which torchvision uses on a PIL
    image; a 6000×4000 photo costs that one resize, nothing else scales with the file."""
    import torch

    h, w = img.shape[:2]
    tw, th = resized_size(w, h)
    small = pil_bilinear_resize(img, tw, th) if (tw, th) != (w, h) else np.ascontiguousarray(img)
    x = torch.from_numpy(small.copy()).permute(2, 0, 1).float().div(255)
    mean = torch.tensor(MEAN, dtype=torch.float32)[:, None, None]
    std = torch.tensor(STD, dtype=torch.float32)[:, None, None]
    return ((x - mean) / std)[None]


def prompt_tensors(instance: np.ndarray, keypoints: np.ndarray,
                   device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Upstream's target: instance rows as float32, keypoint rows padded with zeros to 100, visibility."""
    import torch

    k = keypoints.shape[0]
    ins = torch.from_numpy(np.asarray(instance)).float().to(device)
    kp = torch.zeros(100, keypoints.shape[1], device=device)
    kp[:k] = torch.from_numpy(np.asarray(keypoints)).float().to(device)
    vis = torch.zeros(100, device=device)
    vis[:k] = 1
    return ins, kp, vis


def run_network(model: XPose, image: torch.Tensor, instance: np.ndarray, keypoints: np.ndarray,
                full_keypoints: bool = False, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """One forward pass (no grad); ``dtype`` e.g. torch.bfloat16 runs under autocast."""
    import contextlib

    import torch

    dev = next(model.parameters()).device
    ins, kp, vis = prompt_tensors(instance, keypoints, dev)
    ctx = (torch.autocast(device_type=dev.type, dtype=dtype) if dtype is not None and dtype != torch.float32
           else contextlib.nullcontext())
    with torch.inference_mode(), ctx:
        out = model(image.to(dev), ins, kp, vis, full_keypoints=full_keypoints)
    return {k: v.float().cpu() for k, v in out.items()}


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of xyxy boxes a (N, 4) against b (M, 4)."""
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def nms(boxes_xyxy: np.ndarray, scores: np.ndarray, iou_threshold: float) -> list[int]:
    """Indices kept, best score first (torchvision's ``nms``: drop a box whose IoU with a kept one > threshold)."""
    order = list(np.argsort(-scores, kind="stable"))
    keep: list[int] = []
    while order:
        i = order.pop(0)
        keep.append(int(i))
        if order:
            iou = box_iou(boxes_xyxy[[i]], boxes_xyxy[order])[0]
            order = [j for j, v in zip(order, iou) if not v > iou_threshold]
    return keep


def decode(out: dict[str, Any], k: int, width: int, height: int, box_threshold: float = 0.0,
           iou_threshold: float = 0.0) -> list[AnimalFace]:
    """Upstream's post-processing, every kept detection instead of only the first (best first)."""
    logits = out["pred_logits"][0].sigmoid().numpy().astype(np.float64)
    scores = logits.max(axis=1)
    boxes = out["pred_boxes"][0].numpy().astype(np.float64)
    kps = out["pred_keypoints"][0].numpy()[:, :2 * k]
    idx = np.nonzero(scores > box_threshold)[0]
    cx, cy, bw, bh = boxes[idx].T
    xyxy = np.stack([cx - 0.5 * bw, cy - 0.5 * bh, cx + 0.5 * bw, cy + 0.5 * bh], 1)
    faces = []
    for j in nms(xyxy, scores[idx], iou_threshold):
        q = int(idx[j])
        pts = kps[q].reshape(k, 2) * np.array([width, height], np.int64)
        x0, y0, x1, y1 = xyxy[j] * np.array([width, height, width, height])
        faces.append(AnimalFace(float(scores[q]), (float(x0), float(y0), float(x1 - x0), float(y1 - y0)),
                                pts.astype(np.float64), q))
    return faces


def detect(img: np.ndarray, path: Path, device: torch.device | str | None = None, k: int = 9,
           dtype: torch.dtype | None = None) -> list[AnimalFace]:
    """Every animal face X-Pose keeps in ``img`` (RGB uint8, the file's pixels), best score first."""
    from engine.framing.xpose_prompts import load_prompts

    model = load_model(path, device or default_device())
    instance, keypoints = load_prompts(k)
    out = run_network(model, preprocess(img), instance, keypoints, dtype=dtype)
    return decode(out, k, img.shape[1], img.shape[0])


# -- framing from the 9 points --------------------------------------------------------------------

def axis_points(pts9: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Upstream's 2-point reduction of the 9 points: (eye centre, lip centre)."""
    P = np.asarray(pts9, np.float64)
    left_eye, right_eye = (P[2] + P[3]) / 2, (P[0] + P[1]) / 2
    return (left_eye + right_eye) / 2, (P[5] + P[6]) / 2


def frame_points9(pts9: np.ndarray, scale: float, vx: float, vy: float) -> Frame:
    """The crop upstream's ``crop_image(img, pts9, dsize=512, scale, vy_ratio)`` makes (vx: ours, 0 = upstream)."""
    from engine.framing import geometry as geo

    e0, e1 = axis_points(pts9)
    return geo.frame_from_landmarks(np.asarray(pts9, np.float64), e0, e1, scale, vx, vy)
