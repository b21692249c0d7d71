"""Adaptive density control: clone / split / prune / opacity reset, Adam state bookkeeping, lr schedule, and the
NDC scaling of the view-space gradient that the clone/split threshold sees."""

from __future__ import annotations

import math

import pytest
import torch

from latent3d.render.camera import orbit_cameras
from latent3d.render.densify import (
    DensifyConfig,
    DensityController,
    LearningRates,
    expon_lr,
    make_optimizer,
    reset_opacity,
    update_lrs,
)
from latent3d.render.gaussians import GaussianModel, inverse_sigmoid
from tolerances import EPS32, assert_close_f32


def _model_with_state():
    """4 Gaussians: 0 small, 1 large, 2 small and transparent, 3 large; one Adam step so moments exist."""
    means = torch.tensor([[0.0, 0.0, 0.0], [0.5, 0.0, 0.0], [0.0, 0.5, 0.0], [0.0, 0.0, 0.5]])
    log_s = torch.log(torch.tensor([0.005, 0.2, 0.005, 0.2]))[:, None].repeat(1, 3)
    quats = torch.tensor([[1.0, 0, 0, 0]] * 4)
    logits = inverse_sigmoid(torch.tensor([0.5, 0.5, 0.001, 0.5]))
    sh = torch.randn(4, 4, 3, generator=torch.Generator().manual_seed(0))
    m = GaussianModel(means, log_s, quats, logits, sh)
    opt = make_optimizer(m)
    loss = sum((getattr(m, n) * (i + 1)).square().sum() for i, n in enumerate(GaussianModel.param_names))
    loss.backward()
    opt.step()
    opt.zero_grad()
    return m, opt


def _fake_stats(ctrl, grads, radii=None):
    n = len(grads)
    ctrl._reset_stats(n, torch.device("cpu"))
    ctrl.grad_sum += torch.tensor(grads)
    ctrl.count += 1
    if radii is not None:
        ctrl.max_radii = torch.tensor(radii, dtype=torch.float32)


@pytest.mark.numerics
def test_clone_split_prune_counts_and_adam_state_follow():
    m, opt = _model_with_state()
    old = {n: getattr(m, n).detach().clone() for n in GaussianModel.param_names}
    old_state = {g["name"]: opt.state[g["params"][0]]["exp_avg"].clone() for g in opt.param_groups}
    ctrl = DensityController(DensifyConfig(grad_threshold=1e-3, percent_dense=0.01, split_n=2), extent=1.0)
    _fake_stats(ctrl, [5e-3, 5e-3, 0.0, 1e-4])  # 0 -> clone, 1 -> split, 2 -> pruned (opacity), 3 untouched
    out = ctrl.densify_and_prune(m, opt, generator=torch.Generator().manual_seed(0))
    assert out == {"cloned": 1, "split": 1, "pruned": 1, "num": 5}
    # survivors in order: 0, 3, clone of 0, two halves of 1 (copies are exact)
    assert torch.equal(m.means[:3].detach(), old["means"][[0, 3, 0]])
    # split scales s / (0.8 * 2) stored as log: exp(log(exp(l) / 1.6)) is 4 float32 roundings, and exp turns the
    # absolute error of a log of magnitude ~2 into a relative one -> k = 16 of max|ref| (a missing / 1.6 is 60 % off)
    assert_close_f32(m.scales[3:], old["log_scales"][[1, 1]].exp() / 1.6, 16, "split scales")
    assert torch.all((m.means[3:] - old["means"][1]).norm(dim=-1) < 1.0)  # sampled around the parent
    assert torch.equal(m.sh[3:].detach(), torch.cat([old["sh_dc"], old["sh_rest"]], 1)[[1, 1]])
    for g in opt.param_groups:
        p = g["params"][0]
        assert p is getattr(m, g["name"]) and p.shape[0] == 5
        st = opt.state[p]
        assert st["exp_avg"].shape == p.shape == st["exp_avg_sq"].shape
        assert torch.equal(st["exp_avg"][:2], old_state[g["name"]][[0, 3]])  # moments follow their rows exactly
        assert float(st["exp_avg"][2:].abs().max()) == 0.0  # new Gaussians start with zero moments
    # the optimiser still works on the new tensors
    m.render(*orbit_cameras(3.0, 10.0, 0.0, 0.6, 16, 16), 16, 16)[0].sum().backward()
    opt.step()


