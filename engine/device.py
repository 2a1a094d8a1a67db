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
from engine.contract.protocol import canonical_dtype

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
    dev = _select_device(name)
    apply_memory_cap(dev)   # JOYVASA_GPU_MEMORY_MB, if set (CUDA only)
    return dev


def _select_device(name: str) -> torch.device:
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
        if device.type == "cuda":  # fp16 where bf16 is only emulated (pre-Ampere): upstream's own default
            return Precision(torch.bfloat16 if cuda_native_bf16(device) else torch.float16)
        if device.type == "mps":
            return Precision(torch.float16)
        return Precision(torch.float32)
    if dtype == "float16" and device.type == "cpu":
        raise BadRequest("float16 is not supported on CPU; use float32 or bfloat16")
    return Precision(_TORCH_DTYPES[dtype])


def cuda_capability(device: torch.device) -> tuple[int, int]:
    """(major, minor) compute capability; a function of its own so tests can fake a card."""
    return tuple(torch.cuda.get_device_capability(device))  # type: ignore[return-value]


def cuda_native_bf16(device: torch.device) -> bool:
    """bf16 tensor cores exist from Ampere (capability 8.0) on. ``torch.cuda.is_bf16_supported()``
    also says yes on older cards where bf16 is emulated (slower than fp16 and float32)."""
    return cuda_capability(device) >= (8, 0)


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


#: Memory model of a render on a GPU (MiB). Per frame: peak activations of one 512² frame through
#: W+G (float32: ~15 GB was seen at batch 32 on an H100, i.e. ~430 MiB/frame over the resident
#: weights, rounded up; bf16/fp16 autocast keeps ~60 % of that because the float32 islands and
#: casts stay). tools/bench_gpu.sh prints the measured figures to refine these numbers.
FRAME_MB = {"float32": 480.0, "bfloat16": 300.0, "float16": 300.0}
#: allocator slack (fragmentation, cuDNN/cuBLAS workspaces) on top of the model's sum
WORKSPACE_MB = 512.0
#: default budget: this share of the card (or of the per-process cap): 0.70 x 8 GiB = 5.6 GiB < 6 GB
BUDGET_FRACTION = 0.70
#: optional cap for the engine on a shared GPU (Blender's viewport, Cycles): MiB, applied with
#: torch.cuda.set_per_process_memory_fraction; bench_gpu.sh uses it to act as an 8 GB card
MEMORY_CAP_ENV = "JOYVASA_GPU_MEMORY_MB"


@dataclass(frozen=True)
class GpuMemory:
    """What the batch plan knows about the card (MiB); faked in tests."""

    total_mb: float
    free_mb: float                 # mem_get_info: free on the device (other processes included)
    fraction: float = 1.0          # torch.cuda.set_per_process_memory_fraction of this process
    allocated_mb: float = 0.0      # already held by this process's tensors (weights, f_s)
    reserved_mb: float = 0.0       # held by this process's caching allocator (reusable)


@dataclass(frozen=True)
class BatchPlan:
    batch: int
    budget_mb: float | None = None
    predicted_peak_mb: float | None = None
    reason: str = ""

    def describe(self) -> str:
        if self.budget_mb is None:
            return f"batch {self.batch} ({self.reason})"
        return (f"batch {self.batch} ({self.reason}; predicted peak {self.predicted_peak_mb:.0f} MiB "
                f"of a {self.budget_mb:.0f} MiB budget)")


def gpu_memory(device: torch.device) -> GpuMemory:
    mib = 1024 * 1024
    free, total = torch.cuda.mem_get_info(device)
    get_fraction = getattr(torch.cuda, "get_per_process_memory_fraction", None)
    fraction = float(get_fraction(device)) if get_fraction is not None else 1.0
    return GpuMemory(total / mib, free / mib, fraction, torch.cuda.memory_allocated(device) / mib,
                     torch.cuda.memory_reserved(device) / mib)


