"""Face mesh (MediaPipe's face_landmark.tflite run by our own reader + torch executor) and the source
lip-open ratio it gives ``Framing.lip_open``: the reader on the vendored file, parity with the reference
TFLite interpreter, landmarks on real faces, a ratio that follows the mouth, ``engine crop --json``,
and clear errors for models we cannot run."""
from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from engine.framing import face_mesh as fm
from engine.framing import geometry as geo
from engine.framing import mtcnn, tflite
from engine.framing.frame import FramingOptions, frame_portrait, load_picture

REPO = Path(__file__).resolve().parents[2]
PORTRAIT = REPO / "examples" / "portrait.jpg"
needs_mtcnn = pytest.mark.skipif(not mtcnn.available(), reason="the mtcnn package (detector weights) is missing")


def _grace_hopper_path() -> Path:
    try:
        import matplotlib.cbook as cbook
    except ImportError:
        pytest.skip("matplotlib (test extra) is not installed: its grace_hopper.jpg sample is the closed-mouth portrait")
    return Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


@pytest.fixture(scope="module")
def model_bytes() -> bytes:
    return fm.MODEL_PATH.read_bytes()


@pytest.fixture(scope="module")
def astronaut():
    """examples/portrait.jpg (public domain): a smile with the teeth showing, lips apart."""
    img = load_picture(PORTRAIT)
    return img, frame_portrait(img)


@pytest.fixture(scope="module")
def hopper():
    """matplotlib's grace_hopper.jpg: mouth closed."""
    img = load_picture(_grace_hopper_path())
    return img, frame_portrait(img)


def _mesh(img: np.ndarray, fr) -> fm.Mesh:
    p = np.array(fr.points)
    return fm.run(img, p[0], p[1], (p[3] + p[4]) / 2)


