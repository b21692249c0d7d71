"""SDS and ISM gradients equal a step-by-step reference written with explicit UNet calls and DDIM formulas."""

import torch
from torch.testing import assert_close

from latent3d.distill import ISMSettings, SDSSettings, distillation_loss, ism_grad, ism_timestep, sds_grad
from latent3d.priors import load_prior

TOL = dict(atol=1e-5, rtol=1e-4)


def _unet_eps(prior, x, t, emb):
    return prior.unet(x, torch.full((x.shape[0],), t), encoder_hidden_states=emb).sample


def test_ism_gradient_matches_step_by_step_reference(tiny_sd_dir):
    prior = load_prior(tiny_sd_dir)  # SD layout: steps_offset = 1, set_alpha_to_one = False
    g = torch.Generator().manual_seed(0)
    z = torch.randn(2, 4, 16, 16, generator=g)
    cond, uncond = prior.encode_text(["a red snowman", ""]).split(1)
    s = ISMSettings(guidance_scale=7.5, xs_delta_t=200, xs_inv_steps=5, offset_noise=0.1)
    grad, info = ism_grad(prior, z, cond, uncond, t_index=500, delta_t=100, s=s, generator=torch.Generator().manual_seed(7))

    # reference: indices 0 -> 200 -> 400 (= s) -> 500 (= t), timesteps = index + steps_offset (1)
    g2 = torch.Generator().manual_seed(7)
    noise = torch.randn(z.shape, generator=g2) + 0.1 * torch.randn(1, 4, 1, 1, generator=g2)
    a = prior.alphas_cumprod.double()
    ts = [1, 201, 401, 501]
    x = a[ts[0]].sqrt() * z + (1 - a[ts[0]]).sqrt() * noise
    u = uncond.expand(2, -1, -1)
    for cur, nxt in zip(ts, ts[1:]):
        eps = _unet_eps(prior, x.float(), cur, u).double()
        x0 = (x - (1 - a[cur]).sqrt() * eps) / a[cur].sqrt()
        x = a[nxt].sqrt() * x0 + (1 - a[nxt]).sqrt() * eps  # DDIM eq. 12, eta = 0, run upwards
        target = eps  # last one: eps(x_s, s, empty)
    e_u = _unet_eps(prior, x.float(), 501, u).double()
    e_c = _unet_eps(prior, x.float(), 501, cond.expand(2, -1, -1)).double()
    ref = ((1 - a[501]) / a[501]).sqrt() * (e_u + 7.5 * (e_c - e_u) - target)
    assert info["schedule"] == ts and info["t"] == 501 and info["s"] == 401
    assert_close(grad.double(), ref, **TOL)


def test_sds_gradient_matches_reference(tiny_sd_dir):
    prior = load_prior(tiny_sd_dir)
    z = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    cond, uncond = prior.encode_text(["a chair", ""]).split(1)
    grad, info = sds_grad(prior, z, cond, uncond, 300, SDSSettings(guidance_scale=10.0),
                          generator=torch.Generator().manual_seed(3))  # fmt: skip
    noise = torch.randn(z.shape, generator=torch.Generator().manual_seed(3))
    a = prior.alphas_cumprod[300]
    x_t = a.sqrt() * z + (1 - a).sqrt() * noise
    e_u, e_c = _unet_eps(prior, x_t, 300, uncond), _unet_eps(prior, x_t, 300, cond)
    assert_close(grad, (1 - a) * (e_u + 10.0 * (e_c - e_u) - noise), **TOL)


def test_distillation_loss_has_the_given_gradient():
    z = torch.randn(2, 4, 8, 8, requires_grad=True)
    grad = torch.randn(2, 4, 8, 8)
    loss = distillation_loss(z, grad)
    loss.backward()
    assert_close(z.grad, grad)
    assert_close(loss, 0.5 * grad.pow(2).sum())


def test_ism_warmup_schedule():
    s = ISMSettings()
    g = torch.Generator().manual_seed(0)
    early = [ism_timestep(s, 0, g) for _ in range(400)]
    late = [ism_timestep(s, 5000, g) for _ in range(400)]
    assert {d for _, d in early} == {100} and {d for _, d in late} == {80}  # delta_t anneals 100 -> 80
    assert max(t for t, _ in early) > 900 and max(t for t, _ in late) < 500  # t range 980 -> 500
    assert min(t for t, _ in early + late) >= 20
