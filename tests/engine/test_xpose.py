"""X-Pose (animal faces): official key layout, strict loading, prompt conversion, preprocessing,
post-processing, the 9-point crop and how framing uses it (tiny configs; parity: test_xpose_parity.py)."""
from __future__ import annotations

import io
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.errors import BadRequest, WeightsCorrupt
from engine.framing import xpose
from engine.framing.frame import FramingOptions, frame_portrait
from engine.framing.xpose_model import XPose, XPoseConfig
from engine.framing.xpose_prompts import PromptError, load_prompts, read_prompt_pickle
from engine.framing.xpose_synthetic import random_state_dict

REPO = Path(__file__).resolve().parents[2]
KEYS = json.loads((REPO / "tests/fixtures/spec/xpose_checkpoint_keys.json").read_text())
PROMPTS = REPO / "tests/fixtures/xpose_prompts"


def test_official_model_has_exactly_the_official_keys_shapes_and_dtypes() -> None:
    sd = XPose(XPoseConfig.official()).state_dict()
    assert set(sd) == set(KEYS)
    assert len(sd) == 863
    for k, spec in KEYS.items():
        assert list(sd[k].shape) == spec["shape"], k
        assert str(sd[k].dtype).replace("torch.", "") == spec["dtype"], k


def test_config_is_read_off_the_shapes() -> None:
    meta = {k: torch.empty(v["shape"], device="meta") for k, v in KEYS.items()}
    assert XPoseConfig.from_state_dict(meta) == XPoseConfig.official()
    tiny = {k: v for k, v in XPose(XPoseConfig.tiny()).state_dict().items()}
    assert XPoseConfig.from_state_dict(tiny) == XPoseConfig.tiny()


@pytest.fixture(scope="module")
def tiny_state() -> dict:
    return random_state_dict("tiny", seed=3)


def _save(path: Path, obj) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(obj, path)
    return path


def test_loads_upstream_container_and_module_prefix(tiny_state, tmp_path: Path) -> None:
    plain = _save(tmp_path / "a" / xpose.XPOSE_FILE, {"model": tiny_state})
    ddp = _save(tmp_path / "b" / xpose.XPOSE_FILE, {"model": {f"module.{k}": v for k, v in tiny_state.items()}})
    m1 = xpose.build_from_state_dict(xpose.read_state_dict(plain), plain)
    m2 = xpose.build_from_state_dict(xpose.read_state_dict(ddp), ddp)
    for (k, a), (_, b) in zip(m1.state_dict().items(), m2.state_dict().items()):
        assert torch.equal(a, b), k
    assert torch.equal(m1.state_dict()["transformer.tgt_embed.weight"], tiny_state["transformer.tgt_embed.weight"])


@pytest.mark.parametrize("damage, needle", [
    ("missing", "transformer.decoder.layers.1.norm3.bias"),
    ("unexpected", "transformer.extra_head.weight"),
    ("shape", "transformer.enc_output.weight"),
    ("config_key", "transformer.tgt_embed.weight"),
])
def test_bad_checkpoint_names_the_file_and_the_first_bad_key(tiny_state, tmp_path: Path, damage: str,
                                                               needle: str) -> None:
    sd = dict(tiny_state)
    if damage == "missing":
        del sd[needle]
    elif damage == "unexpected":
        sd[needle] = torch.zeros(2)
    elif damage == "shape":
        sd[needle] = torch.zeros(3, 3)
    else:
        del sd[needle]
    path = _save(tmp_path / xpose.XPOSE_FILE, {"model": sd})
    with pytest.raises(WeightsCorrupt) as err:
        xpose.build_from_state_dict(xpose.read_state_dict(path), path)
    assert str(path) in str(err.value) and needle in str(err.value)


