"""Preview Crop keeps the framing's landmark points (X-Pose's 9 for animals) in crop-view coordinates
and draws them over the preview with a draw handler the add-on registers (and removes)."""
from __future__ import annotations

import bpy
import pytest

from conftest import addon


def test_preview_stores_the_points_to_draw_and_the_handler_is_registered(scene, tmp_path):
    st = scene.joyvasa
    st.portrait_source = "IMAGE"
    st.portrait_image = bpy.data.images.new("Portrait", 32, 32)
    st.output_dir = str(tmp_path)
    ops_framing = addon("ops_framing")
    assert ops_framing._draw_handle is not None
    assert bpy.ops.joyvasa.preview_crop() == {"FINISHED"}, addon("runtime").LAST.report_text()
    pts = ops_framing.preview_points(scene)
    # the fake engine's mtcnn event: 5 points, M_c2o scale 0.1 → (11, 12) lands at crop (210, 240)
    assert len(pts) == 5 and pts[0] == pytest.approx((210 / 512, 1 - 240 / 512))
    ops_framing._draw_preview_points(bpy.context)  # no Image Editor in background mode: a no-op, no error