def test_prune_big_only_after_reset():
    m, opt = _model_with_state()
    cfg = DensifyConfig(grad_threshold=1.0, max_screen_size=20.0, big_world=0.1)
    ctrl = DensityController(cfg, extent=1.0)
    _fake_stats(ctrl, [0.0] * 4, radii=[30.0, 1.0, 1.0, 1.0])
    assert ctrl.densify_and_prune(m, opt, prune_big=False)["pruned"] == 1  # only the transparent one
    m, opt = _model_with_state()
    _fake_stats(ctrl, [0.0] * 4, radii=[30.0, 1.0, 1.0, 1.0])
    # 0: screen radius 30 > 20; 1, 3: world scale 0.2 > 0.1; 2: transparent
    assert ctrl.densify_and_prune(m, opt, prune_big=True) == {"cloned": 0, "split": 0, "pruned": 4, "num": 0}


@pytest.mark.numerics
def test_opacity_reset_clamps_and_zeroes_moments():
    m, opt = _model_with_state()
    before = m.opacities.detach().clone()
    reset_opacity(m, opt, 0.01)
    # sigmoid(logit(0.01)): ~4 float32 roundings of O(1) logits, k = 8 of max|ref| = 0.01 (lower ones unchanged)
    assert_close_f32(m.opacities, before.clamp(max=0.01), 8, "reset opacities")
    assert float(before.min()) < 0.01 < float(before.max())
    p = next(g["params"][0] for g in opt.param_groups if g["name"] == "opacity_logits")
    assert float(opt.state[p]["exp_avg"].abs().max()) == 0.0


def test_schedule_and_view_space_gradients_accumulate():
    torch.manual_seed(0)
    m = GaussianModel.random(50, extent=0.5, sh_degree=0, generator=torch.Generator().manual_seed(0), opacity=0.5)
    opt = make_optimizer(m)
    cfg = DensifyConfig(refine_start=1, refine_stop=10, refine_every=2, reset_every=4, grad_threshold=0.0)
    ctrl = DensityController(cfg, extent=0.5)
    V, K = orbit_cameras(2.0, 0.0, [0.0, 90.0], 0.8, 24, 24)
    target = torch.rand(2, 24, 24, 3, generator=torch.Generator().manual_seed(1))
    events = {}
    for step in range(1, 5):
        img, alpha, meta = m.render(V, K, 24, 24)
        meta["means2d"].retain_grad()
        (img - target).abs().mean().backward()
        ctrl.update(meta)
        if step == 1:
            vis = (meta["radii"] > 0).sum(0)
            assert torch.equal(ctrl.count, vis.float()) and float(ctrl.grad_sum.max()) > 0
        opt.step()
        opt.zero_grad()
        events[step] = ctrl.step(m, opt, step)
    assert events[1] == {} and events[2]["cloned"] + events[2]["split"] > 0 and events[4]["reset"] == 1
    assert m.num > 50 and float(m.opacities.detach().max()) <= 0.01 * (1 + 64 * EPS32)  # sigmoid(logit) round-off


def test_update_requires_retained_means2d_grad():
    m = GaussianModel.random(5, sh_degree=0)
    _, _, meta = m.render(*orbit_cameras(3.0, 0.0, 0.0, 0.6, 8, 8), 8, 8)
    with pytest.raises(RuntimeError, match="retain_grad"):
        DensityController().update(meta)