def plan_batch(memory: GpuMemory, dtype: str = "float32", *, paste_mb: float = 0.0, max_batch: int = 32,
               budget_mb: float | None = None) -> BatchPlan:
    """The largest batch whose predicted peak stays inside the budget (at least 1).

    Peak = what this process already holds (weights, source features) + batch x FRAME_MB[dtype]
    + ``paste_mb`` (device paste-back working set) + WORKSPACE_MB. Budget = ``budget_mb`` or
    BUDGET_FRACTION of the card (of the per-process cap when one is set), and never more than
    what can still be had: free memory + what our allocator already reserved.
    """
    cap = memory.total_mb * min(1.0, max(0.0, memory.fraction))
    budget = float(budget_mb) if budget_mb else BUDGET_FRACTION * cap
    budget = min(budget, cap, memory.free_mb + memory.reserved_mb)
    per_frame = FRAME_MB.get(dtype, FRAME_MB["float32"])
    fixed = max(memory.allocated_mb, 0.0) + paste_mb + WORKSPACE_MB
    batch = int(max(1, min(max_batch, (budget - fixed) // per_frame)))
    return BatchPlan(batch, round(budget, 1), round(fixed + batch * per_frame, 1),
                     f"auto, {dtype}, {per_frame:.0f} MiB/frame")


def auto_batch_size(device: torch.device, requested: int | None, *, dtype: str = "float32",
                    paste_mb: float = 0.0, memory: GpuMemory | None = None, cpu_default: int = 1,
                    max_batch: int = 32) -> int:
    """Batch of frames for W+G (see :func:`batch_plan`)."""
    return batch_plan(device, requested, dtype=dtype, paste_mb=paste_mb, memory=memory,
                      cpu_default=cpu_default, max_batch=max_batch).batch


def batch_plan(device: torch.device, requested: int | None, *, dtype: str = "float32", paste_mb: float = 0.0,
               memory: GpuMemory | None = None, cpu_default: int = 1, max_batch: int = 32) -> BatchPlan:
    """GPU: :func:`plan_batch` from the card's memory; CPU: 1 (measured with ``bench animate``:
    batch 2 and 4 are no faster on CPU and cost memory); MPS: 4 (unified memory, no query)."""
    if requested is not None and requested > 0:
        return BatchPlan(int(requested), reason="--batch")
    if device.type == "cuda" or memory is not None:
        return plan_batch(memory or gpu_memory(device), dtype, paste_mb=paste_mb, max_batch=max_batch)
    if device.type == "mps":
        return BatchPlan(4, reason="auto, MPS")
    return BatchPlan(cpu_default, reason="auto, CPU")


def oom_advice(device: torch.device, batch: int) -> str:
    """The ``oom`` error text of a W+G call that did not fit: names the --batch to try."""
    where = "GPU" if device.type in ("cuda", "mps") else "host"
    smaller = max(1, batch // 2)
    text = f"W+G ran out of {where} memory at batch {batch}: "
    text += f"pass --batch {smaller}" if batch > 1 else "batch 1 is the smallest; free memory (close other GPU programs)"
    if device.type == "cuda":
        text += (f" (or leave --batch out: the engine sizes it from free memory), --dtype bfloat16 or float16, "
                 f"or cap the engine's share with {MEMORY_CAP_ENV}")
    return text


def release_cached_memory(device: torch.device) -> None:
    """After an out-of-memory W+G call: hand cached blocks back before a smaller retry."""
    import gc

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps" and hasattr(torch, "mps"):
        torch.mps.empty_cache()


def apply_memory_cap(device: torch.device, environ: dict[str, str] | None = None) -> float | None:
    """``JOYVASA_GPU_MEMORY_MB=N``: cap this process at N MiB of ``device`` (fraction of the card);
    returns the fraction set, None without a cap. Bad values are a clear BadRequest."""
    import os

    raw = (environ if environ is not None else os.environ).get(MEMORY_CAP_ENV, "").strip()
    if not raw or device.type != "cuda":
        return None
    try:
        cap_mb = float(raw)
    except ValueError:
        raise BadRequest(f"{MEMORY_CAP_ENV}={raw!r} is not a number of MiB") from None
    if cap_mb <= 0:
        raise BadRequest(f"{MEMORY_CAP_ENV} must be > 0 MiB, got {raw}")
    total_mb = torch.cuda.get_device_properties(device).total_memory / (1024 * 1024)
    fraction = min(1.0, cap_mb / total_mb)
    torch.cuda.set_per_process_memory_fraction(fraction, device)
    return fraction


def device_peak_mb(device: torch.device) -> float | None:
    """Peak MiB held by this process's tensors on a CUDA device (None elsewhere)."""
    if device.type == "cuda":
        return round(torch.cuda.max_memory_allocated(device) / (1024 * 1024), 1)
    return None


def device_peak_reserved_mb(device: torch.device) -> float | None:
    """Peak MiB the caching allocator took from the card (what a per-process cap limits)."""
    if device.type == "cuda":
        return round(torch.cuda.max_memory_reserved(device) / (1024 * 1024), 1)
    return None
