"""LDM3D autoencoder: widening keeps the RGB model exactly, lossless 6c packing, PatchGAN / hinge / adaptive weight
closed forms, the frozen-discriminator gradient split, and that the loss fits a handful of images."""

import pytest
import torch
from torch.testing import assert_close

from latent3d.nets.losses import pyramid_l1
from latent3d.nets.rgbd_vae import (
    AELossConfig,
    PatchDiscriminator,
    RGBDAutoencoderWithLoss,
    adaptive_weight,
    hinge_d_loss,
    hinge_g_loss,
    make_rgb_vae,
    new_param_count,
    rgbd_to_vae_input,
    vae_output_to_rgbd,
    widen_vae,
)


def _n(m):
    return sum(p.numel() for p in m.parameters())


@pytest.mark.numerics
@pytest.mark.parametrize("variant", ["6c", "4c"])
def test_widened_vae_reproduces_the_rgb_vae(variant):
    torch.manual_seed(0)
    rgb_vae = make_rgb_vae((8, 16), sample_size=16).double().eval()
    wide = widen_vae(rgb_vae, variant).eval()
    c = 6 if variant == "6c" else 4
    assert wide.config.in_channels == wide.config.out_channels == c and wide.dtype == torch.float64
    assert _n(wide) - _n(rgb_vae) == new_param_count(8, variant)
    x = torch.rand(2, 3, 16, 16, dtype=torch.float64) * 2 - 1
    with torch.no_grad():
        ref = rgb_vae.decode(rgb_vae.encode(x).latent_dist.mean).sample
        for depth in (torch.zeros(2, c - 3, 16, 16), torch.rand(2, c - 3, 16, 16)):  # new inputs start ignored
            out = wide.decode(wide.encode(torch.cat([x, depth.double()], 1)).latent_dist.mean).sample
            # RGB: the same weights on the same inputs, plus exact zeros (zero weights x finite inputs), but a
            # convolution over 4 or 6 input channels may sum in another order than over 3 on another CPU: float64,
            # ~30 layers of <= 144-term sums, <= ~1e3 eps64 ~ 2e-13 relative; bound 1e-11 * max|ref| (a wrongly
            # copied weight changes the output by >= 1e-3)
            assert_close(out[:, :3], ref, atol=1e-11 * float(ref.abs().max()), rtol=0)
            assert torch.all(out[:, 3:] == 0)  # zero weights and bias: exactly 0 on every CPU
    # only conv_in / conv_out changed: every other tensor is the RGB model's
    sd_rgb, sd_wide = rgb_vae.state_dict(), wide.state_dict()
    changed = [k for k in sd_rgb if sd_rgb[k].shape != sd_wide[k].shape or not torch.equal(sd_rgb[k], sd_wide[k])]
    assert sorted(changed) == ["decoder.conv_out.bias", "decoder.conv_out.weight", "encoder.conv_in.weight"]
    assert torch.equal(sd_wide["encoder.conv_in.weight"][:, :3], sd_rgb["encoder.conv_in.weight"])
    assert torch.equal(sd_wide["decoder.conv_out.weight"][:3], sd_rgb["decoder.conv_out.weight"])
    # the zero-initialised weights still receive gradients (they can learn depth)
    wide.train()
    x_d = torch.cat([x, torch.rand(2, c - 3, 16, 16, dtype=torch.float64)], 1)
    loss = wide(x_d).sample[:, 3:].sub(0.5).pow(2).mean()
    loss.backward()
    assert wide.encoder.conv_in.weight.grad[:, 3:].abs().sum() > 0 or wide.decoder.conv_out.weight.grad[3:].abs().sum() > 0


def test_new_parameter_count_at_sd_size():
    # SD's VAE: block_out_channels[0] = 128, 3x3 convolutions
    assert new_param_count(128, "6c") == 3 * 128 * 9 + 3 * (128 * 9 + 1) == 6915
    assert new_param_count(128, "4c") == 2305
    rgb = make_rgb_vae((128,), layers_per_block=1)  # one level, SD's first width: the widened convs are SD's
    assert _n(widen_vae(rgb, "6c")) - _n(rgb) == 6915 and _n(widen_vae(rgb, "4c")) - _n(rgb) == 2305


