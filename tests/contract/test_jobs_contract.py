"""Golden job files (tests/contract/jobs/*.json): the add-on's core must produce each one from the
given panel settings, and the engine must accept each one as its typed job (engine/jobs.py)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from engine.errors import BadRequest
from engine.jobs import JOB_TYPES, job_from_dict
from joyvasa_blender.core import framing, live_player, requests

JOBS = Path(__file__).resolve().parent / "jobs"
GOLDEN = sorted(JOBS.glob("*.json"))
PREFS = {"weights": "/weights", "device": "auto", "dtype": "auto"}
PANEL = {"seed": 0, "sampler": "dpmpp_2m", "steps": 0, "cfg_scale": 2.0, "smooth": True, "region": "all",
         "animal": False, "normalize_lip": True, "crop_mode": "AUTO", "crop_box": (0, 0, 0, 0),
         "face_points": (0,) * 6, "crop_scale": framing.DEFAULT_SCALE, "crop_vx": framing.DEFAULT_VX,
         "crop_vy": framing.DEFAULT_VY, "face_index": 0}


def _framed(settings: dict[str, Any]) -> dict[str, Any]:
    return requests.framing_fields(lambda prop: settings[prop])


def _case(name: str) -> dict[str, Any]:
    """What each operator hands core/requests.py for the golden file ``name``."""
    if name == "motion":                                    # Generate Motion
        st = {**PANEL, "seed": 11, "steps": 12, "cfg_scale": 2.50001, "smooth": False}
        return requests.job_dict("motion", st, {**PREFS, "device": "cpu", "dtype": "bfloat16"},
                                 audio="/takes/line.wav", out="/takes/motion_seed11.npz",
                                 controls="/takes/motion_seed11.controls.json")
    if name == "animate":                                   # Render Portrait with a motion file and points
        st = {**PANEL, "seed": 3, "sampler": "ddim", "region": "lip", "normalize_lip": False,
              "crop_mode": "POINTS", "face_points": (10, 12, 30, 12, 20, 24), "crop_scale": 2.6}
        return requests.job_dict("animate", st, {**PREFS, "dtype": "float16"}, image="/takes/portrait.jpg",
                                 audio="/takes/line.wav", out="/takes/portrait_seed3.mp4", fps=24.0,
                                 motion="/takes/motion_seed3.npz", controls="/takes/portrait_seed3.controls.json",
                                 save_driving="/takes/portrait_seed3.driving.npy", preview=False, **_framed(st))
    if name == "animate_animal_preview":                    # Preview of an animal, second face
        st = {**PANEL, "animal": True, "face_index": 1}
        return requests.job_dict("animate", st, PREFS, image="/takes/cat.jpg", audio="/takes/meow.wav",
                                 out="/takes/preview_seed0.mp4", fps=25.0, motion=None,
                                 controls="/takes/preview_seed0.controls.json",
                                 save_driving="/takes/preview_seed0.driving.npy", preview=True, **_framed(st))
    if name == "crop":                                      # Preview Crop with a box
        st = {**PANEL, "crop_mode": "BOX", "crop_box": (4, 5, 20, 22), "crop_vy": 0.0}
        return requests.job_dict("crop", st, PREFS, image="/takes/portrait.jpg", out="/takes/crop_preview.png",
                                 **_framed(st))
    if name == "edit":                                      # Re-apply Controls / Apply Motion File
        return requests.job_dict("edit", motion="/takes/motion_seed11.npz",
                                 controls="/takes/motion_seed11_edit.controls.json",
                                 out="/takes/motion_seed11_edit.npz")
    if name == "export":                                    # File > Export > JoyVASA Motion
        return requests.job_dict("export", motion="/takes/motion_seed11.npz", format="livelinkface-csv",
                                 out="/takes/take.csv", fps=24.0)
    if name == "live":                                      # Live panel: Start, microphone, Low latency
        st = {**PANEL, "seed": 4}
        return requests.job_dict("live", st, PREFS, out="/takes/live_seed4.npz", wav="/takes/live_seed4.wav",
                                 controls="/takes/live_seed4.controls.json", source="mic", mic="USB Microphone",
                                 **live_player.latency_fields("LOW"))
    raise AssertionError(f"no add-on case for the golden job {name}")


def test_every_command_has_a_golden_job() -> None:
    """Every job the add-on sends (doctor and fetch travel as plain command lines)."""
    expected = set(JOB_TYPES) - {"doctor", "fetch"}
    assert {json.loads(p.read_text())["command"] for p in GOLDEN} == expected


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: p.stem)
def test_the_addon_produces_the_golden_job(path: Path) -> None:
    assert _case(path.stem) == json.loads(path.read_text())


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: p.stem)
def test_the_engine_accepts_the_golden_job(path: Path) -> None:
    data = json.loads(path.read_text())
    job = job_from_dict(data)
    assert type(job) is JOB_TYPES[data["command"]]
    wire = job.to_dict()
    assert {k: wire[k] for k in data} == data              # every golden value lands in its field
    assert job_from_dict(json.loads(json.dumps(wire))) == job


@pytest.mark.parametrize("change,needle", [({"version": 2}, "version"), ({"schema": "x"}, "schema"),
                                           ({"colour": "red"}, "unknown option"), ({"seed": "11"}, "--seed"),
                                           ({"command": "animate"}, "needs --image")])
def test_the_engine_refuses_a_changed_job(change: dict[str, Any], needle: str) -> None:
    data = {**json.loads((JOBS / "motion.json").read_text()), **change}
    with pytest.raises(BadRequest, match=needle):
        job_from_dict(data)
