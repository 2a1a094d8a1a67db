"""Which device the engine really computes on, said in one line for ``doctor`` / Check Engine.

Why: pip's default torch on Windows is CPU-only, so an NVIDIA owner can render at CPU speed
without being told. The machine's NVIDIA GPUs are found through ``nvidia-smi`` (installed
with the driver, independent of torch), the device is proven by one small op on it, and the
two are compared: a GPU present but a torch without CUDA is a warning with the fix.
"""
from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from typing import Callable

import torch

RECREATE_HINT = ("recreate the environment (Blender: Preferences > Create Engine Environment with Torch Build "
                 "Auto or CUDA; a terminal: pip install --force-reinstall torch --index-url https://download.pytorch.org/whl/cu128)")


def nvidia_gpus(run: Callable[[list[str]], str | None] | None = None) -> list[str]:
    """GPU names from ``nvidia-smi -L`` ("GPU 0: NVIDIA GeForce RTX 4090 (UUID: ...)"); [] without one."""
    out = (run or _run)(["nvidia-smi", "-L"])
    names = []
    for line in (out or "").splitlines():
        if line.startswith("GPU ") and ":" in line:
            names.append(line.split(":", 1)[1].split("(UUID")[0].strip())
    return names


def _run(argv: list[str]) -> str | None:
    exe = shutil.which(argv[0])
    if exe is None:
        return None
    try:
        cp = subprocess.run([exe, *argv[1:]], capture_output=True, text=True, timeout=10, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return None
    return cp.stdout if cp.returncode == 0 else None


@dataclass(frozen=True)
class DeviceInUse:
    """The device one test op ran on, the line to show, and whether the user should act."""

    device: str
    line: str
    warning: bool


def probe_op(device: torch.device) -> str | None:
    """Run one small op on ``device``; None when it works, else the error text."""
    try:
        x = torch.arange(64, dtype=torch.float32, device=device)
        if float((x * 2).sum().item()) != 4032.0:
            return "wrong result from a test op"
    except Exception as exc:  # noqa: BLE001 - a broken driver raises many kinds
        return f"{type(exc).__name__}: {exc}"
    return None


def device_in_use(device: torch.device, gpus: list[str] | None = None,
                  torch_cuda: str | None = None) -> DeviceInUse:
    """``GPU in use: <name>`` or ``CPU only: <why>`` for the device ``auto`` selected. ``gpus`` and
    ``torch_cuda`` default to this machine's (``nvidia-smi``) and this torch's (``torch.version.cuda``)."""
    gpus = nvidia_gpus() if gpus is None else gpus
    torch_cuda = torch.version.cuda if torch_cuda is None else torch_cuda or None
    failed = probe_op(device)
    if device.type == "cuda":
        idx = device.index if device.index is not None else torch.cuda.current_device()
        name = torch.cuda.get_device_name(idx)
        if failed:
            return DeviceInUse(str(device), f"GPU {name} found but a test op on it failed ({failed}): "
                                            "update the NVIDIA driver", True)
        return DeviceInUse(f"cuda:{idx}", f"GPU in use: {name} (cuda:{idx}, torch {torch.__version__})", False)
    if device.type == "mps":
        if failed:
            return DeviceInUse("mps", f"Apple MPS found but a test op on it failed ({failed})", True)
        return DeviceInUse("mps", "GPU in use: Apple MPS", False)
    if gpus and not torch_cuda:
        return DeviceInUse("cpu", f"CPU only: your torch build ({torch.__version__}) has no CUDA although an NVIDIA "
                                  f"GPU is present ({', '.join(gpus)}): {RECREATE_HINT}", True)
    if gpus:
        return DeviceInUse("cpu", f"CPU only: torch {torch.__version__} (CUDA {torch_cuda}) cannot use the NVIDIA GPU "
                                  f"({', '.join(gpus)}): update the NVIDIA driver, or {RECREATE_HINT}", True)
    return DeviceInUse("cpu", "CPU only: no GPU found (rendering takes seconds per frame)", False)
