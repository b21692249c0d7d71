"""Depth metrics in closed form; the reference depth estimator and the in-domain CLIP-style model train
deterministically, learn, and round-trip through safetensors + config.json."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from latent3d.errors import UserError
from latent3d.metrics.clip_score import (ClipConfig, WordTokenizer, clip_scores, contrastive_loss, cosine_to_score,
                                         load_clip, retrieval_accuracy, save_clip, train_clip)
from latent3d.metrics.depth import depth_errors, disparity_errors, fit_scale_shift
from latent3d.metrics.depth_net import (DepthNet, DepthNetConfig, depth_loss, load_depth_net, save_depth_net,
                                        train_depth_net)
from latent3d.runtime import seeded

from tolerances import EPS32, assert_close_f32

G = torch.Generator().manual_seed(0)
# float64 depths: the metrics compute in float64 anyway, so the closed forms below hold to ~1e-15, far inside
# pytest.approx's default rel 1e-6, on any CPU
T = torch.rand(2, 1, 8, 8, generator=G, dtype=torch.float64) * 5 + 1  # depth in [1, 6]


# ------------------------------------------------------------------------------------------------ depth metrics
@pytest.mark.numerics
def test_depth_errors_closed_forms():
    e = depth_errors(2 * T, T)
    rms = (T**2).flatten(1).mean(1).sqrt().mean().item()  # |2t - t| = t
    assert (e.abs_rel, e.delta1, e.n) == (pytest.approx(1.0), 0.0, 2) and e.rmse == pytest.approx(rms)
    e = depth_errors(1.2 * T, T)
    assert e.abs_rel == pytest.approx(0.2) and e.delta1 == 1.0 and e.rmse == pytest.approx(0.2 * rms)
    assert depth_errors(1.3 * T, T).delta1 == 0.0 and depth_errors(T / 1.2, T).delta1 == 1.0
    for mode, pred in (("median", 5 * T), ("scale", 0.3 * T), ("scale_shift", (T - 1) / 3)):
        e = depth_errors(pred, T, align_mode=mode)
        assert e.abs_rel < 1e-6 and e.rmse < 1e-6 and e.delta1 == 1.0
    # per image, then the mean over images: one perfect image and one at twice the depth
    assert depth_errors(torch.stack([T[0], 2 * T[1]]), T).abs_rel == pytest.approx(0.5)


@pytest.mark.numerics
def test_invalid_and_masked_pixels_are_ignored():
    y = T.clone()
    y[0, 0, :2] = float("inf")  # sky
    y[0, 0, 2, :3] = 0.0  # no depth
    y[1, 0, 3] = float("nan")
    y[1, 0, 4] = 50.0  # beyond max_depth
    p = 1.1 * T
    p[0, 0, :2] = 1e6  # garbage where the target is invalid
    p[0, 0, 2, :3] = 0.0
    p[1, 0, 3:5] = -7.0
    e = depth_errors(p, y, max_depth=20)
    assert e.abs_rel == pytest.approx(0.1) and e.delta1 == 1.0
    mask = torch.ones_like(T, dtype=torch.bool)
    mask[:, :, 5:] = False
    q = 1.1 * T
    q[:, :, 5:] = 99.0
    assert depth_errors(q, T, mask=mask).abs_rel == pytest.approx(0.1)
    none = depth_errors(T, torch.full_like(T, float("inf")))
    assert none.n == 0 and math.isnan(none.abs_rel)


@pytest.mark.numerics
def test_least_squares_alignment_matches_numpy_lstsq():  # float64 on both sides (fit_scale_shift works in float64)
    p, y = torch.randn(3, 10, 12, generator=G), torch.randn(3, 10, 12, generator=G)
    m = torch.rand(3, 10, 12, generator=G) > 0.3
    s, t = fit_scale_shift(p, y, m)
    s0, _ = fit_scale_shift(p, y, m, shift=False)
    for i in range(3):
        pi, yi = p[i][m[i]].double().numpy(), y[i][m[i]].double().numpy()
        (ss, tt), *_ = np.linalg.lstsq(np.stack([pi, np.ones_like(pi)], 1), yi, rcond=None)
        assert (float(s[i]), float(t[i])) == (pytest.approx(ss), pytest.approx(tt))
        assert float(s0[i]) == pytest.approx(float(pi @ yi / (pi @ pi)))
    s, t = fit_scale_shift(torch.ones(1, 4, 4), y[:1, :4, :4], torch.ones(1, 4, 4, dtype=torch.bool))
    assert (float(s), float(t)) == (1.0, 0.0)  # a constant prediction is left alone


@pytest.mark.numerics
def test_disparity_errors_follow_the_midas_protocol():
    assert disparity_errors(3 / T + 0.5, T).abs_rel < 1e-6  # affine in inverse depth: recovered exactly
    assert disparity_errors(3 / T + 0.5, T, align_mode="scale").abs_rel > 0.01  # a shift needs "scale_shift"
    assert disparity_errors(7 / T, T, align_mode="median").abs_rel < 1e-6
    # an aligned disparity <= 0 is clamped to 1 / max_depth instead of giving negative or infinite depth
    d = torch.tensor([[1.0, 0.5, 0.0, 0.0]])
    y = torch.tensor([[1.0, 2.0, 100.0, 100.0]])
    e = disparity_errors(d, y, align_mode="none", max_depth=1000.0)
    assert e.abs_rel == pytest.approx((0 + 0 + 9 + 9) / 4)  # 0 -> depth 1000 against 100


# ------------------------------------------------------------------------------------------------- tiny data
@pytest.fixture(scope="module")
def tiny_set():
    from latent3d.data.procedural.rgbd_sets import render_rgbd_set

    return render_rgbd_set(24, 32, 32, seed=5)


@pytest.mark.numerics
def test_depth_loss_closed_form():  # float64: the closed forms hold to ~1e-15
    y = torch.rand(2, 1, 4, 4, generator=G, dtype=torch.float64) * 3 + 0.5
    assert depth_loss(y.log(), y, 0.1, 80.0).item() == pytest.approx(0.0, abs=1e-6)
    c = 0.3  # a constant log offset: L1 = c, scale-invariant term = sqrt(c^2 - c^2 / 2)
    assert depth_loss(y.log() + c, y, 0.1, 80.0).item() == pytest.approx(c + c / math.sqrt(2), rel=1e-5)
    sky = torch.full((1, 1, 2, 2), float("inf"), dtype=torch.float64)
    assert depth_loss(torch.full_like(sky, math.log(80.0)), sky, 0.1, 80.0).item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.numerics
def test_depth_net_trains_deterministically_learns_and_round_trips(tiny_set, tmp_path):
    cfg = DepthNetConfig(size=32, steps=60, batch_size=8, width=8, lr=3e-3)
    a, b = train_depth_net(cfg, tiny_set), train_depth_net(cfg, tiny_set)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    with seeded(cfg.seed):  # the weights training started from
        init = DepthNet(8)
    with torch.no_grad():
        before = depth_loss(init(tiny_set.rgb), tiny_set.depth, 0.1, 80.0).item()
        after = depth_loss(a(tiny_set.rgb), tiny_set.depth, 0.1, 80.0).item()
    # measured after / before (trained on the shared trainer): 0.5916 with ATEN_CPU_CAPABILITY=default +
    # ONEDNN_MAX_CPU_ISA=SSE41, avx2 + AVX2 and native (avx512), the same to 4 digits; 0.525-0.592 over seeds 0-2 (a far
    # larger perturbation than another CPU's rounding); 1.000 with lr = 0 (a loop that learns nothing)
    assert after < 0.8 * before, (before, after)
    save_depth_net(tmp_path / "ref", a, cfg)
    c = load_depth_net(tmp_path / "ref")
    x = tiny_set.rgb[:3]
    assert torch.equal(a.predict_depth(x), c.predict_depth(x))
    d = c.predict_depth(torch.rand(1, 3, 20, 27))  # any size: resized to multiples of 8 and back
    assert d.shape == (1, 1, 20, 27) and d.min() >= 0.1 - 1e-6 and d.max() <= 80.0 + 1e-4
    with pytest.raises(UserError, match="not a 'latent3d-clip'"):
        load_clip(tmp_path / "ref")


# ------------------------------------------------------------------------------------------------------- CLIP
def test_word_tokenizer():
    tok = WordTokenizer.from_captions(["a red cube", "a blue sphere on a wooden floor"], max_len=4)
    ids = tok(["a red cube", "A purple cube, a"])
    assert tok.vocab[:2] == ["<pad>", "<unk>"] and ids.shape == (2, 4)
    assert [tok.vocab[i] for i in ids[0]] == ["a", "red", "cube", "<pad>"]
    assert ids[1].tolist() == [tok.index["a"], 1, tok.index["cube"], tok.index["a"]]  # unknown word -> 1
    assert tok.unknown("a purple cube") == ["purple"]


@pytest.mark.numerics
def test_contrastive_loss_and_score_closed_forms():
    e = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])  # items 0 and 1 share a caption
    scale = torch.tensor(math.log(100.0))
    loss = contrastive_loss(e, e, scale, torch.tensor([0, 0, 1]))
    # the lower bound: the entropy of the targets, log 2 for the two repeated captions, 0 for the third
    assert loss.item() == pytest.approx(2 / 3 * math.log(2), abs=1e-6)
    rand = torch.nn.functional.normalize(torch.randn(5, 3, generator=G), dim=-1)
    logits = 100.0 * rand.double() @ rand.double().T  # the float64 reference
    want = 0.5 * (torch.nn.functional.cross_entropy(logits, torch.arange(5)) * 2)  # symmetric: logits == logits.T
    # float32 logits of magnitude <= 100 (3-term dot products, the scale exp(log 100) clamped to 100): each off by
    # <= ~4 eps32 * 100; cross-entropy is 1-Lipschitz per row in the max-norm of the logits (x2 for the two terms)
    got = contrastive_loss(rand, rand, scale, torch.arange(5))
    assert_close(got.double(), want, atol=2 * 4 * 100 * EPS32, rtol=0)
    assert_close(cosine_to_score(torch.tensor([-0.3, 0.0, 0.5, 1.0])), torch.tensor([0.0, 0.0, 50.0, 100.0]))


@pytest.mark.numerics
def test_clip_trains_deterministically_separates_captions_and_round_trips(tiny_set, tmp_path):
    cfg = ClipConfig(size=32, steps=80, batch_size=24, width=8, dim=32, embed_dim=32, lr=3e-3)
    a, b = train_clip(cfg, tiny_set), train_clip(cfg, tiny_set)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    caps = tiny_set.captions
    own = clip_scores(a, tiny_set.rgb, caps)
    shuffled = clip_scores(a, tiny_set.rgb, caps[7:] + caps[:7])
    # measured (trained on the shared trainer): own - shuffled 67.74, retrieval 1.000 with ATEN_CPU_CAPABILITY=default +
    # ONEDNN_MAX_CPU_ISA=SSE41, avx2 + AVX2 and native (avx512), spread < 0.01; 62.7-71.7 and 1.000 over seeds 0-2;
    # with lr = 0 (learning nothing) -0.2 and 0.125
    assert own.mean() > shuffled.mean() + 20, (own.mean(), shuffled.mean())
    assert retrieval_accuracy(a, tiny_set.rgb, caps) > 0.6
    with torch.no_grad():  # the score is 100 * max(cos, 0) of the two unit embeddings
        cos = (a.encode_images(tiny_set.rgb[:4]) * a.encode_text(caps[:4])).sum(-1)
    # the same float32 network on a sub-batch (per-image results, summed in another order at most): each embedding
    # passes ~10 layers of <= 288-term sums, ~sqrt(288) eps32 each, so cos is off by <= ~1e2 eps32 (measured: 0);
    # a different score (e.g. 50 (cos + 1)) is off by >= 10
    assert_close_f32(own[:4], 100 * cos.clamp(min=0), k=100)
    save_clip(tmp_path / "clip", a)
    c = load_clip(tmp_path / "clip")
    assert c.tokenizer.vocab == a.tokenizer.vocab
    assert torch.equal(clip_scores(c, tiny_set.rgb, caps), own)
    with pytest.raises(UserError, match="not a 'latent3d-depth-net'"):
        load_depth_net(tmp_path / "clip")
