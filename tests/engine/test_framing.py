"""Face framing: upstream's formula from points, the detector on transformed real faces, M_c2o
into the original file (also when detection ran on a downscaled copy), borders, alpha, several
faces, no face, and the ``engine crop`` command line."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from engine.errors import BadRequest, NoFaceError
from engine.framing import geometry as geo
from engine.framing import mtcnn
from engine.framing.frame import (ALPHA_BACKGROUND, FramingOptions, downscaled, frame_portrait, load_picture,
                                  parse_crop_arg)

REPO = Path(__file__).resolve().parents[2]
PORTRAIT = REPO / "examples" / "portrait.jpg"
needs_mtcnn = pytest.mark.skipif(not mtcnn.available(), reason="the mtcnn package (detector weights) is missing")

# where upstream's formula puts a typical face (spec §3): eye midpoint x 0.5, y ≈ 0.54, eye–mouth ≈ 0.205
EYE_Y = 0.5 + (0.125 - geo.BOX_CENTRE_D / (geo.BOX_PER_D * 2.3))
EYE_MOUTH = 1.0 / (geo.BOX_PER_D * 2.3)


def rotate_about(p: np.ndarray, c: np.ndarray, deg: float) -> np.ndarray:
    """Rotate points p about c by deg, counter-clockwise on screen (cv2.getRotationMatrix2D's sense)."""
    M = cv2.getRotationMatrix2D((float(c[0]), float(c[1])), deg, 1.0)
    return np.asarray(p, np.float64) @ M[:, :2].T + M[:, 2]


def synthetic_face(deg: float, size: int = 600) -> tuple[np.ndarray, np.ndarray]:
    """A grey picture with a red left eye, green right eye and blue mouth, rotated by deg."""
    img = np.full((size, size, 3), 90, np.uint8)
    c = np.array([size / 2, size / 2])
    pts = np.array([[260.0, 280.0], [340.0, 280.0], [300.0, 370.0]])  # eyes 80 apart, mouth 90 below
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    for (x, y), col in zip(pts, colours):
        cv2.circle(img, (int(x), int(y)), 9, col, -1)
    M = cv2.getRotationMatrix2D((float(c[0]), float(c[1])), deg, 1.0)
    img = cv2.warpAffine(img, M, (size, size), borderMode=cv2.BORDER_CONSTANT, borderValue=(90, 90, 90))
    return img, rotate_about(pts, c, deg)


# -- the formula --------------------------------------------------------------------------------

@pytest.mark.parametrize("deg", [-20.0, 0.0, 20.0])
def test_points_frame_upright_centred_and_sized(deg: float) -> None:
    img, pts = synthetic_face(deg)
    fr = frame_portrait(img, FramingOptions(crop=("points", tuple(pts.ravel()))))
    assert fr.method == "points" and fr.image.shape == (512, 512, 3)
    c = geo.to_crop(fr.M_c2o, pts) / 512.0
    eye_mid, mouth = (c[0] + c[1]) / 2, c[2]
    np.testing.assert_allclose(eye_mid, [0.5, EYE_Y], atol=1e-9)
    np.testing.assert_allclose(mouth, [0.5, EYE_Y + EYE_MOUTH], atol=1e-9)
    assert abs(c[0, 1] - c[1, 1]) < 1e-9 and c[0, 0] < c[1, 0]      # eyes level: upright
    # crop side = scale x 2.12 x max(eye-mouth 90, 0.85 x eye distance 80)
    side = 512 * math.hypot(*fr.M_c2o[:, 0])
    assert side == pytest.approx(2.3 * geo.BOX_PER_D * 90.0, rel=1e-9)
    assert fr.angle_deg == pytest.approx(-deg, abs=1e-6)
    # and the pixels: the coloured dots sit where the affine says
    for (x, y), channel in zip(c * 512, (0, 1, 2)):
        px = fr.image[int(round(y)), int(round(x))]
        assert px[channel] > 200 and sorted(px)[1] < 60


def test_upstream_formula_from_a_landmark_box() -> None:
    """frame_from_landmarks follows the spec's restatement line by line."""
    rng = np.random.default_rng(3)
    P = rng.normal(size=(40, 2)) * [30, 45] + [400, 300]
    e0, e1 = np.array([390.0, 280.0]), np.array([410.0, 340.0])
    fr = geo.frame_from_landmarks(P, e0, e1, scale=2.3, vx=0.1, vy=-0.125)
    uy = (e1 - e0) / np.linalg.norm(e1 - e0)
    ux = np.array([uy[1], -uy[0]])
    r = (P - P.mean(0)) @ np.stack([ux, uy]).T
    lo, hi = r.min(0), r.max(0)
    c1 = (lo + hi) / 2
    side = max(hi - lo) * 2.3
    centre = P.mean(0) + ux * c1[0] + uy * c1[1] + ux * 0.1 * side + uy * -0.125 * side
    np.testing.assert_allclose(geo.to_original(fr.M_c2o, [[256, 256]])[0], centre, atol=1e-9)
    np.testing.assert_allclose(fr.side, side)
    np.testing.assert_allclose(fr.M_c2o[:, 1] / np.linalg.norm(fr.M_c2o[:, 1]), uy, atol=1e-12)


def test_scale_vx_vy_move_the_crop_as_upstream() -> None:
    img, pts = synthetic_face(0.0)
    spec = ("points", tuple(pts.ravel()))
    base = frame_portrait(img, FramingOptions(crop=spec))
    big = frame_portrait(img, FramingOptions(crop=spec, scale=3.0))
    shifted = frame_portrait(img, FramingOptions(crop=spec, vx=0.1, vy=0.0))
    assert math.hypot(*big.M_c2o[:, 0]) / math.hypot(*base.M_c2o[:, 0]) == pytest.approx(3.0 / 2.3)
    eye = geo.to_crop(shifted.M_c2o, [(pts[0] + pts[1]) / 2])[0] / 512
    assert eye[0] == pytest.approx(0.4) and eye[1] == pytest.approx(0.5 - geo.BOX_CENTRE_D / (geo.BOX_PER_D * 2.3))
    with pytest.raises(BadRequest):
        frame_portrait(img, FramingOptions(crop=spec, scale=0.0))


def test_parse_crop_arg() -> None:
    assert parse_crop_arg("auto") == "auto" and parse_crop_arg(None) == "auto" and parse_crop_arg("NONE") == "none"
    assert parse_crop_arg("10,20,30,40") == (10, 20, 30, 40)
    assert parse_crop_arg("points:1,2,30,2,15,40") == ("points", (1, 2, 30, 2, 15, 40))
    for bad in ("1,2,3", "points:1,2,3,4", "points:1,1,1,1,5,5", "a,b,c,d", "1,2,0,4", "nan,1,2,3"):
        with pytest.raises(BadRequest):
            parse_crop_arg(bad)


# -- pictures -----------------------------------------------------------------------------------

def test_border_is_constant_black_not_smeared() -> None:
    img = np.full((400, 400, 3), 200, np.uint8)
    fr = frame_portrait(img, FramingOptions(crop=(150, 0, 100, 100)))  # the square leaves the top
    top = geo.to_original(fr.M_c2o, [[256, 0]])[0]
    assert top[1] < 0
    assert fr.image[:20].max() == 0 and fr.image[400:].min() == 200


def test_transparent_pixels_on_grey(tmp_path: Path) -> None:
    rgba = np.zeros((64, 64, 4), np.uint8)
    rgba[16:48, 16:48] = (0, 0, 255, 255)  # opaque red square (BGRA) on transparent black
    path = tmp_path / "a.png"
    cv2.imwrite(str(path), rgba)
    img = load_picture(path)
    assert tuple(img[0, 0]) == (ALPHA_BACKGROUND,) * 3 and tuple(img[32, 32]) == (255, 0, 0)
    grey16 = (np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 16)
    cv2.imwrite(str(tmp_path / "g.png"), grey16)
    g = load_picture(tmp_path / "g.png")
    assert g.shape == (64, 64, 3) and g.dtype == np.uint8 and g[-1, -1, 0] == 255


def _with_exif_orientation(jpeg: bytes, orientation: int) -> bytes:
    """Insert an APP1 Exif segment (one IFD entry: Orientation) right after the JPEG's SOI."""
    import struct

    tiff = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 1) + \
        struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack("<I", 0)
    body = b"Exif\x00\x00" + tiff
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body + jpeg[2:]


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    """A phone photo stored sideways with EXIF orientation 6 is read upright (as animate used to)."""
    img = np.zeros((60, 100, 3), np.uint8)
    img[:, :50] = (0, 0, 255)                                   # left half red (BGR)
    ok, buf = cv2.imencode(".jpg", img)
    path = tmp_path / "phone.jpg"
    path.write_bytes(_with_exif_orientation(buf.tobytes(), 6))   # 6 = rotate 90 deg clockwise to view
    pic = load_picture(path)
    assert pic.shape[:2] == (100, 60)                           # width and height swapped
    assert pic[5, 30, 0] > 200 and pic[95, 30, 0] < 60          # the red half is now on top


