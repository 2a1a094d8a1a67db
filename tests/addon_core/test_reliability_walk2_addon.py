"""Issue #21 from the add-on's side: its warm worker (core/worker.py) against the real
``python -m engine serve``: hostile stdin lines do not stop the engine listening, an add-on request
whose output is its own input is refused with ``output_unwritable`` (the portrait unchanged), and
the next valid request is served by the same process."""
from __future__ import annotations

import hashlib
import shutil
import sys
from pathlib import Path

from joyvasa_blender.core import engine_client as ec
from joyvasa_blender.core.worker import EngineWorker

REPO = Path(__file__).resolve().parents[2]
PORTRAIT = REPO / "examples" / "portrait.jpg"


def test_addon_worker_survives_bad_lines_and_is_refused_overwriting_its_input(tmp_path: Path) -> None:
    image = tmp_path / "portrait.png"
    shutil.copyfile(PORTRAIT, image)
    before = hashlib.sha256(image.read_bytes()).hexdigest()
    env = ec.clean_env({"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "PYTHONIOENCODING": "utf-8:strict"})
    w = EngineWorker(sys.executable, REPO, env)
    try:
        w.start()
        assert w.send("[" * 100_000 + "]" * 100_000 + "\n")
        assert w.send('{"v":1,"type":"run","job":"n","command":"crop","args":{"scale":' + "7" * 5001 + "}}\n")
        events: list[dict] = []
        rc = w.submit("crop", {"image": str(image), "out": str(tmp_path / "." / "portrait.png"),
                               "crop": "none"}).run_sync(events.append, timeout=300)
        err = [e for e in events if e["type"] == "error"]
        assert rc == 1 and err and err[-1]["code"] == "output_unwritable", events
        assert "also an input" in err[-1]["message"]
        assert hashlib.sha256(image.read_bytes()).hexdigest() == before
        events = []
        rc = w.submit("crop", {"image": str(image), "out": str(tmp_path / "crop.png"), "crop": "none"}
                      ).run_sync(events.append, timeout=300)
        assert rc == 0 and (tmp_path / "crop.png").is_file(), events
        assert w.starts == 1 and w.alive()
    finally:
        assert w.stop() == 0
