"""SDS and ISM gradients equal a step-by-step reference written with explicit UNet calls and DDIM formulas.

The parity tests run the tiny prior in float64 (``load_prior(..., dtype=torch.float64)``: predictions, schedule and
gradient in float64), so that their bounds do not depend on the CPU's float32 kernels (issue 12); the default float32
path is then checked against the same float64 reference with a bound derived from float32's round-off."""

import pytest
import torch
from torch.testing import assert_close

from latent3d.distill import ISMSettings, SDSSettings, distillation_loss, ism_grad, ism_timestep, sds_grad
from latent3d.priors import load_prior

from tolerances import EPS32, EPS64, rel_err

# float64 parity: the code under test and the reference evaluate the same float64 UNet, in other batch layouts
# (cfg_batched concatenates [uncond; cond]) and with the DDIM algebra written differently, so each element can differ
# by the float64 rounding of ~1e3 operations on values of magnitude max|ref|: <= 1e3 * eps64 * max|ref| ~ 2e-13 *
# max|ref|, on any CPU (measured <= 1.4e-14). We allow 1e-11 * max|ref|, ~1e8 times below what a wrong timestep,
# weight or target changes (> 1e-3 relatively; asserted on a shifted timestep below).


def _assert_f64_close(got, ref):
    assert got.dtype == torch.float64 and ref.dtype == torch.float64
    assert_close(got, ref, atol=1e-11 * float(ref.abs().max()), rtol=0)


def _unet_eps(prior, x, t, emb):
    return prior.unet(x, torch.full((x.shape[0],), t), encoder_hidden_states=emb).sample


def _ism_reference(prior, z, cond, uncond, seed, inverse=None, dgs=1.0, eta=0.0):
    """ISM by hand (LucidDreamer eq. 12-14; official ``train_step`` + ``add_noise_with_cfg`` + ``ddim_step``), in the
    prior's dtype: indices 0 -> 200 -> 400 (= s) -> 500 (= t), timesteps = index + steps_offset (1), guidance 7.5,
    offset noise 0.1. ``uncond`` is the negative prompt, ``inverse`` the inversion prompt (default ``uncond``);
    ``dgs > 1`` is the official reverse CFG ``eps(inverse) + dgs (eps(negative) - eps(inverse))``; ``eta > 0`` the
    official noisy inversion (sigma^2 = min((1 - a_n) / 2, eta var)) on the steps before s only."""
    g2 = torch.Generator().manual_seed(seed)
    noise = torch.randn(z.shape, generator=g2) + 0.1 * torch.randn(1, 4, 1, 1, generator=g2)  # float32, as drawn
    dt = prior.unet.dtype
    a = prior.alphas_cumprod.to(dt)
    ts = [1, 201, 401, 501]
    x = a[ts[0]].sqrt() * z.to(dt) + (1 - a[ts[0]]).sqrt() * noise.to(dt)
    u = uncond.expand(2, -1, -1).to(dt)
    inv = u if inverse is None else inverse.expand(2, -1, -1).to(dt)
    for cur, nxt in zip(ts, ts[1:]):
        eps = _unet_eps(prior, x, cur, inv)
        if dgs > 1:
            eps = eps + dgs * (_unet_eps(prior, x, cur, u) - eps)
        x0 = (x - (1 - a[cur]).sqrt() * eps) / a[cur].sqrt()
        var = 0.0
        if eta > 0 and nxt != ts[-1]:  # the last step s -> t is deterministic in the official code
            var = min(float((1 - a[nxt]) / 2), eta * abs(float((1 - a[nxt]) / (1 - a[cur]) * (1 - a[cur] / a[nxt]))))
        x = a[nxt].sqrt() * x0 + (1 - a[nxt] - var) ** 0.5 * eps  # DDIM eq. 12, run upwards
        if var > 0:
            x = x + var**0.5 * torch.randn(x.shape, generator=g2, dtype=dt)
        target = eps  # last one: eps(x_s, s, inverse)
    e_u = _unet_eps(prior, x, 501, u)
    e_c = _unet_eps(prior, x, 501, cond.expand(2, -1, -1).to(dt))
    return ts, ((1 - a[501]) / a[501]).sqrt() * (e_u + 7.5 * (e_c - e_u) - target)


S_ISM = ISMSettings(guidance_scale=7.5, xs_delta_t=200, xs_inv_steps=5, offset_noise=0.1)


