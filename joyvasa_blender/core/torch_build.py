"""Which torch build Create Engine Environment installs, and the pip command lines that do it.

Why: pip's default torch is CPU-only on Windows and a 2+ GB CUDA build on Linux, whatever the
machine has, so an RTX owner on Windows renders at CPU speed and a laptop without a GPU
downloads CUDA libraries it never uses. The choice is made here, bpy-free and torch-free (the
add-on must not import torch), from facts that can be faked in tests: the platform and what
``nvidia-smi`` / ROCm's tools say. The preference *Torch Build* overrides Auto.

Rules (Auto):
* NVIDIA driver (``nvidia-smi`` answers) on Windows or Linux -> PyTorch's CUDA wheel index for
  the newest CUDA the driver supports (the driver's "CUDA Version" header);
* Linux with ROCm (``/opt/rocm`` or ``rocminfo``) and no NVIDIA -> the ROCm wheel index;
* macOS -> PyPI's default build (MPS on Apple Silicon);
* anything else -> the CPU wheel index (small download, no CUDA libraries).
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from .engine_client import venv_python

TORCH_INDEX = "https://download.pytorch.org/whl/"
#: CUDA builds PyTorch publishes, newest first: (tag, CUDA version the driver must support).
#: A driver of the same major CUDA version runs an older minor build (CUDA minor compatibility).
CUDA_BUILDS: tuple[tuple[str, tuple[int, int]], ...] = (("cu130", (13, 0)), ("cu128", (12, 8)), ("cu126", (12, 6)))
ROCM_BUILD = "rocm6.4"
#: the Torch Build preference: (identifier, label, description)
BUILD_CHOICES = (
    ("auto", "Auto", "Detect the GPU: NVIDIA -> CUDA build, AMD ROCm (Linux) -> ROCm build, macOS -> default "
                     "build (Apple MPS), otherwise the CPU build"),
    ("cuda", "CUDA", "PyTorch's CUDA build for NVIDIA GPUs (Windows, Linux)"),
    ("rocm", "ROCm", "PyTorch's ROCm build for AMD GPUs (Linux)"),
    ("cpu", "CPU", "CPU-only build (smallest download)"),
    ("default", "PyPI Default", "Whatever pip installs by default (CPU-only on Windows; CUDA on Linux; MPS on macOS)"),
)

Runner = Callable[[Sequence[str]], "str | None"]


@dataclass(frozen=True)
class NvidiaInfo:
    """What ``nvidia-smi`` says: GPU names, driver version, the newest CUDA the driver runs."""

    names: tuple[str, ...]
    driver: str = ""
    cuda: tuple[int, int] | None = None


@dataclass(frozen=True)
class Machine:
    """The facts the choice depends on (``probe_machine`` reads them; tests build them)."""

    system: str                      # platform.system(): Windows | Linux | Darwin
    arch: str = ""                   # platform.machine(): x86_64 | AMD64 | arm64 ...
    nvidia: NvidiaInfo | None = None
    rocm: bool = False


@dataclass(frozen=True)
class TorchChoice:
    """One decision: the build, the pip index (None = PyPI default) and why, in words for the panel."""

    build: str                       # cuda | rocm | cpu | default
    index_url: str | None
    reason: str
    tag: str = ""                    # cu128, rocm6.4, cpu, or ""

    @property
    def summary(self) -> str:
        where = f" from {self.index_url}" if self.index_url else " from PyPI"
        return f"torch {self.tag or self.build}{where}: {self.reason}"


#: where older NVIDIA drivers put nvidia-smi on Windows (newer ones: System32, on PATH)
NVSMI_WINDOWS = Path("C:/Program Files/NVIDIA Corporation/NVSMI/nvidia-smi.exe")


def _run(argv: Sequence[str], timeout: float = 5.0) -> str | None:
    """Output of a probe command, None when it is missing, fails or hangs (never raises)."""
    exe = shutil.which(argv[0])
    if exe is None and argv[0] == "nvidia-smi" and sys.platform == "win32" and NVSMI_WINDOWS.is_file():
        exe = str(NVSMI_WINDOWS)
    if exe is None:
        return None
    try:
        cp = subprocess.run([exe, *argv[1:]], capture_output=True, text=True, timeout=timeout,
                            stdin=subprocess.DEVNULL, errors="replace")
    except (OSError, subprocess.SubprocessError):
        return None
    return cp.stdout if cp.returncode == 0 else None


def parse_nvidia_smi(query: str | None, header: str | None) -> NvidiaInfo | None:
    """``nvidia-smi --query-gpu=name,driver_version --format=csv,noheader`` + plain ``nvidia-smi``
    (whose header holds "CUDA Version: 12.8") -> NvidiaInfo, or None when no GPU is listed."""
    names, driver = [], ""
    for line in (query or "").splitlines():
        parts = [p.strip() for p in line.split(",")]
        if parts and parts[0]:
            names.append(parts[0])
            driver = driver or (parts[1] if len(parts) > 1 else "")
    if not names:
        return None
    cuda = None
    m = re.search(r"CUDA Version\s*:\s*(\d+)\.(\d+)", header or "")
    if m:
        cuda = (int(m.group(1)), int(m.group(2)))
    return NvidiaInfo(tuple(names), driver, cuda)


def probe_nvidia(run: Runner = _run) -> NvidiaInfo | None:
    """NVIDIA GPUs through ``nvidia-smi`` (installed with the driver on Windows and Linux); no torch."""
    query = run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"])
    if not query:
        return None
    return parse_nvidia_smi(query, run(["nvidia-smi"]))


def probe_rocm(run: Runner = _run, root: Path = Path("/opt/rocm")) -> bool:
    """An AMD ROCm installation (Linux): its folder, or ``rocminfo`` listing a GPU agent."""
    if root.is_dir():
        return True
    out = run(["rocminfo"])
    return bool(out and re.search(r"\bgfx\d+", out))


def probe_machine(run: Runner = _run) -> Machine:
    """This machine's facts (a few short subprocess probes; cache the result, don't call per redraw)."""
    import platform

    system = platform.system()
    nvidia = probe_nvidia(run) if system in ("Windows", "Linux") else None
    rocm = system == "Linux" and nvidia is None and probe_rocm(run)
    return Machine(system, platform.machine(), nvidia, rocm)


def cuda_build_for(cuda: tuple[int, int] | None) -> str | None:
    """The newest CUDA build the driver can run; None when the driver is too old for every build.
    Unknown CUDA version (header not parsed): the oldest listed build, the most compatible."""
    if cuda is None:
        return CUDA_BUILDS[-1][0]
    for tag, need in CUDA_BUILDS:
        if need <= cuda:
            return tag
    same_major = [tag for tag, need in CUDA_BUILDS if need[0] == cuda[0]]
    return same_major[-1] if same_major else None


def choose(machine: Machine, preference: str = "auto") -> TorchChoice:
    """The torch build for ``machine`` under the Torch Build preference (see module doc)."""
    pref = (preference or "auto").lower()
    nv = machine.nvidia
    gpu = ", ".join(nv.names) if nv else ""
    if pref == "default":
        return TorchChoice("default", None, "Torch Build preference: PyPI default", "")
    if pref == "cpu":
        return TorchChoice("cpu", TORCH_INDEX + "cpu", "Torch Build preference: CPU", "cpu")
    if pref == "rocm":
        return TorchChoice("rocm", TORCH_INDEX + ROCM_BUILD, "Torch Build preference: ROCm", ROCM_BUILD)
    if pref == "cuda":
        tag = cuda_build_for(nv.cuda if nv else None) or CUDA_BUILDS[-1][0]
        why = f"Torch Build preference: CUDA ({gpu or 'no NVIDIA GPU detected'})"
        return TorchChoice("cuda", TORCH_INDEX + tag, why, tag)
    if pref != "auto":
        raise ValueError(f"unknown torch build {preference!r}: use one of {', '.join(c[0] for c in BUILD_CHOICES)}")
    if machine.system == "Darwin":
        return TorchChoice("default", None, "macOS: the default build (Apple MPS on Apple Silicon)", "")
    if nv is not None:
        tag = cuda_build_for(nv.cuda)
        cuda = f"CUDA {nv.cuda[0]}.{nv.cuda[1]}" if nv.cuda else "CUDA version unknown"
        if tag is None:
            return TorchChoice("cpu", TORCH_INDEX + "cpu", f"NVIDIA {gpu} found, but its driver ({nv.driver}, {cuda}) "
                               "is older than every CUDA build of torch: update the NVIDIA driver, then recreate "
                               "the environment", "cpu")
        return TorchChoice("cuda", TORCH_INDEX + tag, f"NVIDIA GPU {gpu} (driver {nv.driver}, {cuda})", tag)
    if machine.rocm:
        return TorchChoice("rocm", TORCH_INDEX + ROCM_BUILD, "AMD ROCm found (Linux)", ROCM_BUILD)
    return TorchChoice("cpu", TORCH_INDEX + "cpu", "no NVIDIA or ROCm GPU found", "cpu")


def torch_requirement(requirements: Path) -> str | None:
    """The ``torch`` line of the engine's requirements ("torch>=2.2"), None if it needs no torch."""
    for line in requirements.read_text(encoding="utf-8").splitlines():
        spec = line.split("#", 1)[0].strip()
        m = re.match(r"torch(?![\w.-])\s*(.*)$", spec, re.IGNORECASE)
        if m:
            return "torch" + m.group(1).replace(" ", "")
    return None