def test_6c_packing_is_lossless_for_every_16_bit_value_and_tolerates_decoder_error():
    d = torch.arange(65536, dtype=torch.float64).div(65535).float().view(1, 1, 256, 256)
    rgb = torch.rand(1, 3, 256, 256)
    x = rgbd_to_vae_input(rgb, d, "6c")
    assert x.shape == (1, 6, 256, 256) and torch.all(x[:, 3] == -1)  # R channel of the packing is 0
    v = 0x1234 / 65535  # G = 0x12 / 255, B = 0x34 / 255, in [-1, 1]
    y = rgbd_to_vae_input(rgb[..., :1, :1], torch.full((1, 1, 1, 1), v), "6c")
    assert_close(y[0, 4:, 0, 0], torch.tensor([0x12 / 255, 0x34 / 255]) * 2 - 1)
    for noise in (0.0, 0.8 / 255):  # decoder error below half a level (in [-1, 1]: 1/255) still unpacks exactly
        jitter = (torch.rand_like(x) * 2 - 1) * noise
        rgb2, d2 = vae_output_to_rgbd(x + jitter, "6c")
        assert torch.equal((d2 * 65535).round(), (d * 65535).round())
    assert_close(rgb2, rgb, atol=0.5 * 0.8 / 255 + 1e-6, rtol=0)  # the jitter, halved by [-1, 1] -> [0, 1]
    rgb4, d4 = vae_output_to_rgbd(rgbd_to_vae_input(rgb, d, "4c"), "4c")
    assert_close(d4, d, atol=1e-6, rtol=0) and assert_close(rgb4, rgb, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="variant"):
        rgbd_to_vae_input(rgb, d, "5c")