def test_downscaled_copy_is_bounded_and_cheap() -> None:
    big = np.zeros((4000, 6000, 3), np.uint8)
    small, f = downscaled(big)
    assert max(small.shape[:2]) == 640 and f == pytest.approx(640 / 6000)


# -- detection on a real face (examples/portrait.jpg, public domain) --------------------------

@pytest.fixture(scope="module")
def portrait() -> np.ndarray:
    return load_picture(PORTRAIT)


@pytest.fixture(scope="module")
def reference(portrait: np.ndarray):
    fr = frame_portrait(portrait)
    assert fr.method == "mtcnn" and fr.faces == 1
    return fr


@needs_mtcnn
def test_detector_frames_the_example_face(portrait: np.ndarray, reference) -> None:
    pts = np.array(reference.points)
    assert pts.shape == (5, 2)
    # eyes above the nose above the mouth, in the upper middle of the head-and-shoulders picture
    assert pts[0, 0] < pts[2, 0] < pts[1, 0] and pts[:2, 1].max() < pts[2, 1] < pts[3:, 1].min()
    assert 110 < pts[:, 0].mean() < 210 and 60 < pts[:, 1].mean() < 180
    c = geo.to_crop(reference.M_c2o, pts) / 512
    assert abs((c[0, 0] + c[1, 0]) / 2 - 0.5) < 1e-6 and abs((c[0, 1] + c[1, 1]) / 2 - EYE_Y) < 1e-6