def test_position_lr_decays_exponentially():
    lrs = LearningRates()
    assert expon_lr(0, 1e-2, 1e-4, 100) == pytest.approx(1e-2)
    assert expon_lr(50, 1e-2, 1e-4, 100) == pytest.approx(1e-3)
    assert expon_lr(1000, 1e-2, 1e-4, 100) == pytest.approx(1e-4)
    m = GaussianModel.random(3, sh_degree=1)
    opt = make_optimizer(m, lrs, extent=2.0)
    lr = {g["name"]: g["lr"] for g in opt.param_groups}
    assert lr["means"] == pytest.approx(1.6e-4 * 2.0) and lr["sh_rest"] == pytest.approx(2.5e-3 / 20)
    assert lr["opacity_logits"] == 5e-2 and lr["log_scales"] == 5e-3 and lr["quats"] == 1e-3
    rates = update_lrs(opt, 15_000, lrs, extent=2.0)
    assert rates == {"means": pytest.approx(2.0 * math.sqrt(1.6e-4 * 1.6e-6))}  # no final value: the rest constant
    assert {g["name"]: g["lr"] for g in opt.param_groups}["sh_dc"] == 2.5e-3


def _official_expon_lr(step, lr_init, lr_final, max_steps):
    """LucidDreamer's ``utils/general_utils.get_expon_lr_func`` (lr_delay_steps 0), transcribed."""
    if step < 0 or (lr_init == 0.0 and lr_final == 0.0):
        return 0.0
    t = min(max(step / max_steps, 0), 1)
    return math.exp(math.log(lr_init) * (1 - t) + math.log(lr_final) * t)


def test_lucid_dreamer_decays_colour_scale_and_rotation_lrs_like_its_position_lr():
    # LucidDreamer's training_setup: xyz (x spatial_lr_scale), feature, scaling and rotation each decay over
    # `iterations` with get_expon_lr_func; opacity stays constant
    lrs = LearningRates(means=1.6e-4, means_final=1.6e-6, means_max_steps=5000, sh_dc=5e-3, sh_dc_final=3e-3,
                        log_scales=5e-3, log_scales_final=1e-3, quats=1e-3, quats_final=2e-4, opacity_logits=0.05)
    opt = make_optimizer(GaussianModel.random(3, sh_degree=0), lrs, extent=3.5)
    for step in (0, 1, 1234, 4999, 5000, 7000):
        update_lrs(opt, step, lrs, extent=3.5)
        lr = {g["name"]: g["lr"] for g in opt.param_groups}
        assert lr["means"] == pytest.approx(_official_expon_lr(step, 1.6e-4 * 3.5, 1.6e-6 * 3.5, 5000), rel=1e-12)
        assert lr["sh_dc"] == pytest.approx(_official_expon_lr(step, 5e-3, 3e-3, 5000), rel=1e-12)
        assert lr["log_scales"] == pytest.approx(_official_expon_lr(step, 5e-3, 1e-3, 5000), rel=1e-12)
        assert lr["quats"] == pytest.approx(_official_expon_lr(step, 1e-3, 2e-4, 5000), rel=1e-12)
        assert lr["opacity_logits"] == 0.05


# ------------------------------------------------------------------------------------------------ NDC scaling
# 3DGS (Kerbl et al. 2023, Sec. 5.2) thresholds the view-space positional gradient in NDC units: INRIA's CUDA
# backward writes dL/dmean2D in NDC (d pixel / d ndc = W/2, H/2); gsplat's DefaultStrategy (absgrad=False,
# packed=False) multiplies the pixel-space means2d.grad by (W/2, H/2) before taking the norm, per camera and only
# where radii > 0, and averages over the views that saw the Gaussian. (gsplat also multiplies by n_cameras, to undo
# a loss averaged over a batch of views; latent3d does not: its statistic is that of the loss as given, so the
# batched tests below spell out that convention.) A test with grad_threshold = 0 cannot see any of this.

W_NDC, H_NDC = 64, 16  # W != H: a swapped (W/2, H/2) changes the numbers by 4x
THR = 1e-3


