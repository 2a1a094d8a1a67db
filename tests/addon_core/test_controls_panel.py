"""A motion file's recorded controls -> the panel's values (the inverse of controls_dict), so an
applied edited take shows the controls its keys hold (issue 19)."""
from __future__ import annotations

import pytest

from engine.motion.controls import parse_controls
from joyvasa_blender.core import controls as cc

DEFAULTS = {c.prop: (bool(c.default) if c.kind == "bool" else c.default) for c in cc.CONTROLS}
CASES = [
    {},
    {"head_strength": 0.5, "head_translation": 2.0, "smile": 0.7, "lip_strength": 1.5},
    {"head_yaw_gain": 2.0, "head_pitch_offset": -10.0, "gaze_x": 0.5, "gaze_follow_head": 0.0},
    {"blink": True, "blink_rate": 30.0, "blink_seed": 3, "silence_relax": True, "silence_attack": 0.3,
     "fade_in": 1.0, "eye_open": -0.5},
]


def _dict(values: dict, tracks: dict | None = None) -> dict:
    v = {**DEFAULTS, **values}
    return cc.controls_dict(lambda p: v[p], lambda p: (tracks or {}).get(p), 24.0)


@pytest.mark.parametrize("changed", CASES)
def test_panel_values_invert_controls_dict(changed):
    d = _dict(changed)
    values, hidden = cc.panel_values(d)
    assert hidden == []
    assert cc.controls_dict(lambda p: values[p], lambda p: None, 24.0) == d


@pytest.mark.parametrize("changed", CASES)
def test_panel_values_read_the_engines_canonical_record(changed):
    """The motion file records the engine's canonical form (every key, translation_gain None)."""
    d = _dict(changed)
    values, hidden = cc.panel_values(parse_controls(d).to_dict())
    assert hidden == []
    assert cc.controls_dict(lambda p: values[p], lambda p: None, 24.0) == d


def test_tracks_stay_tracks_and_unshown_keys_are_named():
    d = _dict({}, {"smile": [0.0, 0.5, 1.0]})
    values, _ = cc.panel_values(d)
    assert values["smile"] == [0.0, 0.5, 1.0]
    rec = parse_controls({"version": 1, "other_gain": 0.5, "blink": {"depth": 0.5}}).to_dict()
    values, hidden = cc.panel_values(rec)
    assert values["blink"] is True and hidden == ["other_gain", "blink.depth"]
    assert cc.panel_values({"version": 1, "lip_gain": 9.0})[1] == ["lip_strength"]   # beyond the panel's range
