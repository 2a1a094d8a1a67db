"""The add-on's framing summary and point editing for X-Pose animal framings (bpy-free)."""
from __future__ import annotations

import numpy as np

from joyvasa_blender.core import framing

NINE = [[135, 112], [207, 137], [295, 150], [345, 122], [260, 245], [237, 266], [285, 263], [259, 257], [259, 273]]


def test_summary_says_xpose_and_the_score_or_the_fallback() -> None:
    ev = {"method": "xpose", "score": 0.8712, "faces": 2, "face_index": 0, "points": NINE, "angle_deg": 0.0}
    assert framing.framing_summary(ev) == "animal face found (X-Pose, score 0.87), face 1 of 2"
    low = {"method": "fallback", "score": 0.12, "faces": 0, "points": None}
    text = framing.framing_summary(low)
    assert text.startswith("no animal face found: centred square (X-Pose best score 0.12)") and "Frame Face" in text
    assert "X-Pose" not in framing.framing_summary({"method": "fallback", "score": None})
    assert framing.framing_summary({"method": "cat_haar", "faces": 1}) == "cat_haar, face 1 of 1"


def test_nine_points_become_the_three_frame_face_points() -> None:
    pts = framing.points_from_event({"method": "xpose", "points": NINE})
    assert pts == [171.0, 124.5, 320.0, 136.0, 261.0, 264.5]
    framing.order_points(np.array(pts).reshape(3, 2).tolist())  # valid Frame Face points
    mirrored = [[451 - x, y] for x, y in NINE]
    m = framing.points_from_event({"points": mirrored})
    assert m[0] < m[2]  # image-left eye first whatever the animal's orientation


def test_preview_draws_the_points_where_they_fall_on_the_crop() -> None:
    """Preview Crop draws the framing's points over the crop: picture pixels → crop → view coordinates."""
    from engine.framing import xpose

    fr = xpose.frame_points9(np.array(NINE, float), 2.3, 0.0, -0.125)
    ev = {"points": NINE, "M_c2o": fr.M_c2o.tolist(), "crop_size": 512}
    got = framing.crop_view_points(ev)
    A = np.vstack([fr.M_c2o, [0, 0, 1]])
    crop = (np.linalg.inv(A) @ np.c_[np.array(NINE, float), np.ones(9)].T)[:2].T
    want = [(x / 512, 1 - y / 512) for x, y in crop]
    assert len(got) == 9 and np.allclose(got, want, atol=1e-9)
    assert all(0 < u < 1 and 0 < v < 1 for u, v in got)
    outside = {**ev, "points": NINE + [[-5000, -5000]]}
    assert len(framing.crop_view_points(outside)) == 9          # a point off the crop is not drawn
    assert framing.crop_view_points({"points": None}) == [] and framing.crop_view_points(None) == []
