"""Engine errors with stable protocol codes (see :data:`engine.protocol.ERROR_CODES`).

Every failure a user can cause (bad file, missing weights, no face) is raised as an
:class:`EngineError` subclass whose message says what happened and what to do next. The
command runner turns it into one ``error`` event / one stderr line and exit code 1.
"""
from __future__ import annotations

OFFICIAL_WEIGHTS_HINT = (
    "Official weights: LivePortrait from https://huggingface.co/KwaiVGI/LivePortrait "
    "(liveportrait/...), JoyVASA from https://huggingface.co/jdh-algo/JoyVASA, "
    "chinese-hubert-base from https://huggingface.co/TencentGameMate/chinese-hubert-base; "
    "run `python tools/fetch_weights.py --out DIR` or see README.md 'Weights'."
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


class Cancelled(Exception):
    """Raised at a cancellation checkpoint after SIGINT/SIGTERM or a ``cancel`` stdin line."""

    def __init__(self, stage: str = "", done: int = 0) -> None:
        super().__init__("cancelled")
        self.stage = stage
        self.done = done
