"""Entry point for ``python -m engine``."""
from __future__ import annotations

import sys

from engine.cli import main
from engine.runner import ignore_exit_signals

if __name__ == "__main__":
    code = main()
    ignore_exit_signals()
    sys.exit(code)
