"""Upstream's InsightFace path (det_10g + 2d106det through cv2.dnn) on ONNX files exported here.

The models are tiny torch modules with the official signatures (det_10g: input ``input.1``
1×3×640×640, nine outputs score/bbox/kps for strides 8/16/32 with 2 anchors per cell, shapes
(N,1)/(N,4)/(N,10); 2d106det: input ``data`` 1×3×192×192, output ``fc1`` 1×212). They "see" a
face at a known place: the test checks that the engine decodes anchors, strides, letterbox,
the downscaled detection copy and the 106-point patch back into the picture's pixels, and frames
from those points with upstream's formula.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx")  # torch's ONNX exporter needs it (test extra)
torch = pytest.importorskip("torch")

from engine.framing import geometry as geo  # noqa: E402
from engine.framing.frame import FramingOptions, frame_portrait  # noqa: E402

SIZE = 640
# the face: stride 16, cell (20, 15) -> anchor centre (320, 240) in the 640 letterbox
STRIDE, CX, CY = 16, 20, 15
BOX_D = np.array([5.0, 6.0, 5.0, 4.0])                     # left, top, right, bottom in strides
KPS = np.array([[-1.5, -1.0], [1.5, -1.0], [0.0, 0.5], [-1.0, 2.0], [1.0, 2.0]])  # in strides


class _Det(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        outs = {}
        for s in (8, 16, 32):
            n = (SIZE // s) ** 2 * 2
            score, bbox, kps = np.zeros((n, 1), np.float32), np.ones((n, 4), np.float32), np.zeros((n, 10), np.float32)
            if s == STRIDE:
                i = (CY * (SIZE // s) + CX) * 2
                score[i] = 0.93
                bbox[i] = BOX_D
                kps[i] = KPS.ravel()
            outs[s] = (score, bbox, kps)
        for s, (a, b, c) in outs.items():
            self.register_buffer(f"s{s}", torch.from_numpy(a))
            self.register_buffer(f"b{s}", torch.from_numpy(b))
            self.register_buffer(f"k{s}", torch.from_numpy(c))

    def forward(self, x):
        z = x.mean() * 0.0
        return (self.s8 + z, self.s16 + z, self.s32 + z, self.b8 + z, self.b16 + z, self.b32 + z,
                self.k8 + z, self.k16 + z, self.k32 + z)


LMK = np.stack([np.cos(np.linspace(0, 2 * np.pi, 106, endpoint=False)) * 0.4,
                np.sin(np.linspace(0, 2 * np.pi, 106, endpoint=False)) * 0.5 + 0.05], 1).astype(np.float32)


class _Lmk(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("p", torch.from_numpy(LMK.reshape(1, 212)))

    def forward(self, x):
        return self.p + x.mean() * 0.0


def _export(folder: Path, with_landmarks: bool) -> Path:
    root = folder / "insightface" / "models" / "buffalo_l"
    root.mkdir(parents=True)
    names = [f"{k}_{s}" for k in ("score", "bbox", "kps") for s in (8, 16, 32)]
    torch.onnx.export(_Det(), torch.zeros(1, 3, SIZE, SIZE), str(root / "det_10g.onnx"), dynamo=False,
                      input_names=["input.1"], output_names=names)
    if with_landmarks:
        torch.onnx.export(_Lmk(), torch.zeros(1, 3, 192, 192), str(root / "2d106det.onnx"), dynamo=False,
                          input_names=["data"], output_names=["fc1"])
    return folder


@pytest.mark.parametrize("factor", [1.0, 2.0])
def test_scrfd_points_frame_in_file_pixels(tmp_path: Path, factor: float) -> None:
    """A 640x480 picture (and the same at 1280x960: detection on the 640 copy)."""
    weights = _export(tmp_path, with_landmarks=False)
    img = np.full((int(480 * factor), int(640 * factor), 3), 100, np.uint8)
    fr = frame_portrait(img, FramingOptions(weights_root=weights))
    assert fr.method == "insightface" and fr.faces == 1
    centre = np.array([CX, CY]) * STRIDE
    want_pts = (centre + KPS * STRIDE) * factor
    np.testing.assert_allclose(np.array(fr.points), want_pts, atol=1e-3)
    x0, y0 = (centre - BOX_D[:2] * STRIDE) * factor
    np.testing.assert_allclose(fr.box, [x0, y0, 10 * STRIDE * factor, 10 * STRIDE * factor], atol=1e-3)
    eyes_mid = (want_pts[0] + want_pts[1]) / 2
    c = geo.to_crop(fr.M_c2o, [eyes_mid])[0] / 512
    assert c[0] == pytest.approx(0.5, abs=1e-6)


def test_106_landmarks_set_the_box_as_upstream(tmp_path: Path) -> None:
    weights = _export(tmp_path, with_landmarks=True)
    img = np.full((480, 640, 3), 100, np.uint8)
    fr = frame_portrait(img, FramingOptions(weights_root=weights))
    assert fr.method == "insightface" and len(fr.points) == 106
    # the 106 points: the patch is the SCRFD box enlarged x1.5 around its centre, 192 px
    centre = np.array([CX, CY]) * STRIDE
    b0 = centre - BOX_D[:2] * STRIDE
    b1 = centre + BOX_D[2:] * STRIDE
    bc, side = (b0 + b1) / 2, max(b1 - b0) * 1.5
    want = bc + LMK * side / 2
    np.testing.assert_allclose(np.array(fr.points), want, atol=1e-2)
    # and the crop is upstream's formula over those points with the SCRFD eye/mouth axis
    e0 = centre + (KPS[0] + KPS[1]) / 2 * STRIDE
    e1 = centre + (KPS[3] + KPS[4]) / 2 * STRIDE
    ref = geo.frame_from_landmarks(want, e0, e1)
    np.testing.assert_allclose(fr.M_c2o, ref.M_c2o, atol=1e-3)


def test_face_index_and_threshold_with_onnx(tmp_path: Path) -> None:
    weights = _export(tmp_path, with_landmarks=False)
    img = np.full((480, 640, 3), 100, np.uint8)
    from engine.errors import BadRequest

    with pytest.raises(BadRequest):
        frame_portrait(img, FramingOptions(weights_root=weights, face_index=1))


def test_insightface_path_measures_lip_open_with_the_face_mesh(tmp_path: Path) -> None:
    """lip_open has one definition whatever detector framed the face: the face mesh, placed from
    SCRFD's eyes and mouth. The astronaut is pasted where the exported detector 'sees' a face."""
    import cv2

    from engine.framing.frame import load_picture

    weights = _export(tmp_path, with_landmarks=True)
    grey = frame_portrait(np.full((480, 640, 3), 100, np.uint8), FramingOptions(weights_root=weights))
    assert grey.lip_open is None and [c for c, _ in grey.warnings] == ["lip_open_unavailable"]  # no face there
    portrait = load_picture(Path(__file__).resolve().parents[2] / "examples" / "portrait.jpg")
    ref = frame_portrait(portrait)                                   # MTCNN path
    p = np.array(ref.points)
    kps = np.array([CX, CY]) * STRIDE + KPS * STRIDE
    s = np.hypot(*(kps[1] - kps[0])) / np.hypot(*(p[1] - p[0]))
    t = (kps[0] + kps[1]) / 2 - s * (p[0] + p[1]) / 2
    img = cv2.warpAffine(portrait, np.array([[s, 0, t[0]], [0, s, t[1]]]), (640, 480), borderMode=cv2.BORDER_REFLECT)
    fr = frame_portrait(img, FramingOptions(weights_root=weights))
    assert fr.method == "insightface" and fr.lip_open is not None
    assert abs(fr.lip_open - ref.lip_open) < 0.02