@pytest.mark.numerics
@torch.no_grad()
def test_ism_gradient_matches_step_by_step_reference(tiny_sd_dir):
    prior = load_prior(tiny_sd_dir, dtype=torch.float64)  # SD layout: steps_offset = 1, set_alpha_to_one = False
    assert prior.compute_dtype == torch.float64 and prior.alphas_cumprod.dtype == torch.float64
    z = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    cond, uncond = prior.encode_text(["a red snowman", ""]).split(1)
    grad, info = ism_grad(prior, z, cond, uncond, t_index=500, delta_t=100, s=S_ISM,
                          generator=torch.Generator().manual_seed(7))  # fmt: skip
    ts, ref = _ism_reference(prior, z, cond, uncond, 7)
    assert info["schedule"] == ts and info["t"] == 501 and info["s"] == 401
    _assert_f64_close(grad, ref)
    # the bound separates real mistakes: t off by one index (t = 502, an interval of 101) moves the gradient by 0.16
    shifted, _ = ism_grad(prior, z, cond, uncond, t_index=501, delta_t=101, s=S_ISM,
                          generator=torch.Generator().manual_seed(7))  # fmt: skip
    assert rel_err(shifted, ref) > 1e-3


@pytest.mark.numerics
@torch.no_grad()
def test_ism_gradient_of_the_float32_prior_is_the_float64_one_to_float32_precision(tiny_sd_dir):
    """The default (float32) path: the same gradient as the float64 reference, norm-wise, to float32 round-off. The
    chain has 6 UNet evaluations (~40 layers each, reductions of <= 72 terms) whose float32 errors (~eps32 relative
    per layer, growing like sqrt(#layers) to ~1e2 eps32 per evaluation) are carried through 3 DDIM steps and the
    guided difference e_u + 7.5 (e_c - e_u) - target, whose cancellation amplifies them by ~|7.5 e_c| / |grad| <= 30:
    k = 1e2 * 30 = 3e3 eps32 = 3.6e-4 (measured <= 53 eps32 under ATEN_CPU_CAPABILITY=default/avx2/avx512 x 1/2
    threads and ONEDNN_MAX_CPU_ISA=AVX2). A timestep off by one is 0.16 off (see above)."""
    p64 = load_prior(tiny_sd_dir, dtype=torch.float64)
    p32 = load_prior(tiny_sd_dir)
    assert p32.compute_dtype == torch.float32
    z = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    c64, u64 = p64.encode_text(["a red snowman", ""]).split(1)
    c32, u32 = p32.encode_text(["a red snowman", ""]).split(1)
    grad, _ = ism_grad(p32, z, c32, u32, t_index=500, delta_t=100, s=S_ISM, generator=torch.Generator().manual_seed(7))
    _, ref = _ism_reference(p64, z, c64, u64, 7)
    assert grad.dtype == torch.float32
    assert rel_err(grad, ref) < 3e3 * EPS32


@pytest.mark.numerics
@torch.no_grad()
def test_ism_with_a_negative_prompt_and_reverse_cfg_matches_the_official_formulas(tiny_sd_dir):
    """The negative prompt is the unconditional branch of the guided score; the inversion keeps the empty prompt,
    and with denoise_guidance_scale = 2 it is eps("") + 2 (eps(negative) - eps("")) (official add_noise_with_cfg)."""
    prior = load_prior(tiny_sd_dir, dtype=torch.float64)
    z = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    cond, neg, empty = prior.encode_text(["a red snowman", "blurry, low quality", ""]).split(1)
    s = ISMSettings(guidance_scale=7.5, xs_delta_t=200, xs_inv_steps=5, offset_noise=0.1, denoise_guidance_scale=2.0)
    grad, _ = ism_grad(prior, z, cond, neg, 500, 100, s, torch.Generator().manual_seed(7), inverse=empty)
    _, ref = _ism_reference(prior, z, cond, neg, 7, inverse=empty, dgs=2.0)
    _assert_f64_close(grad, ref)
    # the reverse CFG the wrong way round (eps(neg) + 2 (eps("") - eps(neg))) is far off
    _, swapped = _ism_reference(prior, z, cond, empty, 7, inverse=neg, dgs=2.0)
    assert rel_err(swapped, ref) > 1e-2
    plain, _ = ism_grad(prior, z, cond, neg, 500, 100, S_ISM, torch.Generator().manual_seed(7), inverse=empty)
    _assert_f64_close(plain, _ism_reference(prior, z, cond, neg, 7, inverse=empty)[1])


