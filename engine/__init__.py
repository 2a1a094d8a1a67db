"""JoyVASA inference engine: audio -> LivePortrait motion -> rendered portrait frames.

Run as a subprocess (``python -m engine ...``); it speaks the JSON-lines protocol defined in
:mod:`engine.contract.protocol` on stdout. Importing this package is cheap (no torch import here).
"""
from __future__ import annotations

__version__ = "0.1.0"
