"""compose_driving vs upstream's driving keypoints (reference ANIM_*_kp_driving)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from engine.render.compose import ComposeOptions, DrivingMotion, SourceKeypoints, compose_driving, hull_volume

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


def _edited(z, controls: dict) -> tuple[DrivingMotion, DrivingMotion]:
    """(edited motion, raw frame 0) of the reference motion under ``controls`` (engine/motion/edit.py)."""
    from engine.motion.controls import parse_controls
    from engine.motion.edit import RawMotion, edit_motion
    from engine.motion.resample import angles_from_R

    p, y, r = angles_from_R(z["MG_final_R"])
    raw = RawMotion(25.0, z["MG_final_exp"].reshape(-1, 21, 3), p, y, r, z["MG_final_t"].reshape(-1, 3),
                    z["MG_final_scale"].reshape(-1), z["MG_final_R"], audio_offset_s=0.0)
    e = edit_motion(raw, parse_controls(controls))
    ref0 = DrivingMotion.from_arrays(raw.exp[:1], raw.scale[:1], raw.t[:1], raw.R[:1])
    return DrivingMotion.from_arrays(e["exp"], e["scale"], e["t"], e["R"]), ref0


def test_gains_reach_the_renderer_through_the_edited_motion(ref):
    """No gain maths in the renderer: a gain track 0 then 1 in the controls gives still driving
    keypoints, then exactly upstream's, because the renderer reads the edited motion."""
    src = _source(ref)
    base = ComposeOptions(stitching=False, relative=False, driving_multiplier=1.0)
    n = _motion(ref).n_frames
    x_up = compose_driving(src, _motion(ref), base)
    half = n // 2
    track = [0.0] * half + [1.0] * (n - half)
    still = {"head_gain": track, "expression_gain": track}
    mot, ref0 = _edited(ref, still)
    x = compose_driving(src, mot, base, reference=ref0)
    first = x[: half - 1]
    # lips are absolute: with gain 0 they sit at the closed-lip neutral, every frame the same
    assert float((first - first[:1]).abs().max()) < 1e-6
    np.testing.assert_allclose(x[half:].numpy(), x_up[half:].numpy(), atol=1e-5)
    assert float((x_up[:half] - x_up[:1]).abs().max()) > 1e-3       # the raw motion does move there
    # a constant head offset survives the renderer's relative driving (reference = raw frame 0)
    mot, ref0 = _edited(ref, {"head_offset_deg": {"yaw": 10}})
    x_off = compose_driving(src, mot, base, reference=ref0)
    assert float((x_off - x_up).abs().max()) > 1e-2


def test_options_validate():
    with pytest.raises(ValueError):
        ComposeOptions(driving_multiplier=-1)
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

    from engine.parity.run import run_parity

    buf = io.StringIO()
    failures = run_parity(tiny_reference, only=["ANIM_"], out=buf)
    lines = buf.getvalue().splitlines()
    assert failures == 0, buf.getvalue()
    assert lines and all(line.endswith(("ok", "within 1)")) or " ok " in line for line in lines), buf.getvalue()
    assert not [line for line in lines if "skipped" in line]
