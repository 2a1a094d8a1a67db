"""Engine errors with stable protocol codes (see :data:`engine.contract.protocol.ERROR_CODES`).

Every failure a user can cause (bad file, missing weights, no face) is raised as an
:class:`EngineError` subclass whose message says what happened and what to do next. The
command runner turns it into one ``error`` event / one stderr line and exit code 1.
"""
from __future__ import annotations

import sys

OFFICIAL_WEIGHTS_HINT = (
    "Official weights: LivePortrait from https://huggingface.co/KwaiVGI/LivePortrait "
    "(liveportrait/...), JoyVASA from https://huggingface.co/jdh-algo/JoyVASA, "
    "chinese-hubert-base from https://huggingface.co/TencentGameMate/chinese-hubert-base; "
    "download them with `python -m engine fetch --out DIR` (in Blender: Preferences > Add-ons > "
    "JoyVASA > Download Weights), or by hand as docs/install.md 'Weights by hand' lists."
)


class EngineError(Exception):
    """Base class; ``code`` is a stable protocol error code."""

    code = "internal"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self)


class BadRequest(EngineError):
    code = "bad_request"


class AudioError(EngineError):
    code = "audio_invalid"


class ImageError(EngineError):
    code = "image_invalid"


class NoFaceError(EngineError):
    code = "no_face"


class WeightsMissing(EngineError):
    code = "weights_missing"


class WeightsCorrupt(EngineError):
    code = "weights_corrupt"


class OutputError(EngineError):
    code = "output_unwritable"


class DeviceUnavailable(EngineError):
    code = "device_unavailable"


class DiskFull(EngineError):
    code = "disk_full"


class Offline(EngineError):
    """The weight host cannot be reached (no network, HF_HUB_OFFLINE, a mirror that does not answer)."""

    code = "offline"


class DownloadFailed(EngineError):
    """A download started but did not give the right file (HTTP error, wrong size or hash, a file
    the mirror lacks); a re-run resumes where it stopped."""

    code = "download_failed"


class MissingDependency(EngineError):
    """An engine package is absent or broken; ``package`` is its pip name."""

    code = "missing_dependency"

    def __init__(self, message: str, *, package: str = "") -> None:
        super().__init__(message)
        self.package = package


class OutOfMemory(EngineError):
    code = "oom"


OOM_HINT = "try a smaller --batch (e.g. --batch 1), --dtype bfloat16, or a shorter clip"
#: the advice of ``oom`` names only options the failing command has (``edit`` has no --batch)
OOM_HINTS = {
    "animate": OOM_HINT,
    "motion": "try --dtype bfloat16, a shorter clip, or close other programs",
    "serve": OOM_HINT,
}
OOM_HINT_OTHER = "close other programs or use a shorter motion file / clip"
#: substrings of torch allocator errors that are plain RuntimeErrors (CPU, MPS, older CUDA, cuBLAS)
_OOM_MARKERS = ("can't allocate memory", "out of memory", "CUBLAS_STATUS_ALLOC_FAILED",
                "Cannot allocate memory")


#: Python module -> (pip distribution, what it is for)
PACKAGES: dict[str, tuple[str, str]] = {
    "torch": ("torch", "every network"),
    "numpy": ("numpy", "every array"),
    "cv2": ("opencv-python-headless", "reading the portrait, face detection and PNG frames"),
    "av": ("av", "writing mp4 video with sound"),
    "soundfile": ("soundfile", "reading audio"),
    "soxr": ("soxr", "resampling audio to 16 kHz"),
    "librosa": ("librosa", "reading audio formats libsndfile cannot (fallback)"),
    "transformers": ("transformers", "HuBERT layouts the engine's own encoder does not cover (fallback)"),
    "scipy": ("scipy", "motion resampling"),
    "yaml": ("pyyaml", "reading models.yaml"),
    "huggingface_hub": ("huggingface_hub", "downloading the weights (engine fetch)"),
    "sounddevice": ("sounddevice", "the microphone of a live session (engine live --mic)"),
    "pythonosc": ("python-osc", "the VMC output of a live session (--vmc)"),
}

def install_command(dist: str) -> str:
    return f"{sys.executable} -m pip install {dist}"


def missing_dependency(module: str, exc: BaseException | None = None) -> MissingDependency:
    top = module.split(".")[0]
    dist, purpose = PACKAGES.get(top, (top, "the engine"))
    broken = exc is not None and not isinstance(exc, ModuleNotFoundError)
    what = f"is installed but cannot be imported ({exc})" if broken else "is not installed"
    return MissingDependency(
        f"the Python package {dist!r} (module {top}, needed for {purpose}) {what} in the engine's Python "
        f"{sys.executable}; install it with: {install_command(dist)}  (or reinstall the engine: "
        "pip install -e . from the repository)", package=dist)


def classify_failure(exc: BaseException, command: str = "animate") -> EngineError | None:
    """A library exception a user's situation can cause, as a coded error; None for real bugs.

    Why here: torch's allocator errors are not ``MemoryError``, a full disk surfaces as an
    ``OSError`` from whichever writer hit it, and a missing package as ``ModuleNotFoundError``
    wherever it was first imported; the runner maps them all in one place. ``command`` picks the
    ``oom`` advice (only options that command has).
    """
    import errno

    if isinstance(exc, EngineError):
        return exc
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError" or (
            isinstance(exc, RuntimeError) and any(m in str(exc) for m in _OOM_MARKERS)):
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        return OutOfMemory(f"out of memory ({first}); {OOM_HINTS.get(command, OOM_HINT_OTHER)}")
    err_no = getattr(exc, "errno", None)
    if isinstance(exc, OSError) and err_no in (errno.ENOSPC, getattr(errno, "EDQUOT", -1), errno.EFBIG):
        where = getattr(exc, "filename", None)
        return DiskFull(f"the disk is full or a size limit was reached{f' writing {where}' if where else ''} "
                        f"({exc.strerror or exc}); free some space or choose another output folder "
                        "(the partial output was removed)")
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        if exc.name.split(".")[0] in PACKAGES:
            return missing_dependency(exc.name, exc)
    return None


class Cancelled(Exception):
    """Raised at a cancellation checkpoint after SIGINT/SIGTERM or a ``cancel`` stdin line."""

    def __init__(self, stage: str = "", done: int = 0) -> None:
        super().__init__("cancelled")
        self.stage = stage
        self.done = done
