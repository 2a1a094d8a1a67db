"""Semantic projection exp -> ARKit channels (semantic_basis.md §8)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from joyvasa_blender.core.contract import semantic

REPO = Path(__file__).resolve().parents[2]
# in-repo copies of shared/spec/semantic_basis.json and shared/fixtures/lp_motion_templates (tests/fixtures/README.md)
SPEC = REPO / "tests" / "fixtures" / "spec" / "semantic_basis.json"
TEMPLATES = REPO / "tests" / "fixtures" / "lp_motion_templates"
ALL = ("mouth", "eyes", "brows", "gaze")


def alp_slider(name: str, value: float) -> np.ndarray:
    """(21, 3) offset of an AdvancedLivePortrait slider at ``value``, read from the spec JSON
    (independent of the add-on's data file)."""
    spec = json.loads(SPEC.read_text())
    slider = next(s for s in spec["sliders_advancedliveportrait"] if s["name"] == name)
    branches = slider["branches"]
    if len(branches) > 1:
        br = next(b for b in branches if (b["when"].startswith("v>0") if value > 0 else b["when"].startswith("v<=0")))
    else:
        br = branches[0]
    out = np.zeros(63)
    for kp, axis, coef in br["terms"]:
        out[kp * 3 + "xyz".index(axis)] += coef * value
    return out.reshape(21, 3)


def weights_of(exp_offset: np.ndarray, groups=("mouth", "eyes", "brows")) -> dict[str, float]:
    neutral = np.random.default_rng(0).normal(0, 0.01, (21, 3))
    p = semantic.project((neutral + exp_offset)[None], reference_mode="first", groups=groups,
                         ref=neutral)
    return {n: float(p.weights[0, i]) for i, n in enumerate(p.names)}


def only(w: dict[str, float], expected: dict[str, float], tol: float = 1e-6) -> None:
    for name, val in w.items():
        assert abs(val - expected.get(name, 0.0)) < tol, (name, val, expected)


def test_data_file_matches_spec():
    import importlib.util
    spec_mod = importlib.util.spec_from_file_location("gen", REPO / "tools" / "gen_semantic_basis.py")
    gen = importlib.util.module_from_spec(spec_mod)
    spec_mod.loader.exec_module(gen)
    built = gen.build(json.loads(SPEC.read_text()))
    shipped = json.loads(semantic.DATA_FILE.read_text())
    assert built == shipped, "joyvasa_blender/core/contract/semantic_basis.json is stale: run tools/gen_semantic_basis.py, then tools/sync_contract.py --fix"


def test_nnls_matches_bruteforce():
    rng = np.random.default_rng(1)
    A = rng.normal(size=(12, 5))
    b = rng.normal(size=12)
    x = semantic.nnls(A, b)
    assert np.all(x >= 0)
    best = np.inf  # brute force over active sets
    import itertools
    for k in range(6):
        for S in itertools.combinations(range(5), k):
            z = np.zeros(5)
            if S:
                z[list(S)] = np.linalg.lstsq(A[:, S], b, rcond=None)[0]
            if np.all(z >= -1e-12):
                best = min(best, np.linalg.norm(A @ z - b))
    assert np.linalg.norm(A @ x - b) <= best + 1e-9


@pytest.mark.parametrize("groups", [("mouth", "eyes", "brows"), ALL])
def test_synthetic_round_trip_exact(groups):
    basis = semantic.load_basis().select(groups)
    rng = np.random.default_rng(2)
    pairs = {"jawOpen": "_jawPress", "mouthSmile": "_smileNeg", "mouthStretch": "_eeeNeg", "mouthPucker": "_wooNeg",
             "eyeBlinkRight": "eyeWideRight", "eyeBlinkLeft": "eyeWideLeft", "browUp": "browDown",
             "lookImageRight": "lookImageLeft", "lookUp": "lookDown"}
    names = basis.names
    for _ in range(20):
        w = np.zeros(len(names))
        for a, b in pairs.items():
            if a not in names:
                continue
            pick = a if rng.random() < 0.5 else b
            i = names.index(pick)
            w[i] = rng.uniform(0, 1) * basis.channels[i].full_scale
        neutral = rng.normal(0, 0.01, 63)
        exp = (neutral + basis.matrix() @ w).reshape(1, 21, 3)
        p = semantic.project(exp, groups=groups, ref=neutral)
        full = np.array([c.full_scale for c in basis.channels])
        gaze = np.array([c.group == "gaze" for c in basis.channels])
        # gaze channels: the joint projection recovers them exactly; the others come from the
        # projection without gaze (exact whenever the motion has no gaze: the 3-group case)
        assert np.max(np.abs(p.weights[0] - w)[gaze] / full[gaze], initial=0.0) < 1e-9
        face = semantic.project(exp, groups=[g for g in groups if g != "gaze"], ref=neutral)
        np.testing.assert_allclose(p.weights[0][~gaze], face.weights[0], atol=1e-12)
        if not gaze.any():
            assert np.max(np.abs(p.weights[0] - w) / full) < 1e-9


def test_blinks_do_not_depend_on_gaze():
    """Lids and gaze are projected apart: the same take with and without the gaze group gives
    identical blink (and every other non-gaze) curves, on real motion templates."""
    for name in ("d1", "d7", "wink", "talking"):
        exp = np.load(TEMPLATES / f"{name}.npz")["exp"]
        without = semantic.project(exp, groups=("mouth", "eyes", "brows"))
        with_gaze = semantic.project(exp, groups=ALL)
        for ch in without.names:
            np.testing.assert_array_equal(with_gaze.channel(ch), without.channel(ch), err_msg=f"{name} {ch}")
        assert with_gaze.values[:, with_gaze.names.index("lookUp")].std() > 0 or name == "d1"


def test_noise_is_bounded():
    basis = semantic.load_basis().select(("mouth", "eyes", "brows"))
    rng = np.random.default_rng(3)
    errs = []
    full = np.array([c.full_scale for c in basis.channels])
    for _ in range(200):
        w = np.zeros(len(basis.names))
        for i in rng.choice(len(w), 3, replace=False):
            w[i] = rng.uniform(0, 0.8) * full[i]
        # keep one of each +/- pair (as the spec's test)
        for a, b in (("jawOpen", "_jawPress"), ("mouthSmile", "_smileNeg"), ("mouthStretch", "_eeeNeg"),
                     ("mouthPucker", "_wooNeg"), ("browUp", "browDown"), ("eyeBlinkRight", "eyeWideRight"),
                     ("eyeBlinkLeft", "eyeWideLeft")):
            w[basis.names.index(b)] = 0.0 if w[basis.names.index(a)] else w[basis.names.index(b)]
        d = basis.matrix() @ w + rng.normal(0, 2e-4, 63)
        p = semantic.project(d.reshape(1, 21, 3), ref=np.zeros(63))
        errs.append(np.max(np.abs(p.weights[0] - w) / full))
    assert np.percentile(errs, 95) < 0.2


def test_branches_and_couplings():
    only(weights_of(alp_slider("eyebrow", -5)), {"browDown": 5})
    only(weights_of(alp_slider("eyebrow", 6)), {"browUp": 6})
    only(weights_of(alp_slider("pupil_x", -4), ALL), {"lookImageLeft": 4})
    only(weights_of(alp_slider("pupil_x", 4), ALL), {"lookImageRight": 4})
    only(weights_of(alp_slider("aaa", 40)), {"jawOpen": 40})
    only(weights_of(alp_slider("blink", -10)), {"eyeBlinkRight": 10, "eyeBlinkLeft": 10})


def test_null_cases():
    rng = np.random.default_rng(4)
    exp = rng.normal(0, 0.01, (5, 21, 3))
    p = semantic.project(exp, reference_mode="first", ref=exp[0])
    assert np.allclose(p.values[0], 0)
    moved = np.repeat(exp[:1], 5, axis=0)
    moved[:, [0, 5, 10], :] += rng.normal(0, 0.02, (5, 3, 3))
    p = semantic.project(moved, ref=exp[0])
    assert np.abs(p.weights).max() < 1e-12


def test_values_clipped_to_unit_range():
    exp = np.zeros((3, 21, 3))
    exp[:, 19, 1] = [0.0, 0.05, 0.5]   # aaa 0, 50, 500 units
    p = semantic.project(exp, ref=np.zeros(63))
    jaw = p.channel("jawOpen")
    assert np.allclose(jaw, [0.0, 0.5, 1.0], atol=1e-2)
    assert p.values.min() >= 0 and p.values.max() <= 1


def test_name_map_parsing_and_mirroring():
    text = semantic.default_name_map()
    m = semantic.parse_name_map(text)
    assert m["jawOpen"] == [("jawOpen", 1.0)]
    assert [k for k, _ in m["mouthSmile"]] == ["mouthSmileLeft", "mouthSmileRight"]
    m2 = semantic.parse_name_map("mouthPucker = mouthPucker, mouthFunnel*0.5\n eyeBlinkLeft=BlinkL")
    assert m2["mouthPucker"] == [("mouthPucker", 1.0), ("mouthFunnel", 0.5)]
    with pytest.raises(ValueError):
        semantic.parse_name_map("jawOpen")
    with pytest.raises(ValueError):
        semantic.parse_name_map("jawOpen=jaw*x")
    # right eye only closes
    exp = np.zeros((1, 21, 3))
    exp[0, 11, 1], exp[0, 13, 1] = 0.02, -0.006   # 20 units eyeBlinkRight (no brow part)
    p = semantic.project(exp, ref=np.zeros(63))
    keys = semantic.shape_key_curves(p, m)
    assert keys["eyeBlinkRight"][0] > 0.8 and keys["eyeBlinkLeft"][0] < 0.1
    keys = semantic.shape_key_curves(p, m, mirrored_source=True)
    assert keys["eyeBlinkLeft"][0] > 0.8 and keys["eyeBlinkRight"][0] < 0.1


def _load_template(name):
    path = TEMPLATES / f"{name}.npz"
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def _r(a, b):
    return float(np.corrcoef(a, b)[0, 1])


def test_real_data_signs():
    d7 = _load_template("d7")
    p = semantic.project(d7["exp"])
    assert _r(p.channel("eyeBlinkRight"), d7["c_eyes"][:, 0]) <= -0.9
    assert _r(p.channel("eyeBlinkLeft"), d7["c_eyes"][:, 1]) <= -0.9
    d1 = _load_template("d1")
    p1 = semantic.project(d1["exp"], reference_mode="first")
    assert _r(p1.channel("eyeBlinkRight"), d1["c_eyes"][:, 0]) <= -0.9
    assert _r(semantic.project(d1["exp"]).channel("eyeBlinkLeft"), d1["c_eyes"][:, 1]) <= -0.9
    for name in ("d5", "d8"):
        d = _load_template(name)
        assert _r(semantic.project(d["exp"]).channel("jawOpen"), d["c_lip"][:, 0]) >= 0.7
    wink = semantic.project(_load_template("wink")["exp"])
    assert np.percentile(wink.channel("eyeBlinkRight"), 95) > 3 * np.percentile(wink.channel("eyeBlinkLeft"), 95)
    laugh = semantic.project(_load_template("laugh")["exp"])
    assert np.percentile(laugh.channel("mouthSmile"), 95) > 0.3
    assert np.percentile(laugh.channel("jawOpen"), 95) > 0.5
