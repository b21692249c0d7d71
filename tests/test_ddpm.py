"""The DDPM training objective (Ho et al. 2020, eq. 4 and 14; v target of Salimans & Ho 2022, Sec. 4) against
diffusers' DDPMScheduler: ``add_noise`` gives x_t, ``get_velocity`` the v target. All in float64: the two compute
the same products with ``sqrt`` vs ``** 0.5``, which differ by at most an ulp, so the bounds are a few eps64 of the
reference's magnitude."""

import pytest
import torch
from torch.testing import assert_close

from latent3d.diffusion import ddpm_loss, ddpm_target, q_sample
from tolerances import EPS64

SCHEDULES = [dict(beta_schedule="squaredcos_cap_v2"),  # the object prior's
             dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)]  # SD's / LDM3D's  # fmt: skip


def _case(shape=(6, 3, 5, 4), seed=0):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(shape, generator=g, dtype=torch.float64)
    noise = torch.randn(shape, generator=g, dtype=torch.float64)
    t = torch.tensor([0, 1, 250, 500, 998, 999])[: shape[0]]
    return x0, noise, t


def _atol(ref: torch.Tensor, k: float = 8) -> float:
    return k * EPS64 * float(ref.abs().max())


@pytest.mark.parametrize("sched_kw", SCHEDULES)
def test_q_sample_and_targets_match_diffusers(sched_kw):
    from diffusers import DDPMScheduler

    sched = DDPMScheduler(**sched_kw)
    x0, noise, t = _case()
    a = sched.alphas_cumprod.double()[t].reshape(-1, 1, 1, 1)
    ref_xt = sched.add_noise(x0, noise, t)
    assert_close(q_sample(x0, noise, a), ref_xt, atol=_atol(ref_xt), rtol=0)
    ref_v = sched.get_velocity(x0, noise, t)
    assert_close(ddpm_target(x0, noise, a, "v_prediction"), ref_v, atol=_atol(ref_v), rtol=0)
    assert torch.equal(ddpm_target(x0, noise, a, "epsilon"), noise)
    assert torch.equal(ddpm_target(x0, noise, a, "sample"), x0)
    with pytest.raises(ValueError, match="prediction_type"):
        ddpm_target(x0, noise, a, "velocity")  # type: ignore[arg-type]


@pytest.mark.parametrize("sched_kw", SCHEDULES)
@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_ddpm_loss_is_the_simple_loss_on_diffusers_x_t(sched_kw, prediction_type):
    """The network is called on diffusers' x_t with the timesteps and the conditioning unchanged, and the loss is the
    mean squared error to diffusers' target (eps, or get_velocity's v)."""
    from diffusers import DDPMScheduler

    sched = DDPMScheduler(**sched_kw, prediction_type=prediction_type)
    x0, noise, t = _case()
    cond = torch.randn(6, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)  # e.g. text features
    seen = {}

    def net(x_t, t_in, c):  # [B, C, H, W], [B], [B, 2] -> [B, C, H, W]
        seen.update(x_t=x_t, t=t_in, c=c)
        return 0.5 * x_t + c[:, :1, None, None] * (t_in.double() / 1000).reshape(-1, 1, 1, 1)

    loss = ddpm_loss(net, x0, t, noise, sched.alphas_cumprod.double(), prediction_type, c=cond)
    ref_xt = sched.add_noise(x0, noise, t)
    target = noise if prediction_type == "epsilon" else sched.get_velocity(x0, noise, t)
    ref = (net(ref_xt, t, cond) - target).pow(2).mean()
    assert_close(seen["x_t"], ref_xt, atol=_atol(ref_xt), rtol=0)
    assert seen["t"] is t and seen["c"] is cond
    assert loss.shape == () and loss.dtype == torch.float64
    # the loss is a mean of squares of O(1) terms: its error is a few eps64 relative
    assert_close(loss, ref, atol=0, rtol=64 * EPS64)


def test_ddpm_loss_any_rank_and_a_perfect_prediction_scores_zero():
    """A 5-D input broadcasts alpha_bar per sample; a net that returns the exact target (computed from x_t alone, with
    x0 = (x_t - sqrt(1 - a) eps) / sqrt(a) for eps, v = (sqrt(a) x_t - x0) / sqrt(1 - a)) has loss ~ 0, while
    predicting zeros scores E[target^2] ~ 1."""
    from latent3d.diffusion import alphas_cumprod

    x0, noise, _ = _case((4, 2, 3, 3, 3))
    t = torch.tensor([10, 200, 600, 900])
    abar = alphas_cumprod("squaredcos_cap_v2")  # [1000] float64
    a = abar[t].reshape(-1, 1, 1, 1, 1)
    for pt, exact in (("epsilon", lambda x_t: (x_t - a.sqrt() * x0) / (1 - a).sqrt()),
                      ("v_prediction", lambda x_t: (a.sqrt() * x_t - x0) / (1 - a).sqrt()),
                      ("sample", lambda x_t: x0)):  # fmt: skip
        assert ddpm_loss(lambda x_t, t_: exact(x_t), x0, t, noise, abar, prediction_type=pt).item() < 1e-20
        zero = ddpm_loss(lambda x_t, t_: torch.zeros_like(x_t), x0, t, noise, abar, prediction_type=pt)
        assert_close(zero, ddpm_target(x0, noise, a, pt).pow(2).mean(), atol=0, rtol=0)
        assert 0.3 < zero.item() < 3
