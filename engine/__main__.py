"""Entry point for ``python -m engine``."""
from __future__ import annotations

import sys

from engine import profiling
from engine.cli import main
from engine.runner import ignore_exit_signals

if __name__ == "__main__":
    profiling.COLD_PROCESS = True  # the done event's breakdown includes the interpreter start-up
    code = main()
    ignore_exit_signals()
    sys.exit(code)
