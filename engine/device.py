"""Device and dtype policy: pick cuda > mps > cpu, decide precision and a batch size.

Why one place: every command (animate, motion, bench, doctor) must agree on what "auto"
means, and a requested-but-missing device must be one clear error, not a torch traceback.
Policy: CPU runs float32 by default (bf16 optional: slower on most CPUs without AMX, and it
changes the numbers); GPUs run bf16 where supported, else fp16, by default.

One precision decision: :func:`select_precision` turns the job's ``dtype`` (any spelling the
user types: ``bf16``, ``fp16``, ``fp32``...) into a :class:`Precision`, and the pipeline loads
stage one *in* that precision (``StageOne.load(dtype=precision.compute)``: bf16-resident
channels-last weights for bfloat16) — the same path ``bench render`` measures.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from engine.errors import BadRequest, DeviceUnavailable
from engine.protocol import canonical_dtype

DEVICES = ("auto", "cpu", "cuda", "mps")
_TORCH_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def available_devices() -> list[str]:
    found = ["cpu"]
    if torch.cuda.is_available():
        found += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if mps_available():
        found.append("mps")
    return found


def select_device(name: str = "auto") -> torch.device:
    """``auto`` → cuda, then mps, then cpu; a named device that is missing raises DeviceUnavailable."""
    name = (name or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    kind = name.split(":")[0]
    if kind not in ("cpu", "cuda", "mps"):
        raise BadRequest(f"unknown device {name!r}: use one of {', '.join(DEVICES)}")
    if kind == "cuda" and not torch.cuda.is_available():
        raise DeviceUnavailable("CUDA was requested but torch sees no CUDA GPU "
                                f"(torch {torch.__version__}); use --device cpu or install a CUDA build of torch")
    if kind == "cuda" and ":" in name and int(name.split(":")[1]) >= torch.cuda.device_count():
        raise DeviceUnavailable(f"{name} does not exist: {torch.cuda.device_count()} CUDA device(s) visible")
    if kind == "mps" and not mps_available():
        raise DeviceUnavailable("Apple MPS was requested but is not available; use --device cpu")
    return torch.device(name)


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        idx = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{idx} {torch.cuda.get_device_name(idx)}"
    return device.type


@dataclass(frozen=True)
class Precision:
    """The compute dtype of the rendering networks; stage one is loaded in it (see module doc)."""

    compute: torch.dtype

    @property
    def name(self) -> str:
        return str(self.compute).replace("torch.", "")


def select_precision(device: torch.device, dtype: str = "auto") -> Precision:
    """``auto``/alias → a :class:`Precision` valid on ``device`` (BadRequest otherwise)."""
    try:
        dtype = canonical_dtype(dtype)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    if dtype == "auto":
        if device.type == "cuda":
            return Precision(torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
        if device.type == "mps":
            return Precision(torch.float16)
        return Precision(torch.float32)
    if dtype == "float16" and device.type == "cpu":
        raise BadRequest("float16 is not supported on CPU; use float32 or bfloat16")
    return Precision(_TORCH_DTYPES[dtype])


def select_motion_precision(device: torch.device, dtype: str = "auto", sampler: str = "") -> Precision:
    """The motion networks' compute dtype (audio encoder and DiT, under autocast) for a job: the
    same ``--dtype`` as stage one, but ``auto`` resolved for what the motion stage promises.

    * an explicit ``--dtype`` applies to every network of the job (``fp32`` = upstream's numbers);
    * ``auto`` with upstream's exact ``ancestral`` sampler: float32 (that path reproduces upstream);
    * ``auto`` with a fast sampler on a CPU with native bf16 (AVX512-BF16/AMX): bfloat16 autocast.
      Measured on 20 s of speech, official-size synthetic weights, 2 cores: audio encoding 2.65 →
      1.22 s (1.2 % relative feature error against float32), DiT sampling 1.7 → 1.0-1.4 s (0.7 %
      relative error of the motion coefficients); tests/engine/test_motion_precision.py bounds the
      error and tests/engine/test_samplers_gaussian.py checks the samplers with a bf16-rounded x0;
    * ``auto`` elsewhere (CUDA, MPS, CPUs without bf16 instructions): float32 (there the encoder
      takes tenths of a second, or bf16 is emulated and slower).
    """
    try:
        name = canonical_dtype(dtype)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    if name != "auto":
        return select_precision(device, name)
    if device.type == "cpu" and sampler != "ancestral" and cpu_has_native_bf16():
        return Precision(torch.bfloat16)
    return Precision(torch.float32)


def cpu_has_native_bf16() -> bool:
    """True on CPUs with bfloat16 instructions (AVX512-BF16 or AMX), where ``bench render`` measured
    bf16 W+G ~3x faster than float32 (1.97 vs 6.03 s per frame on 2 EPYC cores); without them bf16
    is emulated and slower. Used by tools/demo.py; ``--dtype auto`` stays float32 on CPU."""
    try:
        flags = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return False
    return any(f in flags.split() for f in ("avx512_bf16", "amx_bf16"))


def auto_batch_size(device: torch.device, requested: int | None, *, per_frame_mb: float = 900.0,
                    cpu_default: int = 1, max_batch: int = 32) -> int:
    """Batch of frames for W+G. GPU: from free memory (mem_get_info) with headroom; CPU: 1
    (measured with ``bench animate``: batch 2 and 4 are no faster on CPU and cost memory).

    ``per_frame_mb`` is the activation memory of one 512² frame through W+G at official size
    (float32; roughly halved under autocast).
    """
    if requested is not None and requested > 0:
        return int(requested)
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        usable = free * 0.6 / (1024 * 1024)
        return max(1, min(max_batch, int(usable // per_frame_mb)))
    if device.type == "mps":
        return 4
    return cpu_default


def device_peak_mb(device: torch.device) -> float | None:
    if device.type == "cuda":
        return round(torch.cuda.max_memory_allocated(device) / (1024 * 1024), 1)
    return None