class _Evil:
    """Pickles into a call that would create ``marker``: proof that nothing ran if it is absent."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pickled_code_in_the_weights_is_refused_not_run(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    path = tmp_path / "xpose.pth"
    torch.save({"model": {"x": _Evil(marker)}}, path)
    with pytest.raises(WeightsCorrupt, match="refused"):
        xpose.read_state_dict(path)
    assert not marker.exists()
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsCorrupt) as err:
        xpose.read_state_dict(path)
    assert "X-Pose weights" in str(err.value) and str(path) in str(err.value)
    torch.save([1, 2], path)
    with pytest.raises(WeightsCorrupt, match="not an X-Pose checkpoint"):
        xpose.read_state_dict(path)


# -- prompts -------------------------------------------------------------------------------------

@pytest.mark.parametrize("k", [9, 68])
def test_shipped_prompts_are_the_real_pickles_bit_for_bit_without_cuda(k: int) -> None:
    ins, kpt = read_prompt_pickle(PROMPTS / f"clip_embedding_{k}.pkl")  # float16 on cuda:0 in the file
    assert ins.dtype == np.float16 and ins.shape == (1, 512) and kpt.shape == (k, 512)
    s_ins, s_kpt = load_prompts(k)
    assert s_ins.dtype == np.float16 and s_kpt.dtype == np.float16
    assert np.array_equal(s_ins.view(np.uint16), ins.view(np.uint16))
    assert np.array_equal(s_kpt.view(np.uint16), kpt.view(np.uint16))


def test_prompt_reader_refuses_anything_but_tensors(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    bad = tmp_path / "evil.pkl"
    bad.write_bytes(pickle.dumps((_Evil(marker), _Evil(marker))))
    with pytest.raises(PromptError, match="refused global"):
        read_prompt_pickle(bad)
    assert not marker.exists()
    odd = tmp_path / "odd.pkl"
    buf = io.BytesIO()
    pickle.dump((torch.zeros(2, 4),), buf)
    odd.write_bytes(buf.getvalue())
    with pytest.raises(PromptError, match="does not hold"):
        read_prompt_pickle(odd)
    with pytest.raises(PromptError):
        load_prompts(17)


# -- preprocessing -------------------------------------------------------------------------------

@pytest.mark.parametrize("w, h, want", [(320, 320, (800, 800)), (451, 300, (1202, 800)), (300, 451, (800, 1202)),
                                        (4000, 1000, (1332, 333)), (800, 1000, (800, 1000))])
def test_resize_size_is_upstreams(w: int, h: int, want: tuple[int, int]) -> None:
    assert xpose.resized_size(w, h) == want


@pytest.mark.parametrize("h, w, th, tw", [(61, 83, 800, 1091), (900, 700, 1028, 800), (2000, 3000, 800, 1200)])
def test_resize_is_pillows_bilinear_bit_for_bit(h: int, w: int, th: int, tw: int) -> None:
    from PIL import Image  # test-only reference (Pillow is not an engine dependency)

    img = np.random.default_rng(h).integers(0, 256, (h, w, 3), dtype=np.uint8)
    ref = np.asarray(Image.fromarray(img).resize((tw, th), Image.BILINEAR))
    assert np.array_equal(xpose.pil_bilinear_resize(img, tw, th), ref)


def test_preprocess_normalises_like_torchvision() -> None:
    img = np.full((400, 400, 3), (124, 116, 104), np.uint8)
    x = xpose.preprocess(img)
    assert x.shape == (1, 3, 800, 800) and x.dtype == torch.float32
    want = (torch.tensor([124, 116, 104]) / 255 - torch.tensor(xpose.MEAN)) / torch.tensor(xpose.STD)
    assert torch.allclose(x[0, :, 0, 0], want.float(), atol=1e-6)


# -- post-processing and the crop ----------------------------------------------------------------

def _outputs(scores: list[float], boxes: list[list[float]], k: int = 9) -> dict:
    n = len(scores)
    logits = torch.full((1, n, 350), float("-inf"))
    logits[0, :, 0] = torch.logit(torch.tensor(scores))
    kp = torch.zeros(1, n, 3 * k)
    for i, (cx, cy, _, _) in enumerate(boxes):
        kp[0, i, :2 * k] = torch.tensor([cx, cy] * k) + 0.001 * torch.arange(2 * k)
    return {"pred_logits": logits, "pred_boxes": torch.tensor([boxes]), "pred_keypoints": kp}


def test_decode_keeps_non_overlapping_boxes_best_first_in_picture_pixels() -> None:
    out = _outputs([0.4, 0.9, 0.85, 0.2],
                   [[0.3, 0.3, 0.2, 0.2], [0.32, 0.3, 0.2, 0.2], [0.8, 0.7, 0.1, 0.1], [0.8, 0.72, 0.1, 0.1]])
    faces = xpose.decode(out, 9, width=1000, height=500)
    assert [f.index for f in faces] == [1, 2]           # IoU 0: any overlap with a better box is dropped
    assert faces[0].score == pytest.approx(0.9) and faces[1].score == pytest.approx(0.85)
    assert faces[0].points.shape == (9, 2)
    assert faces[0].points[0] == pytest.approx([320.0, 150.5], abs=1e-3)  # (0.32, 0.301) × (W, H)
    assert faces[0].box == pytest.approx((220.0, 100.0, 200.0, 100.0), abs=1e-3)


def _upstream_crop_matrix(pts: np.ndarray, scale: float = 2.3, vy: float = -0.125, dsize: int = 512) -> np.ndarray:
    """LivePortrait's crop_image for 9 points, re-derived in float32 as upstream computes it."""
    p = pts.astype(np.float32)
    eyes = np.stack([(p[2] + p[3]) / 2, (p[0] + p[1]) / 2, p[4], (p[5] + p[6]) / 2])
    uy = eyes[3] - (eyes[0] + eyes[1]) / 2
    uy = uy / np.linalg.norm(uy)
    ux = np.array([uy[1], -uy[0]], np.float32)
    angle = np.arccos(ux[0]) * (-1 if ux[1] < 0 else 1)
    R = np.array([ux, uy])
    c0 = p.mean(0)
    r = (p - c0) @ R.T
    lt, rb = r.min(0), r.max(0)
    size = (rb - lt).max() * scale
    center = c0 + ux * (lt + rb)[0] / 2 + uy * (lt + rb)[1] / 2 + uy * vy * size
    s = dsize / size
    c, si = np.cos(angle), np.sin(angle)
    o2c = np.array([[s * c, s * si, dsize / 2 - s * (c * center[0] + si * center[1])],
                    [-s * si, s * c, dsize / 2 - s * (-si * center[0] + c * center[1])], [0, 0, 1]])
    return np.linalg.inv(o2c)[:2]