def _densify_model() -> GaussianModel:
    """Gaussians 0, 1 small (max scale 0.005 <= percent_dense 0.01 -> clone), 2, 3 large (0.2 -> split); opaque
    enough (0.5) that nothing is pruned."""
    n = 4
    means = torch.tensor([[0.0, 0.0, 0.0], [0.3, 0.0, 0.0], [0.0, 0.3, 0.0], [0.0, 0.0, 0.3]])
    log_s = torch.log(torch.tensor([0.005, 0.005, 0.2, 0.2]))[:, None].repeat(1, 3)
    quats = torch.tensor([[1.0, 0.0, 0.0, 0.0]] * n)
    return GaussianModel(means, log_s, quats, inverse_sigmoid(torch.full((n,), 0.5)), torch.zeros(n, 1, 3))


def _meta_with_grads(grads, radii) -> dict:
    means2d = torch.zeros(len(grads), len(grads[0]), 2, requires_grad=True)  # a leaf, as retain_grad() gives
    means2d.grad = torch.tensor(grads) / len(grads)  # of a loss averaged over the views: the controller scales by C
    return {"means2d": means2d, "radii": torch.tensor(radii, dtype=torch.int32), "width": W_NDC, "height": H_NDC}


@pytest.mark.numerics
def test_clone_split_decisions_use_ndc_scaled_view_space_gradients():
    """Pixel-space gradients built by hand for 2 views, W = 64, H = 16 (NDC scale 32 in x, 8 in y), threshold 1e-3;
    the table lists each view's own gradient (means2d.grad holds half of it: the loss is the mean over the 2 views).

    Gaussian | view 0 px grad    | view 1 px grad        | NDC norms      | average   | decision
    0 small  | (T/16, 0)         | (T/16, 0)             | 2T, 2T         | 2T        | clone
    1 small  | (0, T/16)         | (0, 100T), radius 0   | T/2, (unseen)  | T/2       | none
    2 large  | (T/40, 0)         | (0, T/4)              | 0.8T, 2T       | 1.4T      | split
    3 large  | (0.6T/32, 0)      | (0.6T/32, 0)          | 0.6T, 0.6T     | 0.6T      | none

    Without the scaling every average is <= T/16 (nothing densified); without the factor C = 2 Gaussian 2 gets 0.7T
    (not split); with W/2 and H/2 swapped Gaussian 1 reaches 2T
    (cloned); counting the unseen view would add 400T to Gaussian 1 (cloned); summing instead of averaging gives
    Gaussian 3 1.2T (split). Each of these breaks the expected decisions."""
    T = THR
    grads = [
        [[T / 16, 0.0], [0.0, T / 16], [T / 40, 0.0], [0.6 * T / 32, 0.0]],
        [[T / 16, 0.0], [0.0, 100 * T], [0.0, T / 4], [0.6 * T / 32, 0.0]],
    ]
    radii = [[3, 3, 3, 3], [3, 0, 3, 3]]
    ctrl = DensityController(DensifyConfig(grad_threshold=T, percent_dense=0.01, split_n=2), extent=1.0)
    ctrl.update(_meta_with_grads(grads, radii))
    # the statistic itself, by hand (float32 products/norms of exact-ish values: k = 8 of max|ref|)
    assert_close_f32(ctrl.avg_grad(), torch.tensor([2 * T, T / 2, 1.4 * T, 0.6 * T], dtype=torch.float64), 8, "avg")
    assert ctrl.count.tolist() == [2.0, 1.0, 2.0, 2.0]
    m = _densify_model()
    old = m.means.detach().clone()
    out = ctrl.densify_and_prune(m, None, generator=torch.Generator().manual_seed(0))
    assert out == {"cloned": 1, "split": 1, "pruned": 0, "num": 6}
    # survivors: 0, 1, 3 (the split parent 2 is replaced), the clone of 0, then two samples around 2
    assert torch.equal(m.means[:4].detach(), old[[0, 1, 3, 0]])
    assert torch.all((m.means[4:] - old[2]).norm(dim=-1) < 4 * 0.2 * 3**0.5)


