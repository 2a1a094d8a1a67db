"""Kept for old instructions: the fetcher is now ``python -m engine fetch`` (also in the extension).

    python tools/fetch_weights.py --out DIR [--animals] [--xpose] [--detector]  ==  python -m engine fetch ...
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["fetch", *sys.argv[1:]]))