@pytest.mark.parametrize("n_layers,field", [(1, 16), (2, 34), (3, 70)])
def test_patchgan_receptive_field(n_layers, field):
    disc = PatchDiscriminator(3, 8, n_layers).eval()
    with torch.no_grad():
        for p in disc.parameters():
            p.abs_()  # positive weights: no accidental cancellation in the gradient support
    x = torch.zeros(1, 3, 160, 160, requires_grad=True)
    out = disc(x)
    out[0, 0, out.shape[2] // 2, out.shape[3] // 2].backward()
    support = x.grad.abs().sum((0, 1)) > 0
    rows, cols = support.any(1).nonzero(), support.any(0).nonzero()
    assert int(rows.max() - rows.min() + 1) == field and int(cols.max() - cols.min() + 1) == field


@pytest.mark.numerics
def test_hinge_losses_closed_form():  # exact: relu and means of <= 4 exactly representable values
    assert float(hinge_d_loss(torch.full((4,), 2.0), torch.full((4,), -2.0))) == 0.0  # both beyond the margin
    assert float(hinge_d_loss(torch.zeros(4), torch.zeros(4))) == 1.0
    assert float(hinge_d_loss(torch.full((2,), 0.5), torch.full((2,), 0.5))) == pytest.approx(0.5 * (0.5 + 1.5))
    assert float(hinge_g_loss(torch.tensor([0.7, 0.3]))) == pytest.approx(-0.5)
    real = torch.tensor([0.0, 2.0], requires_grad=True)
    fake = torch.tensor([-2.0, 0.0], requires_grad=True)
    hinge_d_loss(real, fake).backward()
    assert real.grad.tolist() == [-0.25, 0.0] and fake.grad.tolist() == [0.0, 0.25]  # only inside the margin


@pytest.mark.numerics
def test_adaptive_weight_and_pyramid_closed_forms():
    # float64: norms of 16 terms and means of <= 128, each <= ~1e2 eps64 relative in any order: rel 1e-12
    g64 = torch.Generator().manual_seed(0)
    w = torch.randn(4, 4, generator=g64, dtype=torch.float64, requires_grad=True)
    rec = (w * torch.randn(4, 4, generator=g64, dtype=torch.float64)).sum()
    for c in (0.5, 3.0):
        lam = adaptive_weight(rec, c * rec, w)
        g = torch.autograd.grad(rec, w, retain_graph=True)[0].norm()
        assert float(lam) == pytest.approx(float(g / (c * g + 1e-4)), rel=1e-12, abs=0)
    x = torch.rand(1, 2, 8, 8, generator=g64, dtype=torch.float64)
    assert float(pyramid_l1(x + 0.25, x)) == pytest.approx(0.25, rel=1e-12)  # a constant offset survives every level
    checker = (torch.arange(8)[:, None] + torch.arange(8)[None]) % 2 * 2.0 - 1.0  # zero mean on every 2x2 block
    assert float(pyramid_l1(x + checker, x)) == pytest.approx(1.0 / 3.0, rel=1e-12)


def _grads_close(got, ref):
    """Gradients of the same float64 graph built twice: identical up to float64 rounding in another summation order
    (~40 layers, sums of <= 256 terms: <= ~1e4 eps64 relative to the largest entry); bound 1e-10 * max|ref|. A term
    that leaks into the wrong player (the generator loss into the discriminator, or the GAN before its warm-up)
    changes these gradients by >= 1e-3 relatively."""
    for a, b in zip(got, ref):
        if a is not None:
            assert a.dtype == torch.float64
            assert_close(a, b, atol=1e-10 * float(b.abs().max()), rtol=0)


@pytest.mark.numerics
def test_discriminator_is_frozen_for_the_generator_term():
    torch.manual_seed(0)
    vae = widen_vae(make_rgb_vae((8, 16), sample_size=16).double(), "6c")
    m = RGBDAutoencoderWithLoss(vae, AELossConfig(disc_channels=8, disc_layers=2, adaptive=False, disc_weight=0.7))
    m.disc.double()
    x = torch.rand(2, 6, 16, 16, dtype=torch.float64) * 2 - 1
    noise = torch.randn(2, 4, 8, 8, dtype=torch.float64)
    out = m(x, noise, 1.0)
    assert all(p.requires_grad for p in m.disc.parameters())  # restored after the frozen pass
    dparams = list(m.disc.parameters())
    got = torch.autograd.grad(out["loss"], dparams, retain_graph=True)
    post = vae.encode(x).latent_dist
    xrec = vae.decode(post.mean + post.std * noise).sample
    ref = torch.autograd.grad(hinge_d_loss(m.disc(x), m.disc(xrec.detach())), dparams)
    _grads_close(got, ref)  # the discriminator learns from its own hinge loss only
    with_g = torch.autograd.grad(hinge_d_loss(m.disc(x), m.disc(xrec.detach())) + 0.7 * hinge_g_loss(m.disc(xrec)),
                                 dparams)  # fmt: skip
    assert max(float((a - b).abs().max()) for a, b in zip(with_g, ref)) > 1e-3  # what a leaking generator term adds
    # before the warm-up ends (factor 0) the autoencoder sees reconstruction + KL only
    out0 = m(x, noise, 0.0)
    vparams = [p for p in vae.parameters()]
    g0 = torch.autograd.grad(out0["loss"], vparams, allow_unused=True)
    post = vae.encode(x).latent_dist
    xrec = vae.decode(post.mean + post.std * noise).sample
    base = pyramid_l1(xrec, x) + 1e-6 * post.kl().mean() / x[0].numel()
    g1 = torch.autograd.grad(base, vparams, allow_unused=True)
    _grads_close(g0, g1)


@pytest.mark.numerics
def test_loss_falls_when_fitting_a_handful_of_images():
    """120 Adam steps on 4 images (the GAN on from step 90): the reconstruction loss falls and the new depth channel
    learns a depth map, not just a constant.

    Measured (float32, ATEN_CPU_CAPABILITY=default/avx2/avx512 x OMP_NUM_THREADS=1/2 and ONEDNN_MAX_CPU_ISA=AVX2 x 1/2:
    8 settings): rec ratio (last 5 / first 5 steps) 0.219-0.279, depth error 0.054-0.084; torch seeds 1-3: 0.190-0.249
    and 0.044-0.069. The training is chaotic (Adam normalises near-zero gradients, the GAN feeds back), even in float64
    (80 steps: 0.083 under default vs 0.132 under avx2), so the bounds sit far from the spread and are tied to what
    learning nothing gives: rec stays ~1, the depth error stays 0.270 (0.5 everywhere), or >= 0.219 for the best
    constant map. (The former 80-step version measured 0.078-0.125, 0.125 with ONEDNN_MAX_CPU_ISA=AVX2 as on the AMD
    EPYC of issue 12, against a bound of 0.1.)
    """
    torch.manual_seed(0)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 16), torch.linspace(0, 1, 16), indexing="ij")
    rgb = torch.stack([torch.stack([xx * a, yy * (1 - a), (xx + yy) / 2]) for a in (0.2, 0.5, 0.8, 1.0)])
    disp = torch.stack([(1 - yy * a)[None] for a in (0.3, 0.6, 0.9, 1.0)])
    x = rgbd_to_vae_input(rgb, disp, "4c")
    vae = widen_vae(make_rgb_vae((8, 16), sample_size=16), "4c")
    m = RGBDAutoencoderWithLoss(vae, AELossConfig(disc_channels=8, disc_layers=1))

    def depth_error() -> float:
        with torch.no_grad():
            _, d = vae_output_to_rgbd(vae.decode(vae.encode(x).latent_dist.mean).sample, "4c")
        return float((d - disp).abs().mean())

    start = depth_error()
    assert start == pytest.approx(float((disp - 0.5).abs().mean()), abs=1e-6)  # it starts at 0.5 everywhere: 0.270
    best_constant = float((disp - disp.median()).abs().mean())  # the best constant depth map (L1: the median): 0.219
    opt = torch.optim.Adam(m.parameters(), lr=3e-3, betas=(0.5, 0.9))
    g = torch.Generator().manual_seed(0)
    recs = []
    for step in range(120):
        out = m(x, torch.randn(4, 4, 8, 8, generator=g), 1.0 if step >= 90 else 0.0)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        recs.append(float(out["rec"]))
        assert torch.isfinite(out["loss"])
    assert sum(recs[-5:]) / 5 < 0.5 * sum(recs[:5]) / 5  # measured <= 0.279; ~1 without learning
    err = depth_error()  # measured <= 0.084
    assert err < 0.75 * best_constant, (start, best_constant, err)