@pytest.mark.numerics
def test_densification_sees_ndc_gradients_of_a_real_render():
    """End to end: one camera (C = 1, where latent3d, gsplat and INRIA agree exactly), a render of two Gaussians and
    a loss weighted along x (so the pixel gradient is mostly horizontal). The controller's statistic is
    ||(gx W/2, gy H/2)|| of the rasterizer's means2d.grad; the threshold sits between it and both the unscaled norm
    ||(gx, gy)|| and the swapped ||(gx H/2, gy W/2)||, so the small Gaussians are cloned, and would not be without the
    NDC scaling or with W/2 and H/2 swapped."""
    means = torch.tensor([[-0.6, 0.03, 2.0], [0.5, -0.05, 2.0]])  # ~9 px left / right of the centre, apart
    log_s = torch.log(torch.tensor([[0.02, 0.01, 0.01], [0.01, 0.03, 0.01]]))  # anisotropic, 0.3-0.45 px std
    m = GaussianModel(means, log_s, torch.tensor([[1.0, 0.0, 0.0, 0.0]] * 2), inverse_sigmoid(torch.full((2,), 0.8)),
                      torch.full((2, 1, 3), 0.5))  # fmt: skip
    V = torch.eye(4)[None]
    K = torch.tensor([[[30.0, 0.0, 32.0], [0.0, 30.0, 8.0], [0.0, 0.0, 1.0]]])
    img, _, meta = m.render(V, K, W_NDC, H_NDC)
    meta["means2d"].retain_grad()
    w = torch.linspace(0.0, 1.0, W_NDC)[None, None, :, None] ** 2
    (img * w).sum().backward()
    g = meta["means2d"].grad[0].double()  # [N, 2] pixel-space dL/dmeans2d
    assert bool((meta["radii"] > 0).all()) and bool((g[:, 0].abs() > 3 * g[:, 1].abs()).all())  # seen; mostly x
    ndc = (g * torch.tensor([W_NDC / 2, H_NDC / 2], dtype=torch.float64)).norm(dim=-1)
    swapped = (g * torch.tensor([H_NDC / 2, W_NDC / 2], dtype=torch.float64)).norm(dim=-1)
    plain = g.norm(dim=-1)
    thr = float(torch.maximum(plain, swapped).max().sqrt() * ndc.min().sqrt())  # geometric middle of the gap
    assert float(torch.maximum(plain, swapped).max()) < 0.7 * thr and thr < 0.7 * float(ndc.min())  # margin both ways
    ctrl = DensityController(DensifyConfig(grad_threshold=thr, percent_dense=0.05), extent=1.0)
    ctrl.update(meta)
    assert_close_f32(ctrl.avg_grad(), ndc, 8, "NDC statistic")  # float32 products and a 2-norm
    out = ctrl.densify_and_prune(m, None)
    assert out == {"cloned": 2, "split": 0, "pruned": 0, "num": 4}


@pytest.mark.numerics
def test_a_batch_of_views_gives_the_statistic_of_one_view_steps():
    """A 2-view batch whose loss is the mean of the views' losses accumulates the same per-Gaussian statistic as two
    one-view steps on each view's own loss (gsplat's n_cameras factor): without the factor C it is half of it."""
    m = GaussianModel.random(60, extent=0.5, sh_degree=0, generator=torch.Generator().manual_seed(0), opacity=0.5)
    V, K = orbit_cameras(2.0, 10.0, [0.0, 70.0], 0.8, 24, 24)
    target = torch.rand(2, 24, 24, 3, generator=torch.Generator().manual_seed(1))
    batch, single = DensityController(), DensityController()
    img, _, meta = m.render(V, K, 24, 24)
    meta["means2d"].retain_grad()
    torch.stack([(img[v] - target[v]).pow(2).mean() for v in range(2)]).mean().backward()
    batch.update(meta)
    for v in range(2):
        img, _, meta = m.render(V[v : v + 1], K[v : v + 1], 24, 24)
        meta["means2d"].retain_grad()
        (img[0] - target[v]).pow(2).mean().backward()
        single.update(meta)
    assert torch.equal(batch.count, single.count) and float(single.count.sum()) > 60
    ref = single.avg_grad().double()
    assert float(ref.max()) > 0
    # the same float32 operations up to exact scalings by 2 (measured: equal bit for bit, default/avx2/avx512)
    assert_close_f32(batch.avg_grad(), ref, 8, "batch vs one-view statistic")
