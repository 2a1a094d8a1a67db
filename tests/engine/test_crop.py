"""Framing as animate uses it (engine/framing; the paste-back canvas: engine/render/canvas.py): Haar boxes,
auto crop on the example portrait, manual box, none, no-face error, affine round trip."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from engine.errors import BadRequest, ImageError, NoFaceError
from engine.framing.frame import CROP_SIZE, Framing, FramingOptions, frame_portrait, parse_crop_arg
from engine.framing.frame import load_picture as load_image_rgb
from engine.framing.haar import detect_faces_haar
from engine.render.canvas import resize_to_limit

REPO = Path(__file__).resolve().parents[2]
PORTRAIT = REPO / "examples" / "portrait.jpg"


def crop_portrait(img: np.ndarray, mode: object = "auto", **options: object) -> Framing:
    """Frame ``img`` as animate does (``mode``: a parse_crop_arg result)."""
    return frame_portrait(img, FramingOptions(crop=mode, **options))


@pytest.fixture(scope="module")
def portrait() -> np.ndarray:
    return load_image_rgb(PORTRAIT)


def test_haar_finds_the_example_face(portrait: np.ndarray) -> None:
    faces = detect_faces_haar(portrait)
    assert faces, "no face found in examples/portrait.jpg"
    x, y, w, h = faces[0]
    # the face is in the upper middle of the 320x320 head-and-shoulders picture
    assert 80 < x + w / 2 < 240 and 60 < y + h / 2 < 180 and 60 < w < 160


def test_numpy_cascade_agrees_on_the_example(portrait: np.ndarray) -> None:
    from engine.framing.haar import detect_faces

    grey = cv2.equalizeHist(cv2.cvtColor(portrait, cv2.COLOR_RGB2GRAY))
    faces = detect_faces(grey, min_neighbors=4, min_size=25)
    assert faces and abs((faces[0][0] + faces[0][2] / 2) - 160) < 60


def test_auto_crop_and_affine_round_trip(portrait: np.ndarray) -> None:
    crop = crop_portrait(portrait, "auto")
    assert crop.method == "mtcnn" and crop.image.shape == (CROP_SIZE, CROP_SIZE, 3)
    # the crop pixel (256,256) maps to a point inside the image, and back
    centre = crop.M_c2o @ np.array([256, 256, 1.0])
    assert 0 <= centre[0] < 320 and 0 <= centre[1] < 320
    back = crop.M_o2c @ np.array([*centre, 1.0])
    np.testing.assert_allclose(back, [256, 256], atol=1e-9)
    # the crop shows the same pixels: sample one through the affine
    px = crop.M_c2o @ np.array([300.0, 200.0, 1.0])
    expected = portrait[int(round(px[1])), int(round(px[0]))].astype(int)
    assert np.abs(crop.image[200, 300].astype(int) - expected).max() < 40


def test_manual_box_and_none(portrait: np.ndarray) -> None:
    box = parse_crop_arg("100,60,100,100")
    assert box == (100, 60, 100, 100)
    crop = crop_portrait(portrait, box)
    assert crop.method == "manual" and crop.box == box
    none = crop_portrait(portrait, "none")
    assert none.method == "none" and none.box is None
    np.testing.assert_allclose(none.M_c2o @ np.array([512, 512, 1.0]), [320, 320])
    with pytest.raises(BadRequest):
        parse_crop_arg("1,2,3")
    with pytest.raises(BadRequest):
        crop_portrait(portrait, (1000, 1000, 10, 10))


def test_box_near_border_is_padded_not_failed(portrait: np.ndarray) -> None:
    crop = crop_portrait(portrait, (0, 0, 200, 200))  # crop side 460 > 320 image side
    assert crop.image.shape == (512, 512, 3)


def test_no_face_error_suggests_manual_crop() -> None:
    rng = np.random.default_rng(1)
    noise = (rng.random((240, 240, 3)) * 30 + 110).astype(np.uint8)
    with pytest.raises(NoFaceError) as exc:
        crop_portrait(noise, "auto")
    assert "--crop points:" in str(exc.value) and "--crop X,Y,W,H" in str(exc.value)
    assert "--crop none" in str(exc.value)


def test_image_errors(tmp_path: Path) -> None:
    with pytest.raises(ImageError):
        load_image_rgb(tmp_path / "missing.png")
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"garbage")
    with pytest.raises(ImageError):
        load_image_rgb(bad)


def test_resize_to_limit() -> None:
    img = np.zeros((1501, 3001, 3), np.uint8)
    out = resize_to_limit(img)
    assert max(out.shape[:2]) <= 1280 and out.shape[0] % 2 == 0 and out.shape[1] % 2 == 0


def test_broken_detector_onnx_falls_back_to_the_default_detector(portrait: np.ndarray, tmp_path: Path) -> None:
    det = tmp_path / "insightface/models/buffalo_l/det_10g.onnx"
    det.parent.mkdir(parents=True)
    det.write_bytes(b"not an onnx model")
    crop = crop_portrait(portrait, "auto", weights_root=tmp_path)
    assert crop.method == "mtcnn"


def test_without_mtcnn_the_haar_box_frames(portrait: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.framing import mtcnn

    monkeypatch.setattr(mtcnn, "available", lambda: False)
    crop = crop_portrait(portrait, "auto")
    assert crop.method == "haar" and crop.points is None and crop.warnings[0][0] == "no_landmarks"
