"""Benchmarks behind ``python -m engine bench <target>``; each module exposes add_arguments(p) and run(args)."""
from __future__ import annotations

TARGETS = ("render", "motion", "animate", "framing", "codec", "live")
