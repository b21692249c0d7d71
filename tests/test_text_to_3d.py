"""Text-to-3D (LucidDreamer's loop over Gaussian splats).

* On a tiny random-weight SD pipeline (UNet + VAE + CLIP, saved and reloaded offline), in float64: the latents of a
  distillation step are the VAE encoding of the render, its gradient is the ISM / SDS gradient of those latents for
  the step's timestep and noise, and the Gaussians receive exactly that gradient pulled back through the VAE encoder
  and the rasterizer.
* On a prior whose score is known in closed form (images ~ N(mu, sigma^2)): a few ISM and SDS iterations move the
  renders towards mu, and the same iterations with the gradient's sign flipped move them away.
"""

import pytest
import torch

from latent3d.diffusion.schedules import alphas_cumprod
from latent3d.priors import DiffusionPrior, load_prior
from latent3d.render.camera import orbit_cameras
from latent3d.systems.lucid_dreamer import dream as dream_module
from latent3d.systems.lucid_dreamer.dream import DreamConfig, distill_step, dream, init_gaussians, resolve_defaults, view_prompts
from dream_scene import float64_scene
from tolerances import EPS32, rel_err

# float64 bound: every quantity below is a few thousand float64 roundings deep (UNet/VAE of 2 blocks, rasterizer
# sums over <= 300 Gaussians, CLIP), so kernel-order differences are ~1e3 * eps64 ~ 2e-13 relative; a wiring bug
# (wrong camera, timestep, noise, prompt, guidance or scale) is an O(1) relative error.
REL64 = 1e-9
# ... except where float32 enters by design: the distillation noise is drawn in float32 (``torch.randn``), and
# ``sqrt(1 - a) * noise`` is formed in float32 (a 0-dim float64 tensor does not promote a float32 one), so x_t carries
# one float32 rounding (relative <= eps32 / 2), amplified by SDS's guidance of 100: measured 4.8e-8 (default kernels)
# and 5.0e-8 (avx2, avx512) = 0.42 eps32. Bound: 8 eps32 (~1e-6), 19x above it and still ~1e5x below what a wrong
# timestep, noise, prompt or guidance scale gives.
REL_NOISE = 8 * EPS32


def _cfg(method, **kw):
    kw = {"iters": 3, "views": 2, "init_points": 300, "init_extent": 0.8, "radius_range": (2.5, 2.5),
          "fov_range": (0.8, 0.8), **kw}
    return DreamConfig(prompt="a red snowman", method=method, **kw)


