"""Stage-one networks against the arrays the upstream code computed (shared tiny fixture)."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from engine.models.keypoints import rotation_matrix, transform_keypoint
from engine.models.stage_one import StageOne, preprocess_image, read_image_rgb
from engine.weights import WeightsLayout


def _close(ours: torch.Tensor | np.ndarray, ref: np.ndarray, rtol: float = 1e-4, atol: float = 1e-5) -> None:
    ours = ours.detach().numpy() if isinstance(ours, torch.Tensor) else ours
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=rtol, atol=atol)


@pytest.mark.parametrize("fold_bn,fast", [(True, True), (False, False), (True, False)],
                         ids=["default", "exact", "folded-bn-only"])
def test_networks_match_upstream(tiny_reference, fold_bn: bool, fast: bool) -> None:
    ref = np.load(tiny_reference / "reference.npz")
    s1 = StageOne.load(WeightsLayout(tiny_reference), fold_bn=fold_bn, fast=fast)
    x = torch.from_numpy(ref["I_s"])
    src = s1.extract(x)
    _close(src.f_s, ref["F_feature_3d"])
    _close(src.x_c, ref["M_kp"])
    _close(src.exp, ref["M_exp"])
    _close(src.scale, ref["M_scale"])
    _close(src.t, ref["M_t"])
    for name in ("pitch", "yaw", "roll"):
        _close(getattr(src, name), ref[f"M_{name}"])
    _close(src.R, ref["M_R"])
    _close(src.x_s, ref["x_s"])
    w = s1.warp(torch.from_numpy(ref["F_feature_3d"]), torch.from_numpy(ref["WG_kp_source"]),
                torch.from_numpy(ref["WG_kp_driving"]))
    _close(w["out"], ref["W_out"])
    _close(w["deformation"], ref["W_deformation"])
    _close(w["occlusion_map"], ref["W_occlusion_map"])
    _close(w["mask"], ref["W_dense_mask"])
    _close(s1.decode(torch.from_numpy(ref["W_out"])), ref["G_out"])
    # the whole W→G chain through the public API
    out = s1.warp_decode(torch.from_numpy(ref["F_feature_3d"]), torch.from_numpy(ref["WG_kp_source"]),
                         torch.from_numpy(ref["WG_kp_driving"]))
    _close(out, ref["G_out"], rtol=1e-4, atol=3e-5)
    for name in ("stitching", "lip", "eye"):
        _close(s1.S[name](torch.from_numpy(ref[f"S_{name}_in"])), ref[f"S_{name}_out"])
    _close(s1.stitch(torch.from_numpy(ref["WG_kp_source"]), torch.from_numpy(ref["WG_kp_driving"])),
           ref["S_stitching_kp_out"])


def test_image_path_matches_upstream(tiny_reference) -> None:
    ref = np.load(tiny_reference / "reference.npz")
    rgb = read_image_rgb(tiny_reference / "source.png")
    assert np.array_equal(rgb, ref["source_image"])
    # a recorded float fixture: compared with an explicit tolerance (/255 is exact IEEE, but another CPU
    # or library build is never assumed to reproduce a recorded float bit for bit)
    np.testing.assert_allclose(preprocess_image(rgb).numpy(), ref["I_s"], rtol=0, atol=1e-7)


def test_batched_warp_decode_equals_single(tiny_reference) -> None:
    ref = np.load(tiny_reference / "reference.npz")
    s1 = StageOne.load(WeightsLayout(tiny_reference))
    f_s = torch.from_numpy(ref["F_feature_3d"])
    kp_s, kp_d = torch.from_numpy(ref["WG_kp_source"]), torch.from_numpy(ref["WG_kp_driving"])
    batch = torch.cat([kp_d, kp_s, kp_d + 0.01])  # (3, 21, 3)
    out = s1.warp_decode(f_s, kp_s, batch)
    assert out.shape == (3, 3, 512, 512)
    _close(out[0:1], ref["G_out"], atol=3e-5)
    # batch size changes the conv kernels' summation order: rounding-level differences only
    _close(out[2:3], s1.warp_decode(f_s, kp_s, kp_d + 0.01).numpy(), rtol=1e-4, atol=3e-5)


def test_parity_command_group_all_ok(tiny_reference) -> None:
    from engine.parity.run import run_parity

    buf = io.StringIO()
    failures = run_parity(tiny_reference, ["F_", "M_", "x_s", "W_", "G_", "S_", "I_s", "source_image"], out=buf)
    lines = buf.getvalue().splitlines()
    assert failures == 0, buf.getvalue()
    statuses = {line.split()[0]: line.split()[-1] if "ok" not in line else "ok" for line in lines}
    assert all(s in ("ok", "input") for s in statuses.values()), buf.getvalue()
    assert {"F_feature_3d", "W_out", "G_out", "x_s", "I_s", "source_image"} <= set(statuses)


def test_rotation_matrix_convention() -> None:
    pitch, yaw, roll = torch.tensor([[10.0]]), torch.tensor([[-20.0]]), torch.tensor([[30.0]])
    R = rotation_matrix(pitch, yaw, roll)[0].double()
    p, y, r = np.deg2rad([10.0, -20.0, 30.0])
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    np.testing.assert_allclose(R.numpy(), (rz @ ry @ rx).T, atol=1e-6)
    # (B,) angles are accepted as well as (B, 1)
    assert torch.equal(rotation_matrix(pitch[:, 0], yaw[:, 0], roll[:, 0]), rotation_matrix(pitch, yaw, roll))


def test_transform_keypoint_formula() -> None:
    g = torch.Generator().manual_seed(0)
    kp, exp = torch.randn(2, 21, 3, generator=g), torch.randn(2, 21, 3, generator=g)
    scale, t = torch.rand(2, 1, generator=g) + 0.5, torch.randn(2, 3, generator=g)
    R = rotation_matrix(torch.tensor([5.0, -3.0]), torch.tensor([1.0, 2.0]), torch.tensor([0.0, 9.0]))
    out = transform_keypoint(kp.reshape(2, 63), R, exp, scale, t)
    expect = scale[:, :, None] * (kp @ R + exp)
    expect[..., :2] += t[:, None, :2]
    torch.testing.assert_close(out, expect)
