"""The fake engine's transcripts (tests/contract/*.jsonl) speak the contract: every event type,
stage, unit and error code is the protocol's, and no hello states a version of its own (the fake
stamps the contract's, so the fixtures cannot fall behind the engine as they did at 1.0 vs 1.4)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from engine.contract import protocol

HERE = Path(__file__).resolve().parent
UNITS = ("window", "step", "frame", "file", "job", "byte")
#: deliberately off-contract: a future engine the add-on must refuse
FUTURE = {"protocol_v2.jsonl"}


def test_every_transcript_event_is_a_contract_event() -> None:
    files = sorted(p for p in HERE.glob("*.jsonl") if p.name not in FUTURE)
    assert len(files) >= 6
    for path in files:
        for n, line in enumerate(path.read_text().splitlines(), 1):
            event = json.loads(line)
            if "_fake" in event:
                continue
            where = f"{path.name}:{n}"
            assert event["type"] in protocol.EVENT_TYPES, where
            assert "protocol" not in event and "v" not in event, f"{where}: the fake stamps the contract's version"
            if event["type"] == "progress":
                assert event["stage"] in protocol.STAGES and event["unit"] in UNITS, where
            if event["type"] == "error":
                assert event["code"] in protocol.ERROR_CODES, where


def test_the_fake_engine_says_hello_in_the_contracts_version(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(HERE.parent / "fake_engine.py"), "-m", "engine", "motion",
                           "--out", str(tmp_path / "m.npz"), "--progress", "json"], capture_output=True, text=True,
                          timeout=60, env={"JOYVASA_FAKE_TRANSCRIPT": "error_weights", "PATH": ""})
    hello = protocol.parse_event(proc.stdout.splitlines()[0])
    assert hello["type"] == "hello" and protocol.hello_problem(hello) is None
    assert hello["protocol"] == [protocol.PROTOCOL_MAJOR, protocol.PROTOCOL_MINOR]
