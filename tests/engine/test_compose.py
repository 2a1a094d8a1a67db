"""compose_driving vs upstream's driving keypoints (reference ANIM_*_kp_driving)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from engine.render.compose import (EYE_ROWS, LIP_ROWS, ComposeOptions, DrivingMotion, SourceKeypoints,
                                   compose_driving, hull_volume)

@pytest.fixture(scope="module")
def ref(tiny_reference):
    return np.load(tiny_reference / "reference.npz")


def _source(z) -> SourceKeypoints:
    t = lambda k: torch.from_numpy(z[k])  # noqa: E731
    return SourceKeypoints(x_c=t("M_kp"), exp=t("M_exp"), scale=t("M_scale"), t=t("M_t"), R=t("M_R"), x_s=t("x_s"))


def _motion(z) -> DrivingMotion:
    return DrivingMotion.from_arrays(z["MG_final_exp"], z["MG_final_scale"], z["MG_final_t"], z["MG_final_R"])


def _stitch_from_checkpoint(ref_dir: Path):
    """A stand-in stitching MLP read straight from the checkpoint (Linear/ReLU stack, spec §1.6)."""
    sd = torch.load(ref_dir / "liveportrait/retargeting_models/stitching_retargeting_module.pth",
                    weights_only=True)["retarget_shoulder"]
    sd = {k.replace("module.", ""): v for k, v in sd.items()}
    idx = sorted({int(k.split(".")[1]) for k in sd})

    def stitch(x_s: torch.Tensor, x_d: torch.Tensor) -> torch.Tensor:
        n = x_d.shape[0]
        h = torch.cat([x_s.reshape(n, -1), x_d.reshape(n, -1)], 1)
        for j, i in enumerate(idx):
            h = torch.nn.functional.linear(h, sd[f"mlp.{i}.weight"], sd[f"mlp.{i}.bias"])
            if j < len(idx) - 1:
                h = torch.relu(h)
        out = x_d + h[:, :63].reshape(n, 21, 3)
        out[..., :2] += h[:, None, 63:65]
        return out
    return stitch


@pytest.mark.parametrize("name,opts", [
    ("A", ComposeOptions.upstream_cli()),
    ("C", ComposeOptions.upstream_cli(animal=True)),
])
def test_compose_matches_reference_without_stitching(ref, name, opts):
    x_d = compose_driving(_source(ref), _motion(ref), opts).numpy()
    np.testing.assert_allclose(x_d, ref[f"ANIM_{name}_kp_driving"], rtol=0, atol=1e-4)


def test_compose_matches_reference_with_stitching(ref, tiny_reference):
    opts = ComposeOptions(relative=True, expression_friendly=True, stitching=True, driving_multiplier=1.0)
    x_d = compose_driving(_source(ref), _motion(ref), opts, stitch=_stitch_from_checkpoint(tiny_reference)).numpy()
    np.testing.assert_allclose(x_d, ref["ANIM_B_kp_driving"], rtol=0, atol=1e-4)
    # without stitching the result must differ (the test can fail)
    x_plain = compose_driving(_source(ref), _motion(ref), ComposeOptions(stitching=False)).numpy()
    assert np.abs(x_plain - ref["ANIM_B_kp_driving"]).max() > 1e-3


def test_stage_one_stitch_matches_reference(ref, tiny_reference):
    from engine.models import stage_one
    from engine.weights import WeightsLayout
    so = stage_one.StageOne.load(WeightsLayout(tiny_reference), "cpu")
    x_d = compose_driving(_source(ref), _motion(ref), ComposeOptions(), stitch=so.stitch)
    np.testing.assert_allclose(x_d.detach().numpy(), ref["ANIM_B_kp_driving"], rtol=0, atol=1e-4)


def test_regions_and_strengths(ref):
    src, mot = _source(ref), _motion(ref)
    base = dict(stitching=False, relative=False, driving_multiplier=1.0)
    x_all = compose_driving(src, mot, ComposeOptions(**base))
    # strength 1.0 is exactly upstream
    x_s1 = compose_driving(src, mot, ComposeOptions(pose_strength=1.0, exp_strength=1.0, **base))
    assert torch.equal(x_all, x_s1)
    # pose strength 0 + exp strength 0: rotation/translation/expression deltas vanish, lips absolute -> source
    x_frozen = compose_driving(src, mot, ComposeOptions(pose_strength=0.0, exp_strength=0.0, **base))
    n = mot.n_frames
    expected = src.scale * (src.x_c @ src.R + src.exp)
    t = src.t.clone()
    t[..., 2] = 0
    expected = expected + t[:, None, :]
    np.testing.assert_allclose(x_frozen.numpy(), expected.expand(n, 21, 3).numpy(), atol=1e-5)
    # region 'pose' keeps source expression; 'exp' keeps source rotation
    x_pose = compose_driving(src, mot, ComposeOptions(region="pose", **base))
    x_exp = compose_driving(src, mot, ComposeOptions(region="exp", **base))
    assert not torch.allclose(x_pose, x_exp)
    # region 'eyes': only eye rows move relative to region 'pose' computed with R_s (no rotation)
    x_eyes = compose_driving(src, mot, ComposeOptions(region="eyes", pose_strength=1.0, **base))
    x_none = compose_driving(src, mot, ComposeOptions(region="eyes", exp_strength=0.0, **base))
    moved = (x_eyes - x_none).abs().amax(dim=(0, 2))
    others = [k for k in range(21) if k not in EYE_ROWS]
    assert float(moved[others].max()) == 0.0 and float(moved[list(EYE_ROWS)].max()) > 0
    x_lip = compose_driving(src, mot, ComposeOptions(region="lip", **base))
    x_lip0 = compose_driving(src, mot, ComposeOptions(region="lip", exp_strength=0.0, **base))
    moved = (x_lip - x_lip0).abs().amax(dim=(0, 2))
    assert float(moved[[k for k in range(21) if k not in LIP_ROWS]].max()) == 0.0


def test_half_pose_strength_halves_angle(ref):
    mot = _motion(ref)
    from engine.render.compose import _scaled_rotation
    R_rel = mot.R @ mot.R[:1].permute(0, 2, 1)
    half = _scaled_rotation(R_rel, 0.5)
    np.testing.assert_allclose((half @ half).numpy(), R_rel.numpy(), atol=1e-5)


def test_options_validate():
    with pytest.raises(ValueError):
        ComposeOptions(region="nose")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        ComposeOptions(pose_strength=-1)
    cube = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 2)], dtype=np.float32)
    assert abs(hull_volume(cube) - 2.0) < 1e-9


def test_reference_frame_matches_full_sequence(ref):
    src, mot = _source(ref), _motion(ref)
    opts = ComposeOptions(stitching=False)
    full = compose_driving(src, mot, opts)
    tail = DrivingMotion(exp=mot.exp[2:], scale=mot.scale[2:], t=mot.t[2:], R=mot.R[2:])
    head = DrivingMotion(exp=mot.exp[:1], scale=mot.scale[:1], t=mot.t[:1], R=mot.R[:1])
    part = compose_driving(src, tail, opts, reference=head)
    assert torch.equal(part, full[2:])
    assert not torch.allclose(compose_driving(src, tail, opts), full[2:])


@pytest.mark.slow
def test_anim_parity_group_all_ok(ref, tiny_reference):
    """The ANIM_ parity group (driving keypoints + rendered uint8 frames) passes on the fixture."""
    import io

    from engine.parity import run_parity

    buf = io.StringIO()
    failures = run_parity(tiny_reference, only=["ANIM_"], out=buf)
    lines = buf.getvalue().splitlines()
    assert failures == 0, buf.getvalue()
    assert lines and all(line.endswith(("ok", "within 1)")) or " ok " in line for line in lines), buf.getvalue()
    assert not [line for line in lines if "skipped" in line]
