"""bpy-free framing helpers of the add-on: coordinates, point order, engine options, summaries."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from engine.framing import frame as engine_frame
from joyvasa_blender.core import framing
from tests.engine.test_framing import _with_exif_orientation


def test_view_and_pixel_coordinates_round_trip() -> None:
    assert framing.view_to_pixel(0.0, 1.0, 640, 480) == (0.0, 0.0)          # top-left corner
    assert framing.view_to_pixel(1.0, 0.0, 640, 480) == (640.0, 480.0)      # bottom-right
    x, y = framing.view_to_pixel(0.25, 0.75, 640, 480)
    assert (x, y) == (160.0, 120.0) and framing.pixel_to_view(x, y, 640, 480) == (0.25, 0.75)


def test_order_points_and_validation() -> None:
    assert framing.order_points([(30, 10), (10, 11), (20, 30)]) == [(10, 11), (30, 10), (20, 30)]
    with pytest.raises(ValueError, match="eye"):
        framing.order_points([(10, 10), (10.5, 10), (20, 30)])
    with pytest.raises(ValueError, match="mouth"):
        framing.order_points([(10, 10), (30, 10), (20, 10)])
    with pytest.raises(ValueError):
        framing.order_points([(1, 2), (3, 4)])


def test_framing_args_match_the_engine_cli() -> None:
    assert framing.framing_args("AUTO") == ["--crop", "auto"]
    assert framing.framing_args("AUTO", face_index=2, scale=2.0) == ["--crop", "auto", "--scale", "2", "--face-index", "2"]
    assert framing.framing_args("NONE", face_index=2) == ["--crop", "none"]
    assert framing.framing_args("BOX", box=(1, 2, 30.5, 40)) == ["--crop", "1,2,30.5,40"]
    pts = (10.25, 12, 30, 12, 20, 24.5)
    assert framing.framing_args("POINTS", points=pts, vy=0.0) == ["--crop", "points:10.25,12,30,12,20,24.5", "--vy", "0"]
    with pytest.raises(ValueError, match="Frame Face"):
        framing.framing_args("POINTS", points=(0,) * 6)
    with pytest.raises(ValueError, match="width"):
        framing.framing_args("BOX", box=(0, 0, 0, 10))


def test_engine_parses_what_the_addon_sends() -> None:
    """The add-on's --crop strings are accepted by the engine's parser (both sides of the contract)."""
    assert engine_frame.parse_crop_arg(framing.crop_value("POINTS", points=(10.25, 12, 30, 12, 20, 24.5))) == \
        ("points", (10.25, 12.0, 30.0, 12.0, 20.0, 24.5))
    assert engine_frame.parse_crop_arg(framing.crop_value("BOX", box=(1, 2, 3, 4))) == (1, 2, 3, 4)


def test_summary_and_points_from_event() -> None:
    ev = {"method": "mtcnn", "faces": 2, "face_index": 1, "angle_deg": -12.4,
          "points": [[1, 2], [5, 2], [3, 4], [2, 6], [4, 6]]}
    assert framing.framing_summary(ev) == "mtcnn, face 2 of 2, tilt -12°"
    assert framing.points_from_event(ev) == [1, 2, 5, 2, 3, 6]
    assert framing.framing_summary(None) == "" and framing.points_from_event({"points": None}) is None
    assert framing.framing_summary({**ev, "lip_open": 0.163}).endswith("lips open 0.16 → closed first")
    assert framing.framing_summary({**ev, "lip_open": 0.01}).endswith("lips open 0.01")


def test_settings_from_the_engine_crop_text() -> None:
    """Batch job files give the CLI's --crop text; it round-trips through the scene settings."""
    assert framing.settings_from_crop_value("auto") == {"crop_mode": "AUTO"}
    assert framing.settings_from_crop_value("NONE") == {"crop_mode": "NONE"}
    box = framing.settings_from_crop_value("4,5,20,22")
    assert box == {"crop_mode": "BOX", "crop_box": [4, 5, 20, 22]}
    assert framing.crop_value("BOX", box=box["crop_box"]) == "4,5,20,22"
    pts = framing.settings_from_crop_value("points:10,12,30,12,20,24")
    assert framing.crop_value("POINTS", points=pts["face_points"]) == "points:10,12,30,12,20,24"
    for bad in ("face", "1,2,3", "points:1,2", "0,0,0,0"):
        with pytest.raises(ValueError):
            framing.settings_from_crop_value(bad)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_the_engine(tmp_path, orientation: int) -> None:
    """A marker clicked in the stored pixels (what Blender shows) lands where the engine, which
    applies EXIF orientation, sees it: both sides of the points: contract agree for all 8 values."""

    w, h = 96, 64
    img = np.zeros((h, w, 3), np.uint8)
    img[8:16, 20:28] = 255                                  # marker: centre (24, 12) in stored pixels
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 100])
    path = tmp_path / "o.jpg"
    path.write_bytes(_with_exif_orientation(buf.tobytes(), orientation) if orientation != 1 else buf.tobytes())
    assert framing.exif_orientation(str(path)) == orientation
    upright = engine_frame.load_picture(path)
    ys, xs = np.nonzero(upright[..., 0] > 128)
    seen = (xs.mean() + 0.5, ys.mean() + 0.5)               # pixel centres -> edge coordinates
    x, y = framing.stored_to_upright(24.0, 12.0, w, h, orientation)
    assert abs(x - seen[0]) < 1.0 and abs(y - seen[1]) < 1.0


def test_exif_orientation_of_other_files(tmp_path) -> None:
    (tmp_path / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    assert framing.exif_orientation(str(tmp_path / "a.png")) == 1
    assert framing.exif_orientation(str(tmp_path / "missing.jpg")) == 1