@pytest.mark.numerics
@pytest.mark.parametrize("method", ["ism", "sds"])
def test_distill_step_encodes_the_render_and_applies_the_ism_sds_gradient(tiny_sd_dir, method):
    from latent3d.distill import ism_grad, ism_timestep

    prior = load_prior(tiny_sd_dir, dtype=torch.float64)
    cfg = resolve_defaults(_cfg(method), prior)
    gen = torch.Generator().manual_seed(0)
    model, cams = float64_scene(cfg, gen)
    bg = torch.tensor([[1.0, 1.0, 1.0], [0.2, 0.5, 0.9]], dtype=torch.float64)
    uncond = prior.encode_text([""])
    g_ref = torch.Generator()
    g_ref.set_state(gen.get_state())  # the draws distill_step is about to make
    iteration = 7
    step = distill_step(model, prior, cfg, cams, bg, iteration, uncond, gen)

    # (a) the latents are the VAE posterior mean (scaled) of an independent render of the same views ([0,1] -> [-1,1])
    rgb, _, _ = model.render(cams.viewmats, cams.Ks, 32, 32, backgrounds=bg)
    vae = prior.vae
    z = vae.encode(rgb.permute(0, 3, 1, 2) * 2 - 1).latent_dist.mean * vae.config.scaling_factor
    assert step.latents.shape == z.shape == (2, 4, 16, 16)
    assert rel_err(step.latents, z) < REL64

    # (b) grad is the ISM / SDS gradient of these latents with the same timestep and noise
    prompts = view_prompts(cfg.prompt, cams.azimuth_deg, cams.elevation_deg)
    assert prompts[0].startswith("a red snowman, ") and prompts[0].endswith(" view")
    cond = prior.encode_text(prompts)
    if method == "ism":
        t_idx, delta_t = ism_timestep(cfg.ism, iteration, g_ref)
        expected, info = ism_grad(prior, z.detach(), cond, uncond, t_idx, delta_t, cfg.ism, g_ref)
        assert step.info["t"] == info["t"] and step.info["schedule"] == info["schedule"]
    else:  # DreamFusion eq. 3 written out: t ~ U{20..980}, x_t = sqrt(a) z + sqrt(1-a) n, w = 1 - a, CFG by hand
        t = int(torch.randint(int(0.02 * 1000), int(0.98 * 1000) + 1, (1,), generator=g_ref))
        noise = torch.randn(z.shape, generator=g_ref).double()
        betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2  # SD's scaled_linear
        a = torch.cumprod(1 - betas, 0)[t]
        x_t = a.sqrt() * z.detach() + (1 - a).sqrt() * noise
        tt = torch.tensor([t, t])
        e_u = prior.unet(x_t, tt, encoder_hidden_states=uncond.expand(2, -1, -1)).sample
        e_c = prior.unet(x_t, tt, encoder_hidden_states=cond).sample
        guided = e_u + cfg.guidance_scale * (e_c - e_u)
        assert cfg.guidance_scale == cfg.sds.guidance_scale == 100.0  # DreamFusion's default (no prior defaults)
        expected = (1 - a) * (guided - noise)
        assert step.info["t"] == t
    assert float(expected.abs().max()) > 0
    assert rel_err(step.grad, expected) < (REL64 if method == "ism" else REL_NOISE)

    # (c) the Gaussians' gradients are that gradient (/ views) pulled back through the VAE encoder and the rasterizer
    params = [model.means, model.sh_dc, model.opacity_logits, model.log_scales, model.quats]
    vjp = torch.autograd.grad(z, params, grad_outputs=step.grad / cfg.views)
    step.loss.backward()
    for name, p, e in zip(["means", "sh_dc", "opacity_logits", "log_scales"], params, vjp):
        assert float(e.abs().max()) > 0, name  # every parameter group is reached ...
        assert rel_err(p.grad, e) < REL64, name
    # ... except rotations: the initial Gaussians are isotropic, so rotating them changes nothing (zero up to
    # roundoff, far below the other groups)
    print(f"{method}: latents {rel_err(step.latents, z):.1e}, grad {rel_err(step.grad, expected):.1e}, params "
          f"{max(rel_err(p.grad, e) for p, e in zip(params[:4], vjp)):.1e} (relative)")
    scale = max(float(e.norm()) for e in vjp[:4])
    assert float(params[4].grad.norm()) < 1e-10 * scale and float(vjp[4].norm()) < 1e-10 * scale


class GaussianImagePrior:
    """A pixel-space :class:`~latent3d.priors.base.DiffusionPrior` whose data are images ``x0 ~ N(mu, sigma^2 I)``
    (in [-1, 1]), so its score is exact in closed form: with ``x_t = sqrt(a) x0 + sqrt(1 - a) eps``,
    ``x_t ~ N(sqrt(a) mu, (a sigma^2 + 1 - a) I)`` and ``E[eps | x_t] = sqrt(1 - a) (x_t - sqrt(a) mu) /
    (a sigma^2 + 1 - a)``. What it "prefers" is images near ``mu``. It ignores the text, so guidance is the identity."""

    def __init__(self, mu, sigma):
        self.mu, self.sigma = mu.double(), sigma
        self.device = torch.device("cpu")
        self.dtype = self.compute_dtype = torch.float64
        self.alphas_cumprod = alphas_cumprod("scaled_linear", 1000)  # SD's schedule
        self.num_train_timesteps = 1000
        self.scheduler_config = {"steps_offset": 1, "set_alpha_to_one": False}
        self.defaults = {}  # no recommended settings shipped
        self.resolution, self.latent_channels, self.downsample = mu.shape[-1], 3, 1

    def encode_text(self, prompts):
        return torch.zeros(len(prompts), 1, 1, dtype=torch.float64)

    def encode_images(self, images, generator=None):
        return images.double() * 2 - 1

    def decode_latents(self, latents):
        return (latents / 2 + 0.5).clamp(0, 1)

    def predict_eps(self, x_t, t, text_emb):
        a = self.alphas_cumprod[torch.as_tensor(t).long()].reshape(-1, 1, 1, 1)
        return (1 - a).sqrt() * (x_t - a.sqrt() * self.mu) / (a * self.sigma**2 + 1 - a)

    def predict_eps_cfg(self, x_t, t, cond, uncond, scale):
        return self.predict_eps(x_t, t, cond)  # cond and uncond predictions coincide: cfg(e, e, w) = e


