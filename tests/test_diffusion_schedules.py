"""Schedules and parameterisation conversions of latent3d.diffusion.schedules."""

import math

import pytest
import torch

from latent3d.diffusion import schedules as S

pytestmark = pytest.mark.numerics  # float64 closed forms (1e-10 .. 1e-12), and diffusers' float32 tables

KINDS = ["linear", "scaled_linear", "squaredcos_cap_v2"]
EPS32 = torch.finfo(torch.float32).eps


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("beta_start,beta_end", [(0.00085, 0.012), (0.0001, 0.02)])
def test_alphas_cumprod_matches_diffusers(kind, beta_start, beta_end):
    diffusers = pytest.importorskip("diffusers")
    ours = S.alphas_cumprod(kind, 1000, beta_start, beta_end)
    assert ours.dtype == torch.float64 and ours.shape == (1000,)
    for cls in (diffusers.DDIMScheduler, diffusers.DDPMScheduler):
        ref = cls(num_train_timesteps=1000, beta_schedule=kind, beta_start=beta_start, beta_end=beta_end).alphas_cumprod
        # diffusers works in float32, ours in float64. alpha_bar_t is a product of t + 1 factors (1 - beta_i), each
        # rounded to float32 and each product rounded again: relative error <= 2 (t + 1) * eps32 / 2 (Higham, Lemma
        # 3.1), whatever the CPU (the cosine schedule's last betas, clipped to 0.999, add one error of <= 1e3 eps32 / 2
        # where t + 1 ~ 1e3). Measured <= 0.19 of that (4.7e-7 absolute). Per element, an off-by-one in t (a change
        # of abar_t * beta_t, beta_t >= 8.5e-4 or >= 1e-4 + 2e-5 t) is >= 7x this bound, a wrong beta formula more.
        bound = (torch.arange(1000, dtype=torch.float64) + 1) * EPS32 * ours
        err = (ours - ref.double()).abs()
        assert torch.all(err <= bound), (kind, float((err / bound).max()))
        assert torch.all((ours[1:] - ref[:-1].double()).abs() > bound[1:])  # an off-by-one is seen at every t


def test_alphas_cumprod_closed_forms():
    # scaled_linear: beta_i = (sqrt(b0) + i/(T-1) (sqrt(b1) - sqrt(b0)))^2; check the product directly (float64, 1e-12)
    T, b0, b1 = 10, 0.00085, 0.012
    a = S.alphas_cumprod("scaled_linear", T, b0, b1)
    prod = 1.0
    for i in range(T):
        beta = (b0**0.5 + i / (T - 1) * (b1**0.5 - b0**0.5)) ** 2
        prod *= 1 - beta
        assert abs(a[i].item() - prod) < 1e-12
    # cosine: alpha_bar_t = f(t+1)/f(0) while no beta is clipped (Nichol & Dhariwal eq. 17)
    f = lambda u: math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    c = S.alphas_cumprod("squaredcos_cap_v2", 1000)
    for t in (0, 10, 500, 900):
        assert abs(c[t].item() - f((t + 1) / 1000) / f(0)) < 1e-10
    assert torch.all(c[1:] < c[:-1])
    with pytest.raises(ValueError):
        S.alphas_cumprod("cosine")


def test_karras_sigmas():
    n, smin, smax, rho = 32, 0.002, 80.0, 7.0
    s = S.karras_sigmas(n, smin, smax, rho, dtype=torch.float64)
    assert s.shape == (n + 1,) and s[-1] == 0
    assert torch.all(s[1:] < s[:-1])  # strictly decreasing
    for i in range(n):  # Karras et al. eq. 5, closed form, rel. 1e-12
        ref = (smax ** (1 / rho) + i / (n - 1) * (smin ** (1 / rho) - smax ** (1 / rho))) ** rho
        assert abs(s[i].item() - ref) <= 1e-12 * ref
    assert abs(s[0].item() - smax) < 1e-12 and abs(s[n - 1].item() - smin) < 1e-15


def test_sigma_alpha_bar_roundtrip():
    a = S.alphas_cumprod("scaled_linear")
    sig = S.alpha_bar_to_sigma(a)
    torch.testing.assert_close(sig, ((1 - a) / a).sqrt(), atol=0, rtol=1e-12)
    torch.testing.assert_close(S.sigma_to_alpha_bar(sig), a, atol=0, rtol=1e-12)
    # SD's terminal sigma is ~14.6 and first ~0.029 (well-known numbers)
    assert 14.5 < sig[-1].item() < 14.7 and 0.0291 < sig[0].item() < 0.0292


@pytest.mark.parametrize("shape_a", ["scalar", "batch"])
def test_prediction_conversions(shape_a):
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(4, 3, 5, 5, generator=g, dtype=torch.float64)
    eps = torch.randn(4, 3, 5, 5, generator=g, dtype=torch.float64)
    if shape_a == "scalar":
        a = torch.tensor(0.37, dtype=torch.float64)
    else:
        a = S.expand_like(torch.tensor([0.9, 0.5, 0.1, 0.004], dtype=torch.float64), x0)
        assert a.shape == (4, 1, 1, 1)
    x_t = a.sqrt() * x0 + (1 - a).sqrt() * eps
    v = a.sqrt() * eps - (1 - a).sqrt() * x0  # closed form of v (Salimans & Ho 2022)
    close = lambda p, q: torch.testing.assert_close(p, q, atol=1e-10, rtol=1e-10)  # noqa: E731
    close(S.eps_to_x0(x_t, eps, a), x0)
    close(S.x0_to_eps(x_t, x0, a), eps)
    close(S.v_to_eps(x_t, v, a), eps)
    close(S.v_to_x0(x_t, v, a), x0)
    close(S.eps_to_v(x_t, eps, a), v)
    close(S.x0_to_v(x_t, x0, a), v)
    for kind, out in (("epsilon", eps), ("v_prediction", v), ("sample", x0)):
        e, x = S.to_eps_x0(x_t, out, a, kind)
        close(e, eps)
        close(x, x0)
    with pytest.raises(ValueError):
        S.to_eps_x0(x_t, eps, a, "score")


def test_conversions_with_wrong_model_output_differ():
    # guard against a conversion that ignores its input: a perturbed eps gives a different x0
    a, x_t, eps = 0.5, torch.ones(2, 3), torch.zeros(2, 3)
    assert not torch.allclose(S.eps_to_x0(x_t, eps, a), S.eps_to_x0(x_t, eps + 0.1, a))
