"""Progress ETA: honest from the second unit (the first one's warm-up does not inflate it)."""
from __future__ import annotations

import io
import json

import pytest

from engine import runner


def test_eta_excludes_first_unit_warmup(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = {"t": 100.0}
    monkeypatch.setattr(runner.time, "monotonic", lambda: clock["t"])
    out = io.StringIO()
    rep = runner.Reporter(out, quiet=True)
    rep.progress("render", 0, 100, "frame")
    clock["t"] += 10.0                      # frame 1: 10 s (warm-up)
    rep.progress("render", 1, 100, "frame")
    for done in range(2, 5):                # then 1 s per frame
        clock["t"] += 1.0
        rep.progress("render", done, 100, "frame")
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    eta = [e["eta_s"] for e in events if e["type"] == "progress"]
    assert eta[0] is None
    assert eta[1] == pytest.approx(99 * 10.0)     # one unit known: its time is all we have
    assert eta[-1] == pytest.approx(96 * 1.0)     # the old cumulative rate said 96 * 13/4 = 312 s