def test_nine_point_crop_is_upstreams_formula() -> None:
    rng = np.random.default_rng(5)
    base = np.array([[140, 112], [205, 135], [295, 150], [345, 122], [262, 245], [237, 266], [285, 263],
                     [259, 257], [259, 273]], np.float64)
    for _ in range(5):
        theta = rng.uniform(-0.6, 0.6)
        R = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
        pts = (base - 240) @ R.T * rng.uniform(0.5, 3) + rng.uniform(100, 900, 2)
        fr = xpose.frame_points9(pts, 2.3, 0.0, -0.125)
        assert np.allclose(fr.M_c2o, _upstream_crop_matrix(pts), rtol=1e-4, atol=1e-3)


# -- framing ------------------------------------------------------------------------------------

def _weights_with_xpose(tmp_path: Path, tiny_state: dict) -> Path:
    _save(tmp_path / "w" / xpose.XPOSE_FILE, {"model": tiny_state})
    return tmp_path / "w"


def _fake_faces(*scores: float) -> list[xpose.AnimalFace]:
    faces = []
    for i, s in enumerate(scores):
        x0 = 40 + 150 * i
        pts = np.array([[x0, 60], [x0 + 25, 64], [x0 + 55, 64], [x0 + 80, 60], [x0 + 40, 100], [x0 + 28, 118],
                        [x0 + 52, 118], [x0 + 40, 114], [x0 + 40, 124]], np.float64)
        faces.append(xpose.AnimalFace(s, (x0 - 10.0, 40.0, 100.0, 100.0), pts, i))
    return faces


