"""engine/live/stream.py: the streaming motion sampler on tiny synthetic weights (L = 20, P = 5, N = 10)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.errors import BadRequest
from engine.live.stream import MotionStream
from engine.motion.controls import parse_controls
from engine.motion.edit import LIP_ROWS, _directions, direct_motion
from engine.motion.generate import MotionModel, MotionOptions, generate_motion
from engine.sampling import make_sampler, run_sampler
from engine.sampling.known import KnownPrefix
from engine.weights import WeightsLayout


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny matrices: one intra-op thread (on a shared 2-core box, two threads wait on each other)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def layout(synthetic_tiny_joyvasa):
    return WeightsLayout(synthetic_tiny_joyvasa)


@pytest.fixture(scope="module")
def model(layout):
    return MotionModel.load(layout)


def _speech(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    return (0.2 * np.sin(2 * np.pi * 3 * t) * np.sin(2 * np.pi * 180 * t)
            + rng.normal(0, 0.01, t.size)).astype(np.float32)


def _stream(model, wave, opts, blocks, **kw):
    """Feed ``wave`` in blocks of the given sizes (cycled); returns (stream, frames)."""
    st = MotionStream(model, opts, **kw)
    frames, i, j = [], 0, 0
    while i < len(wave):
        n = blocks[j % len(blocks)]
        frames += st.feed(wave[i:i + n])
        i, j = i + n, j + 1
    frames += st.finish()
    return st, frames


@pytest.mark.parametrize("sampler", ["ancestral", "dpmpp_2m"])
def test_exact_mode_equals_engine_motion(layout, model, sampler):
    """H = L, F = 0, upstream's schedule: frame for frame the offline take (coef, pose after the
    EMA, expression); 3.3 s = 4 full tiny windows + a padded one, fed in odd-sized blocks."""
    wave = _speech(3.3)
    opts = MotionOptions(seed=5, sampler=sampler)
    off = generate_motion(model, wave, opts)
    st, frames = _stream(model, wave, opts, [777, 5000, 13], schedule="offline")
    m = st.take_motion()
    assert m.n_frames == off.n_frames == len(frames)
    # float32 rounding of one window's encoder batch vs two: ~1e-6; a window off by one frame: ~1e-1
    np.testing.assert_allclose(m.coef, off.coef, atol=2e-5, rtol=0)
    np.testing.assert_allclose(m.exp, off.exp, atol=2e-5, rtol=0)
    for k in ("pitch", "yaw", "roll", "scale", "t"):
        np.testing.assert_allclose(getattr(m, k), getattr(off, k), atol=1e-3, rtol=1e-5)
    assert m.meta["sampler"] == sampler and m.meta["seed"] == 5
    assert m.meta["audio_sha256"] == off.meta["audio_sha256"]
    shifted = np.roll(off.coef, 1, axis=0)
    assert np.abs(shifted - m.coef).max() > 1e-2          # the tolerance would catch an off-by-one
    # the take's file: the keys and dtypes `engine motion` writes (voice level included)
    from engine.motion.npz import motion_arrays

    want = motion_arrays(direct_motion(off, parse_controls({}), wave))
    got = st.take_arrays()
    assert {k: v.dtype for k, v in got.items()} == {k: v.dtype for k, v in want.items()}


def test_exact_mode_per_frame_controls_match_offline(layout, model):
    """Per-frame controls (gains, offsets, gaze) give the offline edit exactly."""
    wave = _speech(2.2, seed=1)
    controls = parse_controls({"head_gain": {"yaw": 0.5, "pitch": 1.5}, "lip_gain": 1.3,
                               "expression_offset": {"smile": 0.4, "brow": [0.0, 0.5, -0.3]},
                               "gaze": {"x": 0.2, "follow_head": 0.3}, "fade_s": {"in": 0.3}})
    opts = MotionOptions(seed=2)
    off = direct_motion(generate_motion(model, wave, opts), controls, wave)
    st, _ = _stream(model, wave, opts, [4000], schedule="offline", controls=controls)
    m = st.take_motion()
    for k in ("exp", "pitch", "yaw", "roll", "t", "scale", "R"):
        np.testing.assert_allclose(getattr(m, k), getattr(off, k), atol=2e-4, rtol=1e-5, err_msg=k)
    assert m.raw is not None and m.controls == off.controls


@pytest.mark.parametrize("sampler", ["dpmpp_2m", "ancestral"])
def test_seeded_stream_does_not_depend_on_blocks(model, sampler):
    wave = _speech(2.5, seed=2)
    opts = MotionOptions(seed=11, sampler=sampler, steps=4)
    a, fa = _stream(model, wave, opts, [len(wave)], hop=4, lookahead=3)
    b, fb = _stream(model, wave, opts, [160, 1, 3333], hop=4, lookahead=3)
    ta, tb = a.take_arrays(), b.take_arrays()
    assert ta.keys() == tb.keys()
    for k in ("coef", "exp", "pitch", "yaw", "roll", "t", "scale", "R", "vad_db"):
        np.testing.assert_array_equal(ta[k], tb[k], err_msg=k)
    assert [f.frame for f in fa] == [f.frame for f in fb]
    c, _ = _stream(model, wave, MotionOptions(seed=12, sampler=sampler, steps=4), [4000], hop=4, lookahead=3)
    assert not np.array_equal(c.take_arrays()["coef"], ta["coef"])


def test_frames_contiguous_in_order_and_finish_flushes(model):
    wave = _speech(1.7, seed=3)
    st = MotionStream(model, MotionOptions(seed=1, steps=3), hop=3, lookahead=2)
    frames, clocks = [], []
    for i in range(0, len(wave), 1000):
        got = st.feed(wave[i:i + 1000])
        frames += got
        clocks += [f.sample for f in got]
    assert st.committed < (1920 + len(wave)) // 640          # look-ahead frames wait for finish()
    tail = st.finish()
    frames += tail
    assert tail and st.finish() == []
    n = (1920 + len(wave)) // 640                             # engine motion's frame count
    assert [f.frame for f in frames] == list(range(n))
    assert all(abs(f.t - (f.frame / 25 - 0.08)) < 1e-9 for f in frames)
    assert clocks == sorted(clocks) and all(f.sample == len(wave) for f in tail)
    m = st.take_motion()
    assert m.n_frames == n
    np.testing.assert_allclose(m.exp, np.stack([f.exp for f in frames]), atol=0)
    np.testing.assert_allclose(m.yaw, [f.yaw for f in frames], atol=0)
    assert set(frames[0].motion()) == {"pitch", "yaw", "roll", "scale", "trans", "exp"}
    assert len(frames[0].motion()["exp"]) == 63
    with pytest.raises(BadRequest):
        st.feed(wave[:10])


def test_clamping_keeps_committed_frames_fixed(model, monkeypatch):
    """Every window returns the committed frames it holds unchanged (each sampler)."""
    for sampler in ("ddim", "dpmpp_2m", "ancestral"):
        outs = []
        orig = MotionModel.sample_window

        def spy(self, *args, known=None, **kw):
            x0 = orig(self, *args, known=known, **kw)
            outs.append((None if known is None else known.x0.clone(), x0.clone()))
            return x0

        monkeypatch.setattr(MotionModel, "sample_window", spy)
        st, _ = _stream(model, _speech(1.5, seed=4), MotionOptions(seed=3, sampler=sampler, steps=5), [2000],
                        hop=4, lookahead=4)
        monkeypatch.undo()
        clamped = [(k, x) for k, x in outs if k is not None]
        assert len(clamped) >= 3
        for k, x in clamped:
            np.testing.assert_allclose(x[:, :k.shape[1]].numpy(), k.numpy(), atol=1e-6, err_msg=sampler)


def test_known_prefix_in_every_sampler(model):
    sch = model.schedule
    x0_known = torch.randn(1, 3, 4)
    for name in ("ddim", "dpmpp_2m", "ancestral"):
        s = make_sampler(name, sch, 4)
        out = run_sampler(s, lambda x, t: torch.zeros_like(x), torch.randn(1, 6, 4),
                          lambda i, t: torch.randn(1, 6, 4),
                          known=KnownPrefix(x0_known, lambda i: torch.randn(1, 3, 4)))
        np.testing.assert_allclose(out[:, :3].numpy(), x0_known.numpy(), atol=1e-6, err_msg=name)
        assert torch.all(out[:, 3:].abs() < 1e-5)     # the free rows follow the (zero) prediction


@pytest.mark.parametrize("tone", [0.0, 3e-4])
def test_silence_relaxes_the_lips(model, tone):
    """Speech, then 2 s of digital silence or room tone: the lips go to rest (default live controls)."""
    rng = np.random.default_rng(0)
    quiet = (tone * rng.standard_normal(32000)).astype(np.float32)
    wave = np.concatenate([_speech(1.5, seed=5), quiet])
    st, frames = _stream(model, wave, MotionOptions(seed=4, steps=3), [3200], hop=5, lookahead=3)
    rest = _directions()["lip_array"][list(LIP_ROWS)]
    exp = np.stack([f.exp for f in frames])
    t = np.array([f.t for f in frames])
    silent = (t > 1.5 + 0.4) & (t < 3.4)
    lips = exp[:, list(LIP_ROWS)]
    assert silent.sum() > 20
    assert np.abs(lips[silent] - rest).max() < 1e-5
    raw_lips = st.take_motion().raw["exp"][:, list(LIP_ROWS)]
    assert np.abs(raw_lips[silent] - rest).max() > 1e-3     # the model's own lips were elsewhere


def test_bad_settings(model):
    with pytest.raises(BadRequest, match="hop"):
        MotionStream(model, schedule="offline", hop=5)
    with pytest.raises(BadRequest, match="lookahead"):
        MotionStream(model, hop=15, lookahead=10)
    with pytest.raises(BadRequest, match="schedule"):
        MotionStream(model, schedule="fast")
    assert MotionStream(model, controls=parse_controls({"lip_gain": 1.2})).controls.silence.relax   # live default
    assert MotionStream(model, schedule="offline").controls.silence is None
    st = MotionStream(model, hop=5, lookahead=2)
    with pytest.raises(BadRequest, match="NaN"):
        st.feed(np.array([0.0, np.nan], np.float32))
    assert st.finish() == []
    with pytest.raises(BadRequest):
        st.take_motion()


def test_metrics_see_a_seam_and_a_distance():
    from engine.live.metrics import distance, frame_changes, seam_continuity

    rng = np.random.default_rng(0)
    coef = np.cumsum(rng.normal(0, 0.01, (200, 73)), axis=0)
    smooth = seam_continuity(coef, range(20, 200, 20))
    assert smooth.n_seams == 9 and smooth.n_inside == 199 - 9 and 0.5 < smooth.ratio < 1.5
    stepped = coef.copy()
    for k in range(20, 200, 20):
        stepped[k:] += 0.05                                   # a step at every hop start
    assert seam_continuity(stepped, range(20, 200, 20)).ratio > 3
    assert frame_changes(coef).shape == (199,)
    assert distance(coef, coef).rms == 0
    d = distance(coef, coef + np.r_[np.zeros(63), np.ones(10)] * 0.1)
    assert d.rms_exp == 0 and abs(d.rms_pose - 0.1 * np.sqrt(7)) < 1e-9 and d.n_frames == 200


def test_hop_for_a_slower_machine():
    from engine.live.stream import DEFAULT_HOP, hop_for

    assert hop_for(0.3) == DEFAULT_HOP                       # fast enough: the default
    assert hop_for(1.2) == 45                                # 1.5 x 1.2 s = 1.8 s = 45 frames
    assert hop_for(10.0) == 95                               # capped at window - lookahead



def test_crossfade_blends_only_the_first_frames_of_a_hop(model, tmp_path):
    from engine.motion.npz import load_motion, save_motion

    wave = _speech(1.2, seed=6)
    opts = MotionOptions(seed=9, steps=3)
    plain, _ = _stream(model, wave, opts, [2000], hop=4, lookahead=3)
    faded, _ = _stream(model, wave, opts, [2000], hop=4, lookahead=3, crossfade=2)
    a, b = plain.take_motion().coef, faded.take_motion().coef
    hop_pos = np.arange(len(a)) % 4
    assert np.array_equal(a[:4], b[:4])                       # the first hop has no previous window
    assert not np.allclose(a[4:][hop_pos[4:] < 2], b[4:][hop_pos[4:] < 2])
    path = save_motion(tmp_path / "take.npz", faded.take_motion())
    assert load_motion(path).n_frames == len(b)