@needs_mtcnn
@pytest.mark.parametrize("deg", [-20.0, 20.0])
def test_tilted_real_face_comes_out_upright(portrait: np.ndarray, reference, deg: float) -> None:
    pad = cv2.copyMakeBorder(portrait, 100, 100, 100, 100, cv2.BORDER_REFLECT)
    c = np.array([pad.shape[1] / 2, pad.shape[0] / 2])
    M = cv2.getRotationMatrix2D((float(c[0]), float(c[1])), deg, 1.0)
    tilted = cv2.warpAffine(pad, M, (pad.shape[1], pad.shape[0]), borderMode=cv2.BORDER_REFLECT)
    fr = frame_portrait(tilted)
    assert fr.method == "mtcnn"
    # the roll is undone: the angle is the tilt (plus the face's own small roll) ...
    assert fr.angle_deg == pytest.approx(reference.angle_deg - deg, abs=4.0)
    # ... and the reference landmarks, carried through the rotation, land where they land untilted
    moved = rotate_about(np.array(reference.points) + 100, c, deg)
    got = geo.to_crop(fr.M_c2o, moved) / 512
    want = geo.to_crop(reference.M_c2o, reference.points) / 512
    assert np.abs(got - want).max() < 0.03


@needs_mtcnn
@pytest.mark.parametrize("k", [1, 2, 3])
def test_picture_on_its_side_or_upside_down(portrait: np.ndarray, reference, k: int) -> None:
    """No EXIF to fix it: after a miss the detector looks at turned copies; the face comes out upright."""
    turned = np.ascontiguousarray(np.rot90(portrait, k))         # k x 90 deg counter-clockwise
    fr = frame_portrait(turned)
    assert fr.method == "mtcnn"
    want = (reference.angle_deg - 90 * k + 180) % 360 - 180
    assert abs((fr.angle_deg - want + 180) % 360 - 180) < 6
    # the reference landmarks, carried into the turned picture, land where they land upright
    h, w = portrait.shape[:2]
    p = np.array(reference.points)
    moved = {1: np.stack([p[:, 1], w - p[:, 0]], 1), 2: np.stack([w - p[:, 0], h - p[:, 1]], 1),
             3: np.stack([h - p[:, 1], p[:, 0]], 1)}[k]
    got = geo.to_crop(fr.M_c2o, moved) / 512
    want_c = geo.to_crop(reference.M_c2o, reference.points) / 512
    assert np.abs(got - want_c).max() < 0.04


@needs_mtcnn
def test_small_face_in_a_large_picture_maps_to_the_file(portrait: np.ndarray, reference) -> None:
    """Detection runs on a 640 px copy; box, points and M_c2o are in the 6000x4000 file's pixels."""
    big = np.full((4000, 6000, 3), 40, np.uint8)
    big[2500:3780, 3000:4280] = cv2.resize(portrait, (1280, 1280), interpolation=cv2.INTER_CUBIC)
    fr = frame_portrait(big)
    assert fr.original_size == (6000, 4000)
    want = np.array(reference.points) * 4 + [3000, 2500]
    assert np.abs(np.array(fr.points) - want).max() < 4 * 4  # within 4 px of the 320 px original
    # M_c2o points into the file: a crop pixel shows the file's pixel there
    for u, v in ((256, 256), (200, 300), (330, 220)):
        x, y = geo.to_original(fr.M_c2o, [[u, v]])[0]
        assert np.abs(fr.image[v, u].astype(int) - big[int(round(y)), int(round(x))].astype(int)).max() < 40
    # flipped left-right: same face, mirrored points
    flipped = frame_portrait(np.ascontiguousarray(big[:, ::-1]))
    fp = np.array(flipped.points)
    assert abs((fp[:2, 0].mean()) - (5999 - fr.points[0][0] / 2 - fr.points[1][0] / 2)) < 16