def open_mouth(img: np.ndarray, mesh: fm.Mesh, amount: float) -> np.ndarray:
    """Open the mouth synthetically: everything below the upper inner lip slides down by ``amount`` ×
    the mouth width (fading out towards the chin and the cheeks), the gap filled with a dark oval."""
    p = mesh.points[:, :2]
    top = p[fm.UPPER_INNER_LIP]
    w = float(np.hypot(*(p[fm.MOUTH_CORNER_L] - p[fm.MOUTH_CORNER_R])))
    s = amount * w
    h, W = img.shape[:2]
    ys, xs = np.mgrid[:h, :W].astype(np.float32)
    gx = np.clip(1 - np.abs(xs - top[0]) / (1.2 * w), 0, 1)
    t = np.where(ys < top[1], 0, np.clip(1 - (ys - top[1] - s) / (2.5 * w), 0, 1))
    out = cv2.remap(img, xs, (ys - s * t * gx).astype(np.float32), cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    cv2.ellipse(out, (int(top[0]), int(top[1] + s / 2)), (int(0.42 * w), int(s / 2)), 0, 0, 360, (45, 20, 25), -1,
                cv2.LINE_AA)
    return out


# -- the reader and the executor ---------------------------------------------------------------

def test_reader_parses_the_vendored_model(model_bytes: bytes) -> None:
    m = tflite.read_model(model_bytes)
    assert m.op_names == ["ADD", "CONV_2D", "DEPTHWISE_CONV_2D", "DEQUANTIZE", "MAX_POOL_2D", "PAD", "PRELU"]
    assert len(m.operators) == 210
    assert [m.tensors[i].shape for i in m.inputs] == [(1, 192, 192, 3)]
    assert [m.tensors[i].shape for i in m.outputs] == [(1, 1, 1, 1404), (1, 1, 1, 1)]   # 468 × (x, y, z), presence
    # weights are stored as float16 and dequantized by the graph
    deq = [op for op in m.operators if op.op == "DEQUANTIZE"]
    assert all(m.tensors[op.inputs[0]].dtype == np.float16 and m.tensors[op.inputs[0]].data is not None for op in deq)
    conv = next(op for op in m.operators if op.op == "CONV_2D")
    assert m.tensors[conv.inputs[0]].shape == (1, 192, 192, 3) and conv.options["stride_h"] == 2
    # the licence and notice travel with the file
    data = fm.MODEL_PATH.parent
    assert "Apache License" in (data / "face_landmark.LICENSE").read_text()
    assert "mediapipe/modules/face_landmark/face_landmark.tflite" in (data / "face_landmark.NOTICE").read_text()


def _litert_outputs(x: np.ndarray) -> list[np.ndarray]:
    try:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType
    except ImportError:
        pytest.skip("ai-edge-litert (the reference TFLite interpreter, test extra) is not installed")
    it = Interpreter(model_path=str(fm.MODEL_PATH), experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    return [it.get_tensor(d["index"]) for d in it.get_output_details()]


def test_executor_matches_the_reference_interpreter(astronaut) -> None:
    img, fr = astronaut
    p = np.array(fr.points)
    from engine.framing.frame import warp_crop

    face = warp_crop(img, fm.roi_from_points(p[0], p[1], (p[3] + p[4]) / 2), 192).astype(np.float32)[None] / 255
    noise = np.random.default_rng(0).random((1, 192, 192, 3), dtype=np.float32)
    for x in (face, noise):
        ref = _litert_outputs(x)
        ours = fm.program()(x)
        assert [o.shape for o in ours] == [r.shape for r in ref]
        assert np.abs(ours[0] - ref[0]).max() < 1e-3             # landmarks, crop pixels (0..192)
        assert np.abs(ours[1] - ref[1]).max() < 1e-3             # presence logit
    assert 1 / (1 + np.exp(-float(ref[1].ravel()[0]))) < 0.5 < fm.run_crop(img, fm.roi_from_points(
        p[0], p[1], (p[3] + p[4]) / 2)).presence              # noise is no face; the portrait is


def _patch_opcode(data: bytes, old: int, new: int) -> bytes:
    """The model with every operator code ``old`` replaced by ``new`` (both code fields)."""
    b = bytearray(data)
    root = tflite._Table(data, struct.unpack_from("<I", data, 0)[0])
    for oc in root.tables(1):
        if max(oc.scalar(0, "b"), oc.scalar(3, "i")) == old:
            for field, fmt in ((0, "<b"), (3, "<i")):
                off = oc._off(field)
                if off:
                    struct.pack_into(fmt, b, oc.pos + off, new)
    return bytes(b)


def test_unknown_op_and_corrupt_files_fail_clearly(model_bytes: bytes, tmp_path: Path) -> None:
    with pytest.raises(tflite.TFLiteError, match="operator SUB is not supported"):
        tflite.TorchProgram(tflite.read_model(_patch_opcode(model_bytes, 54, 41)))     # PRELU → SUB
    with pytest.raises(tflite.TFLiteError, match="not a TFLite model"):
        tflite.read_model(b"\x00" * 64)
    with pytest.raises(tflite.TFLiteError, match="corrupt"):
        tflite.read_model(model_bytes[:4096])
    with pytest.raises(tflite.TFLiteError, match="missing"):
        tflite.load_model(tmp_path / "nope.tflite")
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(model_bytes[:20000])
    with pytest.raises(tflite.TFLiteError):
        tflite.load_model(bad)


# -- real faces ----------------------------------------------------------------------------------

@needs_mtcnn
@pytest.mark.parametrize("which", ["astronaut", "hopper"])
def test_mesh_lands_on_the_face_and_lips_between_nose_and_chin(which: str, request) -> None:
    img, fr = request.getfixturevalue(which)
    mesh = _mesh(img, fr)
    assert mesh.points.shape == (468, 3) and mesh.presence > 0.9
    x, y, w, h = fr.box
    pts = mesh.points[:, :2]
    # every point within the detector's face box grown by 20 %, most inside the box itself
    assert (pts[:, 0] > x - 0.2 * w).all() and (pts[:, 0] < x + 1.2 * w).all()
    assert (pts[:, 1] > y - 0.2 * h).all() and (pts[:, 1] < y + 1.2 * h).all()
    inside = (pts[:, 0] >= x) & (pts[:, 0] <= x + w) & (pts[:, 1] >= y) & (pts[:, 1] <= y + h)
    assert inside.mean() > 0.85
    # along the face's down axis: nose tip (detector) < upper inner lip <= lower inner lip < chin (box bottom)
    five = np.array(fr.points)
    e0 = (five[0] + five[1]) / 2
    _, uy = geo.axes(e0, (five[3] + five[4]) / 2)
    depth = lambda q: float(np.dot(q - e0, uy))  # noqa: E731
    assert depth(five[2]) < depth(pts[13]) <= depth(pts[14]) < y + h - e0[1]
    # and horizontally between the mouth corners, which lie near the detector's mouth corners
    assert min(pts[61, 0], pts[291, 0]) < pts[13, 0] < max(pts[61, 0], pts[291, 0])
    assert np.abs(pts[[61, 291]] - five[[3, 4]]).max() < 0.15 * np.hypot(*(five[0] - five[1]))


@needs_mtcnn
def test_lip_open_closed_mouth_small_open_mouth_larger(astronaut, hopper) -> None:
    img_h, fr_h = hopper
    img_a, fr_a = astronaut
    assert fr_h.lip_open is not None and fr_h.lip_open < 0.05          # Grace Hopper: mouth closed
    assert fr_a.lip_open is not None and 0.1 < fr_a.lip_open < 0.3     # the astronaut smiles, teeth showing
    # the ratio follows the opening: a synthetic open mouth raises it, more opening raises it more
    mesh = _mesh(img_h, fr_h)
    ratios = [frame_portrait(open_mouth(img_h, mesh, a)).lip_open for a in (0.15, 0.3)]
    assert fr_h.lip_open + 0.03 < ratios[0] < ratios[1] - 0.05
    assert ratios[1] > 0.12
    opened = frame_portrait(open_mouth(img_a, _mesh(img_a, fr_a), 0.3)).lip_open
    assert opened > fr_a.lip_open + 0.08
    # the crop itself does not depend on the mesh: framing comes from the five points, as before
    assert fr_h.method == "mtcnn" and fr_h.warnings == []


@needs_mtcnn
@pytest.mark.parametrize("deg", [-20.0, 20.0])
def test_lip_open_survives_a_rotated_portrait(hopper, deg: float) -> None:
    img, fr = hopper
    pad = cv2.copyMakeBorder(img, 100, 100, 100, 100, cv2.BORDER_REFLECT)
    M = cv2.getRotationMatrix2D((pad.shape[1] / 2, pad.shape[0] / 2), deg, 1.0)
    tilted = cv2.warpAffine(pad, M, (pad.shape[1], pad.shape[0]), borderMode=cv2.BORDER_REFLECT)
    got = frame_portrait(tilted)
    assert got.lip_open is not None and abs(got.lip_open - fr.lip_open) < 0.015


@needs_mtcnn
def test_lip_open_in_a_6000x4000_picture(astronaut) -> None:
    """The mesh crops from the full-resolution file around the face: same ratio as the small picture."""
    img, fr = astronaut
    big = np.full((4000, 6000, 3), 40, np.uint8)
    big[2500:3780, 3000:4280] = cv2.resize(img, (1280, 1280), interpolation=cv2.INTER_CUBIC)
    got = frame_portrait(big)
    assert got.lip_open is not None and abs(got.lip_open - fr.lip_open) < 0.02


@needs_mtcnn
def test_detector_and_clicked_points_measure_lips_boxes_and_animals_do_not(astronaut) -> None:
    """Automatic framing and ``points:`` (Frame Face: eyes + mouth clicked) seed the mesh; a bare
    box, an animal and ``none`` carry no landmarks to seed it."""
    img, fr = astronaut
    p = np.array(fr.points)
    three = (*p[0], *p[1], *((p[3] + p[4]) / 2))
    clicked = frame_portrait(img, FramingOptions(crop=("points", three)))
    assert clicked.lip_open is not None and abs(clicked.lip_open - fr.lip_open) < 0.01
    np.testing.assert_allclose(clicked.M_c2o, fr.M_c2o, atol=1e-6)       # the crop is the points' own
    assert frame_portrait(img, FramingOptions(crop=("points", three), animal=True)).lip_open is None
    assert frame_portrait(img, FramingOptions(crop=(100.0, 50.0, 120.0, 130.0))).lip_open is None
    assert frame_portrait(img, FramingOptions(animal=True)).lip_open is None


@needs_mtcnn
def test_mesh_failure_or_no_face_is_a_warning_not_an_error(astronaut, monkeypatch) -> None:
    img, fr = astronaut

    def broken() -> None:
        raise tflite.TFLiteError("operator FOO is not supported")

    monkeypatch.setattr(fm, "program", broken)
    got = frame_portrait(img)
    assert got.lip_open is None and [c for c, _ in got.warnings] == ["lip_open_unavailable"]
    np.testing.assert_allclose(got.M_c2o, fr.M_c2o)                    # the crop is unchanged
    monkeypatch.undo()
    # a region with no face in it: presence is low, no ratio is made up
    rng = np.random.default_rng(3)
    noise = (rng.random(img.shape) * 255).astype(np.uint8)
    ratio, warning = fm.lip_open(noise, np.array([100.0, 100]), np.array([160.0, 100]), np.array([130.0, 150]))
    assert ratio is None and warning[0] == "lip_open_unavailable" and "presence" in warning[1]


@needs_mtcnn
def test_crop_cli_reports_lip_open(astronaut) -> None:
    _, fr = astronaut
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("JOYVASA_WEIGHTS", None)
    r = subprocess.run([sys.executable, "-m", "engine", "crop", "--image", str(PORTRAIT), "--json"],
                       capture_output=True, text=True, env=env, timeout=120, cwd=REPO)
    assert r.returncode == 0, r.stderr
    obj = json.loads(r.stdout)
    assert isinstance(obj["lip_open"], float) and obj["lip_open"] == pytest.approx(fr.lip_open, abs=1e-3)
    r = subprocess.run([sys.executable, "-m", "engine", "crop", "--image", str(PORTRAIT), "--json", "--crop",
                        "100,50,120,130"], capture_output=True, text=True, env=env, timeout=120, cwd=REPO)
    assert json.loads(r.stdout)["lip_open"] is None