@pytest.mark.numerics
def test_perceptual_network_is_used_and_stays_frozen():
    torch.manual_seed(0)
    vae = widen_vae(make_rgb_vae((8, 16), sample_size=16).double(), "4c")

    class FeatureDistance(torch.nn.Module):  # a fixed feature distance on RGB, LPIPS-like
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)

        def forward(self, a, b):
            assert a.shape[1] == 3
            return (self.conv(a) - self.conv(b)).pow(2).mean()

    dist = FeatureDistance().double()
    m = RGBDAutoencoderWithLoss(vae, AELossConfig(disc_channels=8, disc_layers=1, perceptual_weight=2.0), dist)
    m.disc.double()
    assert not any(p.requires_grad for p in dist.parameters())
    x, noise = torch.rand(2, 4, 16, 16, dtype=torch.float64) * 2 - 1, torch.randn(2, 4, 8, 8, dtype=torch.float64)
    out = m(x, noise, 0.0)
    post = vae.encode(x).latent_dist
    xrec = vae.decode(post.mean + post.std * noise).sample
    expected = (xrec - x).abs().mean() + 2.0 * dist(xrec[:, :3], x[:, :3])
    # float64, the same graph twice (see _grads_close): rel 1e-10; dropping the perceptual term changes it by > 1e-3
    assert_close(out["rec"], expected.detach(), atol=0, rtol=1e-10)
    assert float(2.0 * dist(xrec[:, :3], x[:, :3]).detach()) > 1e-3 * float(expected.detach())
