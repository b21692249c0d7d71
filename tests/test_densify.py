"""Adaptive density control: clone / split / prune / opacity reset, Adam state bookkeeping, lr schedule."""

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
    update_means_lr,
)
from latent3d.render.gaussians import GaussianModel, inverse_sigmoid


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


def test_clone_split_prune_counts_and_adam_state_follow():
    m, opt = _model_with_state()
    old = {n: getattr(m, n).detach().clone() for n in GaussianModel.param_names}
    old_state = {g["name"]: opt.state[g["params"][0]]["exp_avg"].clone() for g in opt.param_groups}
    ctrl = DensityController(DensifyConfig(grad_threshold=1e-3, percent_dense=0.01, split_n=2), extent=1.0)
    _fake_stats(ctrl, [5e-3, 5e-3, 0.0, 1e-4])  # 0 -> clone, 1 -> split, 2 -> pruned (opacity), 3 untouched
    out = ctrl.densify_and_prune(m, opt, generator=torch.Generator().manual_seed(0))
    assert out == {"cloned": 1, "split": 1, "pruned": 1, "num": 5}
    # survivors in order: 0, 3, clone of 0, two halves of 1
    torch.testing.assert_close(m.means[:3].detach(), old["means"][[0, 3, 0]])
    torch.testing.assert_close(m.scales[3:].detach(), (old["log_scales"][[1, 1]].exp() / 1.6))
    assert torch.all((m.means[3:] - old["means"][1]).norm(dim=-1) < 1.0)  # sampled around the parent
    torch.testing.assert_close(m.sh[3:].detach(), torch.cat([old["sh_dc"], old["sh_rest"]], 1)[[1, 1]])
    for g in opt.param_groups:
        p = g["params"][0]
        assert p is getattr(m, g["name"]) and p.shape[0] == 5
        st = opt.state[p]
        assert st["exp_avg"].shape == p.shape == st["exp_avg_sq"].shape
        torch.testing.assert_close(st["exp_avg"][:2], old_state[g["name"]][[0, 3]])
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


def test_opacity_reset_clamps_and_zeroes_moments():
    m, opt = _model_with_state()
    before = m.opacities.detach().clone()
    reset_opacity(m, opt, 0.01)
    torch.testing.assert_close(m.opacities.detach(), before.clamp(max=0.01))  # lower ones unchanged
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
    assert m.num > 50 and float(m.opacities.detach().max()) <= 0.01 + 1e-6


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
    assert update_means_lr(opt, 15_000, lrs, extent=2.0) == pytest.approx(2.0 * math.sqrt(1.6e-4 * 1.6e-6))