@pytest.mark.numerics
@torch.no_grad()
def test_ism_noisy_inversion_follows_lucid_dreamers_ddim_step(tiny_sd_dir):
    """xs_eta = 0.5: sigma^2 = min((1 - a_n)/2, eta var) on 1 -> 201 -> 401, none on the last step 401 -> 501."""
    prior = load_prior(tiny_sd_dir, dtype=torch.float64)
    z = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    cond, empty = prior.encode_text(["a red snowman", ""]).split(1)
    s = ISMSettings(guidance_scale=7.5, xs_delta_t=200, xs_inv_steps=5, offset_noise=0.1, xs_eta=0.5)
    grad, _ = ism_grad(prior, z, cond, empty, 500, 100, s, torch.Generator().manual_seed(7))
    _assert_f64_close(grad, _ism_reference(prior, z, cond, empty, 7, eta=0.5)[1])
    assert rel_err(grad, _ism_reference(prior, z, cond, empty, 7)[1]) > 1e-2  # the noise matters


def _sds_reference(prior, z, cond, uncond, t, scale, seed):
    """SDS by hand (DreamFusion eq. 3, w = 1 - a_t) in the prior's dtype."""
    dt = prior.unet.dtype
    noise = torch.randn(z.shape, generator=torch.Generator().manual_seed(seed)).to(dt)
    a = prior.alphas_cumprod[t].to(dt)
    x_t = a.sqrt() * z.to(dt) + (1 - a).sqrt() * noise
    e_u, e_c = _unet_eps(prior, x_t, t, uncond.to(dt)), _unet_eps(prior, x_t, t, cond.to(dt))
    return (1 - a) * (e_u + scale * (e_c - e_u) - noise)


@pytest.mark.numerics
@torch.no_grad()
def test_sds_gradient_matches_reference(tiny_sd_dir):
    prior = load_prior(tiny_sd_dir, dtype=torch.float64)
    z = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    cond, uncond = prior.encode_text(["a chair", ""]).split(1)
    grad, info = sds_grad(prior, z, cond, uncond, 300, SDSSettings(guidance_scale=10.0),
                          generator=torch.Generator().manual_seed(3))  # fmt: skip
    ref = _sds_reference(prior, z, cond, uncond, 300, 10.0, 3)
    _assert_f64_close(grad, ref)  # bound: see _assert_f64_close (one guided UNet evaluation here)
    assert info["t"] == 300 and info["w"] == pytest.approx(float(1 - prior.alphas_cumprod[300]), rel=1e-15)
    other = _sds_reference(prior, z, cond, uncond, 301, 10.0, 3)  # one timestep later: 2.3e-2 off
    assert rel_err(other, ref) > 1e-3
    # the float32 prior gives the same gradient to float32 precision: one guided UNet evaluation (~1e2 eps32, see
    # above) amplified by the cancellation of 10 (e_c - e_u) - noise (<= 30): k = 3e3 (measured <= 13 eps32)
    p32 = load_prior(tiny_sd_dir)
    c32, u32 = p32.encode_text(["a chair", ""]).split(1)
    g32, _ = sds_grad(p32, z, c32, u32, 300, SDSSettings(guidance_scale=10.0),
                      generator=torch.Generator().manual_seed(3))  # fmt: skip
    assert g32.dtype == torch.float32 and rel_err(g32, ref) < 3e3 * EPS32


@pytest.mark.numerics
def test_distillation_loss_has_the_given_gradient():
    # float64: d/dz 0.5 ||z - sg(z - grad)||^2 = z - (z - grad): two correctly rounded subtractions, each off by
    # <= eps64 / 2 * (|z| + |grad|)
    g = torch.Generator().manual_seed(0)
    z = torch.randn(2, 4, 8, 8, generator=g, dtype=torch.float64, requires_grad=True)
    grad = torch.randn(2, 4, 8, 8, generator=g, dtype=torch.float64)
    loss = distillation_loss(z, grad)
    loss.backward()
    assert_close(z.grad, grad, atol=2 * EPS64 * float((z.detach().abs() + grad.abs()).max()), rtol=0)
    # the value: a sum of 512 squares, <= 512 eps64 relative in any summation order
    assert_close(loss, 0.5 * grad.pow(2).sum(), atol=0, rtol=512 * EPS64)


def test_ism_warmup_schedule():
    s = ISMSettings()
    g = torch.Generator().manual_seed(0)
    early = [ism_timestep(s, 0, g) for _ in range(400)]
    late = [ism_timestep(s, 5000, g) for _ in range(400)]
    assert {d for _, d in early} == {100} and {d for _, d in late} == {80}  # delta_t anneals 100 -> 80
    assert max(t for t, _ in early) > 900 and max(t for t, _ in late) < 500  # t range 980 -> 500
    assert min(t for t, _ in early + late) >= 20
