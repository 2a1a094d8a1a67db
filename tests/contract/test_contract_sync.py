"""``joyvasa_blender/core/contract/`` is the verbatim copy of ``engine/contract/`` and the
contract files import nothing from the rest of the engine (``tools/sync_contract.py --check``)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_sync_contract_check_passes() -> None:
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "sync_contract.py"), "--check"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