@needs_mtcnn
def test_several_faces_largest_first_and_face_index(portrait: np.ndarray) -> None:
    canvas = np.full((700, 1100, 3), 60, np.uint8)
    canvas[50:690, 20:660] = cv2.resize(portrait, (640, 640))
    canvas[200:520, 740:1060] = portrait
    a = frame_portrait(canvas)
    b = frame_portrait(canvas, FramingOptions(face_index=1))
    assert a.faces == b.faces == 2 and a.face_index == 0 and b.face_index == 1
    assert a.box[2] > b.box[2] and a.box[0] < 660 < b.box[0]
    with pytest.raises(BadRequest, match="only 2 face"):
        frame_portrait(canvas, FramingOptions(face_index=2))


def test_no_face_human_error_and_animal_fallback() -> None:
    rng = np.random.default_rng(1)
    noise = (rng.random((300, 400, 3)) * 30 + 110).astype(np.uint8)
    with pytest.raises(NoFaceError) as exc:
        frame_portrait(noise)
    assert "--crop points:" in str(exc.value) and "Frame Face" in str(exc.value)
    fr = frame_portrait(noise, FramingOptions(animal=True))
    assert fr.method == "fallback" and [c for c, _ in fr.warnings] == ["animal_face_not_found"]
    assert "--crop points:" in fr.warnings[0][1] and "Frame Face" in fr.warnings[0][1]
    np.testing.assert_allclose(geo.to_original(fr.M_c2o, [[0, 0], [512, 512]]), [[50, 0], [350, 300]])


def test_mtcnn_weights_convert_to_the_published_shapes() -> None:
    if not mtcnn.available():
        pytest.skip("mtcnn package missing")
    nets = mtcnn._nets()
    import torch

    reg, prob = nets.pnet(torch.zeros(1, 3, 12, 12))
    assert reg.shape == (1, 4, 1, 1) and prob.shape == (1, 1, 1)
    reg, pts, prob = nets.onet(torch.zeros(2, 3, 48, 48))
    assert reg.shape == (2, 4) and pts.shape == (2, 10) and prob.shape == (2,)


# -- engine crop ---------------------------------------------------------------------------------

def _engine(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    e = dict(os.environ, PYTHONPATH=str(REPO))
    e.pop("JOYVASA_WEIGHTS", None)
    return subprocess.run([sys.executable, "-m", "engine", "crop", *args], capture_output=True, text=True,
                          env=e, timeout=120, cwd=REPO)


@needs_mtcnn
def test_crop_cli_json_one_line_and_out(tmp_path: Path, reference) -> None:
    out = tmp_path / "crop.png"
    r = _engine("--image", str(PORTRAIT), "--json", "--out", str(out))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 1
    obj = json.loads(lines[0])
    assert obj["method"] == "mtcnn" and obj["out"] == str(out) and obj["image_size"] == [320, 320]
    np.testing.assert_allclose(np.array(obj["M_c2o"]), reference.M_c2o, rtol=1e-4, atol=1e-3)
    saved = cv2.imread(str(out))
    assert saved.shape == (512, 512, 3)
    # the points given back as points: frame the same way
    p = np.array(obj["points"])
    three = [*p[0], *p[1], *((p[3] + p[4]) / 2)]
    r2 = _engine("--image", str(PORTRAIT), "--json", "--crop", "points:" + ",".join(f"{v:.4f}" for v in three))
    obj2 = json.loads(r2.stdout)
    assert obj2["method"] == "points"
    np.testing.assert_allclose(obj2["M_c2o"], obj["M_c2o"], rtol=1e-3, atol=0.05)


def test_crop_cli_errors_are_one_json_object(tmp_path: Path) -> None:
    r = _engine("--image", str(tmp_path / "missing.png"), "--json")
    assert r.returncode == 1 and json.loads(r.stdout) == {"error": "image_invalid", "message": json.loads(
        r.stdout)["message"]}
    r = _engine("--image", str(PORTRAIT), "--json", "--crop", "1,2,3")
    assert r.returncode == 1 and json.loads(r.stdout)["error"] == "bad_request"


def test_crop_cli_protocol_events(tmp_path: Path) -> None:
    from engine.contract.protocol import parse_event

    r = _engine("--image", str(PORTRAIT), "--progress", "json", "--crop", "100,60,100,100",
                "--out", str(tmp_path / "c.png"))
    assert r.returncode == 0, r.stderr
    events = [parse_event(line) for line in r.stdout.splitlines()]
    kinds = [e["type"] for e in events]
    assert kinds == ["hello", "framing", "artifact", "done"]
    assert events[1]["method"] == "manual" and events[1]["box"] == [100, 60, 100, 100]
    assert events[3]["outputs"] == {"crop_image": str(tmp_path / "c.png")}