@pytest.mark.numerics
@pytest.mark.parametrize("method", ["ism", "sds"])
def test_a_few_iterations_move_the_renders_towards_what_the_prior_prefers(monkeypatch, method):
    """5 iterations (2 views of 16x16, white background) on the closed-form prior whose images are red
    (mu = (1, -1, -1) in [-1, 1]; sigma = 0.5): the mean squared distance between renders of 8 fixed views and mu must
    fall; with the sign of the distillation gradient flipped it must rise. Measured (default/avx2/avx512 x 1/2
    threads: identical to 4 digits): ISM 1.926 -> 1.817 (-5.7 %), flipped -> 2.033 (+5.5 %); SDS -> 1.820
    (-5.5 %), flipped -> 2.030 (+5.4 %). Bound: 2 %. A gradient that does not reach the Gaussians leaves the
    distance unchanged, one with the wrong sign raises it."""
    R = 16
    mu = torch.tensor([1.0, -1.0, -1.0], dtype=torch.float64)[:, None, None].expand(3, R, R)
    viewmats, Ks = orbit_cameras(2.8, 20.0, torch.arange(8) * 45.0, 0.7, R, R)

    def distance(model):
        with torch.no_grad():
            rgb, _, _ = model.render(viewmats, Ks, R, R, backgrounds=torch.ones(8, 3))
        return float((rgb.permute(0, 3, 1, 2).double() * 2 - 1 - mu).pow(2).mean())

    def run(sign):
        prior = GaussianImagePrior(mu, 0.5)
        assert isinstance(prior, DiffusionPrior)
        loss = dream_module.distillation_loss
        monkeypatch.setattr(dream_module, "distillation_loss", lambda z, g: loss(z, sign * g))
        res = dream(prior, _cfg(method, iters=5, bg_aug=0.0, radius_range=None, fov_range=None), progress=False)
        monkeypatch.setattr(dream_module, "distillation_loss", loss)
        assert len(res.history) == 5 and res.config.resolution == R
        return res.model

    start = init_gaussians(resolve_defaults(_cfg(method, radius_range=None, fov_range=None),
                                            GaussianImagePrior(mu, 0.5)), torch.Generator().manual_seed(0))  # fmt: skip
    d0, d_plus, d_minus = distance(start), distance(run(+1.0)), distance(run(-1.0))
    print(f"{method}: distance to mu {d0:.4f} -> {d_plus:.4f}; sign flipped -> {d_minus:.4f}")
    assert d_plus < 0.98 * d0, "the iterations do not move the renders towards the prior's images"
    assert d_minus > 1.02 * d0, "the sign-flipped control does not move away: the check has no power"


def test_dream_guides_against_the_negative_prompt(tiny_sd_dir, monkeypatch):
    """`dream --negative` is the unconditional branch handed to every distillation step (the inversion keeps the
    empty prompt); SD-size priors default to LucidDreamer's negative prompt, small ones to none."""
    from latent3d.systems.lucid_dreamer.config import LUCID_NEGATIVE

    big = GaussianImagePrior(torch.zeros(3, 512, 512), 0.5)
    assert resolve_defaults(_cfg("ism"), big).negative == LUCID_NEGATIVE
    assert resolve_defaults(_cfg("ism", negative="dark"), big).negative == "dark"
    assert resolve_defaults(_cfg("ism"), GaussianImagePrior(torch.zeros(3, 16, 16), 0.5)).negative == ""

    prior = load_prior(tiny_sd_dir, dtype=torch.float64)
    seen, step = [], dream_module.distill_step

    def spy(model, prior_, cfg, cams, bg, it, uncond, gen, inverse=None):
        seen.append((uncond, inverse))
        return step(model, prior_, cfg, cams, bg, it, uncond, gen, inverse)

    monkeypatch.setattr(dream_module, "distill_step", spy)
    dream(prior, _cfg("ism", iters=1, negative="blurry, dark"), progress=False)
    neg, empty = prior.encode_text(["blurry, dark", ""]).split(1)
    assert len(seen) == 1 and torch.equal(seen[0][0], neg) and torch.equal(seen[0][1], empty)
    assert not torch.equal(neg, empty)