def install_steps(base_python: str, venv_dir: Path, requirements: Path, choice: TorchChoice,
                  venv_py: Path | None = None) -> list[tuple[str, list[str]]]:
    """(label, argv) steps: a fresh venv (``--clear``: recreating replaces a CPU torch with the
    chosen build), torch from the chosen index (with the requirements' version bound), then the
    engine's requirements from PyPI (torch is already satisfied there, so pip keeps the chosen
    build). ``venv_py``: the venv's interpreter (default: this platform's layout; tests pass the
    Windows one)."""
    py = str(venv_py or venv_python(venv_dir))
    pip = [py, "-m", "pip", "install", "--progress-bar", "off"]
    steps = [("Creating virtual environment", [base_python, "-m", "venv", "--clear", str(venv_dir)])]
    torch = torch_requirement(requirements)
    if torch is not None:
        steps.append((f"Installing torch ({choice.tag or choice.build}; large download: minutes)",
                      pip + [torch] + (["--index-url", choice.index_url] if choice.index_url else [])))
    steps.append(("Installing engine requirements", pip + ["-r", str(requirements)]))
    return steps


def command_text(argv: Sequence[str]) -> str:
    """One step as the user would type it (shown in the preferences)."""
    import shlex

    if sys.platform == "win32":
        return subprocess.list2cmdline(list(argv))
    return shlex.join(argv)