def test_animal_uses_xpose_when_the_file_is_there(tiny_state, tmp_path: Path, monkeypatch) -> None:
    root = _weights_with_xpose(tmp_path, tiny_state)
    img = np.random.default_rng(0).integers(0, 256, (240, 400, 3), dtype=np.uint8)
    calls = []
    monkeypatch.setattr(xpose, "detect", lambda im, path, *a, **k: calls.append(path) or _fake_faces(0.87, 0.5))
    fr = frame_portrait(img, FramingOptions(animal=True, weights_root=root))
    assert calls == [root / xpose.XPOSE_FILE]
    assert fr.method == "xpose" and fr.score == pytest.approx(0.87) and fr.faces == 2 and fr.face_index == 0
    assert len(fr.points) == 9 and not fr.warnings
    want = xpose.frame_points9(_fake_faces(0.87)[0].points, 2.3, 0.0, -0.125).M_c2o
    assert np.allclose(fr.M_c2o, want)
    obj = fr.to_json()
    assert obj["method"] == "xpose" and obj["score"] == pytest.approx(0.87) and len(obj["points"]) == 9
    second = frame_portrait(img, FramingOptions(animal=True, weights_root=root, face_index=1))
    assert second.face_index == 1 and second.score == pytest.approx(0.5) and second.points[0][0] == 190
    with pytest.raises(BadRequest, match="only 2 animal face"):
        frame_portrait(img, FramingOptions(animal=True, weights_root=root, face_index=2))


def test_low_score_falls_back_to_the_centred_square_with_the_score(tiny_state, tmp_path: Path,
                                                                    monkeypatch) -> None:
    root = _weights_with_xpose(tmp_path, tiny_state)
    img = np.zeros((300, 500, 3), np.uint8)
    monkeypatch.setattr(xpose, "detect", lambda *a, **k: _fake_faces(0.12, xpose.MIN_SCORE - 0.01))
    fr = frame_portrait(img, FramingOptions(animal=True, weights_root=root))
    assert fr.method == "fallback" and [c for c, _ in fr.warnings] == ["animal_face_not_found"]
    assert f"{xpose.MIN_SCORE - 0.01:.2f}" in fr.warnings[0][1] and "points:" in fr.warnings[0][1]
    assert fr.M_c2o[0, 2] == pytest.approx(100.0)  # the centred 300×300 square


def test_without_the_file_animals_keep_todays_path(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(xpose, "detect", lambda *a, **k: pytest.fail("X-Pose must not run without its file"))
    img = np.random.default_rng(1).integers(0, 256, (200, 300, 3), dtype=np.uint8)
    fr = frame_portrait(img, FramingOptions(animal=True, weights_root=tmp_path))
    assert fr.method in ("cat_haar", "fallback") and fr.score is None


def test_real_network_end_to_end_on_a_tiny_random_model(tiny_state, tmp_path: Path, monkeypatch) -> None:
    """The whole path with the network (tiny, random): 9 points, a score, the crop of those points."""
    root = _weights_with_xpose(tmp_path, tiny_state)
    monkeypatch.setattr(xpose, "MIN_SCORE", 0.0)
    img = np.random.default_rng(2).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    faces = xpose.detect(img, root / xpose.XPOSE_FILE, device="cpu")
    assert faces and all(0.0 <= f.score <= 1.0 for f in faces)
    assert [f.score for f in faces] == sorted((f.score for f in faces), reverse=True)
    fr = frame_portrait(img, FramingOptions(animal=True, weights_root=root))
    assert fr.method == "xpose" and fr.score == pytest.approx(faces[0].score)
    assert np.allclose(fr.points, faces[0].points)
    assert fr.detector_note.startswith("X-Pose ") and " s on " in fr.detector_note


def test_cpu_sparse_sampling_is_grid_sample_exactly() -> None:
    """The CPU path (one sparse matrix) and grid_sample (CUDA/MPS) compute the same bilinear sums."""
    from engine.framing.xpose_model import _grid_sample, _sparse_sample

    shapes = [(9, 11), (5, 6), (3, 3), (2, 2)]
    S = sum(h * w for h, w in shapes)
    g = torch.Generator().manual_seed(0)
    value = torch.randn(1, S, 8, 4, generator=g, dtype=torch.float64)
    loc = torch.rand(1, 7, 8, 4, 4, 2, generator=g, dtype=torch.float64) * 1.4 - 0.2   # some samples outside
    loc[0, 0, 0, 0, 0] = torch.tensor([0.0, 1.0], dtype=torch.float64)                 # exactly on the edge
    w = torch.softmax(torch.randn(1, 7, 8, 16, generator=g, dtype=torch.float64), -1).view(1, 7, 8, 4, 4)
    a, b = _grid_sample(value, shapes, loc, w), _sparse_sample(value, shapes, loc, w)
    assert a.shape == (1, 7, 32) and torch.allclose(a, b, rtol=0, atol=1e-12)
    a32, b32 = _grid_sample(value.float(), shapes, loc.float(), w.float()), _sparse_sample(value.float(), shapes, loc.float(), w.float())
    assert torch.allclose(a32, b32, atol=1e-5)


# hand-labelled 9 points (upstream's order) on scikit-image's ``chelsea`` (CC0), 451×300 pixels
CHELSEA_9 = np.array([[135, 112], [207, 137], [295, 150], [345, 122], [260, 245], [237, 266], [285, 263],
                      [259, 257], [259, 273]], np.float64)
#: a synthetic muzzle-heavy (dog-like) face: eyes 0.8 d apart, eye corners ±0.15 d, lips 0.25 d wide
_d = 100.0
DOG_9 = np.array([[-55, -10], [-25, 0], [25, 0], [55, -10], [0, 70], [-25, 100], [25, 100], [0, 95], [0, 110]],
                 np.float64) * (_d / 100) + [300, 200]


@pytest.mark.parametrize("pts, within", [(CHELSEA_9, 0.03), (DOG_9, 0.10)])
def test_clicked_animal_points_frame_like_the_nine_point_crop(pts: np.ndarray, within: float) -> None:
    from engine.framing import geometry as geo

    e0, lip = xpose.axis_points(pts)
    d = float(np.hypot(*(lip - e0)))
    nine = xpose.frame_points9(pts, 2.3, 0.0, -0.125)
    eye_l, eye_r = (pts[0] + pts[1]) / 2, (pts[2] + pts[3]) / 2
    clicked = geo.frame_from_points(eye_l, eye_r, lip, 2.3, 0.0, -0.125, animal=True)
    human = geo.frame_from_points(eye_l, eye_r, lip, 2.3, 0.0, -0.125)
    assert d / clicked.side == pytest.approx(d / nine.side, rel=within)
    assert np.hypot(*(np.subtract(clicked.center, nine.center))) < 0.05 * nine.side
    assert d / human.side < 0.8 * (d / nine.side)        # the human sizing left animal faces too small


def test_clicked_points_with_animal_use_the_animal_sizing() -> None:
    img = np.zeros((300, 451, 3), np.uint8)
    eye_l, eye_r = (CHELSEA_9[0] + CHELSEA_9[1]) / 2, (CHELSEA_9[2] + CHELSEA_9[3]) / 2
    lip = (CHELSEA_9[5] + CHELSEA_9[6]) / 2
    spec = ("points", tuple(np.concatenate([eye_l, eye_r, lip]).tolist()))
    animal = frame_portrait(img, FramingOptions(crop=spec, animal=True))
    human = frame_portrait(img, FramingOptions(crop=spec))
    side = lambda fr: float(np.hypot(*fr.M_c2o[:, 0])) * 512  # noqa: E731
    d = float(np.hypot(*(lip - (eye_l + eye_r) / 2)))
    assert animal.method == "points" and d / side(animal) == pytest.approx(0.283, abs=0.01)
    assert d / side(human) == pytest.approx(0.205, abs=0.005)


def test_doctor_reports_presence_strict_load_and_licence(tiny_state, tmp_path: Path) -> None:
    from engine.pipeline.doctor import check_optional_parts, print_text
    from engine.weights import WeightsLayout

    root = _weights_with_xpose(tmp_path, tiny_state)
    files: dict = {}
    g = check_optional_parts(WeightsLayout(root), files)["xpose"]
    assert files["xpose"]["present"] and g["loads"] and "seconds" in g and "NON-COMMERCIAL" in g["licence"]
    broken = dict(tiny_state)
    del broken["transformer.enc_output.bias"]
    _save(root / xpose.XPOSE_FILE, {"model": broken})
    g = check_optional_parts(WeightsLayout(root), {})["xpose"]
    assert not g["loads"] and "transformer.enc_output.bias" in g["error"] and str(root / xpose.XPOSE_FILE) in g["error"]
    buf = io.StringIO()
    report = {"versions": {}, "devices": {"available": ["cpu"], "auto": "cpu", "auto_dtype": "float32"},
              "weights": {"root": str(root), "files": {}, "groups": {"xpose": g}}, "ok": False, "next": []}
    print_text(report, out=buf)
    assert "xpose: does NOT load" in buf.getvalue() and "xpose licence: X-Pose model: NON-COMMERCIAL" in buf.getvalue()


@pytest.mark.slow
def test_crop_animal_json_reports_xpose_or_the_scored_fallback(tiny_state, tmp_path: Path) -> None:
    """``engine crop --animal --json`` with the X-Pose file: one JSON object naming the method, the
    score, the 9 points and M_c2o (random tiny weights: either way is legitimate, but consistent)."""
    import subprocess
    import sys

    import cv2

    root = _weights_with_xpose(tmp_path, tiny_state)
    pic = tmp_path / "cat.png"
    cv2.imwrite(str(pic), np.random.default_rng(4).integers(0, 256, (180, 240, 3), dtype=np.uint8))
    r = subprocess.run([sys.executable, "-m", "engine", "crop", "--image", str(pic), "--animal", "--weights", str(root),
                        "--json", "--out", str(tmp_path / "crop.png")], cwd=REPO, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    obj = json.loads(r.stdout)
    assert obj["method"] in ("xpose", "fallback") and isinstance(obj["score"], float)
    assert len(obj["M_c2o"]) == 2 and (tmp_path / "crop.png").is_file()
    if obj["method"] == "xpose":
        assert obj["score"] >= xpose.MIN_SCORE and len(obj["points"]) == 9 and not obj["warnings"]
    else:
        assert obj["score"] < xpose.MIN_SCORE and obj["warnings"][0]["code"] == "animal_face_not_found"
        assert f"{obj['score']:.2f}" in obj["warnings"][0]["message"]


def test_fewer_image_tokens_than_queries_still_runs(tiny_state, tmp_path: Path) -> None:
    """A very wide strip (e.g. 6000×80 → 1350×18: 742 tokens) has fewer image tokens than the
    official 900 queries, where upstream's topk fails; here every token becomes a query."""
    path = _save(tmp_path / xpose.XPOSE_FILE, {"model": tiny_state})
    model = xpose.build_from_state_dict(xpose.read_state_dict(path), path)
    ins, kpt = load_prompts(9)
    out = xpose.run_network(model, torch.randn(1, 3, 64, 64), ins, kpt)   # 8² + 4² + 2² + 1 = 85 < 100 tokens
    assert out["pred_boxes"].shape == (1, 50, 4) and torch.isfinite(out["pred_boxes"]).all()
    out = xpose.run_network(model, torch.randn(1, 3, 32, 32), ins, kpt)   # 16 + 4 + 1 + 1 = 22 tokens
    assert out["pred_boxes"].shape == (1, 22, 4)
    assert xpose.resized_size(6000, 80) == (1350, 18)


@pytest.mark.slow
def test_animate_animal_frames_with_xpose_like_crop(tiny_weights: Path, tiny_state, tmp_path: Path) -> None:
    """``engine animate --animal`` with the X-Pose file frames with the same function as ``engine crop``:
    the same framing object (method, score, points, M_c2o)."""
    import os
    import shutil
    import subprocess
    import sys

    import cv2

    root = tmp_path / "w"
    shutil.copytree(tiny_weights, root, symlinks=True)
    _save(root / xpose.XPOSE_FILE, {"model": tiny_state})
    pic = tmp_path / "pet.png"
    cv2.imwrite(str(pic), np.random.default_rng(7).integers(0, 256, (160, 200, 3), dtype=np.uint8))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    env.pop("JOYVASA_WEIGHTS", None)

    def engine(*args: str) -> list[dict]:
        r = subprocess.run([sys.executable, "-m", "engine", *args, "--progress", "json"], capture_output=True,
                           text=True, timeout=600, env=env, cwd=REPO, stdin=subprocess.DEVNULL)
        assert r.returncode == 0, r.stderr[-3000:]
        return [json.loads(line) for line in r.stdout.splitlines()]

    motion = REPO / "tests" / "contract" / "motion_v1.npz"
    anim = engine("animate", "--image", str(pic), "--motion", str(motion), "--frames-dir", str(tmp_path / "f"),
                  "--weights", str(root), "--max-frames", "1", "--animal")
    crop = engine("crop", "--image", str(pic), "--animal", "--weights", str(root))
    [fa] = [e for e in anim if e["type"] == "framing"]
    [fc] = [e for e in crop if e["type"] == "framing"]
    assert fa["method"] in ("xpose", "fallback") and fa["score"] is not None
    assert {k: fa[k] for k in ("method", "score", "points", "M_c2o")} == {k: fc[k] for k in ("method", "score", "points", "M_c2o")}


def test_a_damaged_xpose_file_warns_and_frames_without_it(tiny_state, tmp_path: Path) -> None:
    broken = dict(tiny_state)
    del broken["transformer.tgt_embed.weight"]
    root = tmp_path / "w"
    _save(root / xpose.XPOSE_FILE, {"model": broken})
    img = np.random.default_rng(3).integers(0, 256, (200, 300, 3), dtype=np.uint8)
    fr = frame_portrait(img, FramingOptions(animal=True, weights_root=root))
    assert fr.method in ("cat_haar", "fallback")
    code, message = fr.warnings[0]
    assert code == "xpose_unusable" and "transformer.tgt_embed.weight" in message and str(root) in message


@pytest.mark.parametrize("kind", ["folder", "fifo", "loop"])
def test_an_xpose_path_that_is_not_a_file_warns_naming_it(kind: str, tmp_path: Path) -> None:
    """A folder, a FIFO or a symlink loop named xpose.pth is ``xpose_unusable`` naming it (was: silently
    treated as absent), and framing goes on without X-Pose."""
    import os

    path = tmp_path / "w" / xpose.XPOSE_FILE
    path.parent.mkdir(parents=True)
    if kind == "folder":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to(path)
    img = np.random.default_rng(3).integers(0, 256, (200, 300, 3), dtype=np.uint8)
    fr = frame_portrait(img, FramingOptions(animal=True, weights_root=tmp_path / "w"))
    assert fr.method in ("cat_haar", "fallback")
    code, message = fr.warnings[0]
    assert code == "xpose_unusable" and str(path) in message
    assert {"folder": "folder", "fifo": "pipe", "loop": "loop"}[kind] in message
