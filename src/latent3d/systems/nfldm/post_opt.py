"""NF-LDM's post-optimisation (Kim et al. 2023, Sec. 3.4): score distillation (DreamFusion, Poole et al. 2022, eq. 3)
on views rendered from a generated scene's voxel grid, optimising the grid itself (density and features), with
negative guidance.

Guidance: the paper samples from ``p(x | y)^alpha / p(x | y')``, ``y`` the image embedding of clean dataset frames
and ``y'`` that of artefact-laden samples. Its score, with the negative exponent taken as ``alpha - 1`` so that the
weights sum to one (the form classifier-free guidance takes, and the one that is a plain conditional model at
``alpha = 1``), is ``alpha grad log p(x | y) - (alpha - 1) grad log p(x | y')``; as noise predictions

    eps_guided = alpha eps(x_t, t, y) - (alpha - 1) eps(x_t, t, y') = eps(y') + alpha (eps(y) - eps(y')),

i.e. classifier-free guidance with the negative embedding ``y'`` in place of the empty one
(:func:`latent3d.diffusion.guidance.cfg_batched`); ``--no-negative`` is the same with the zero (unconditional) token
as ``y'``: plain classifier-free guidance towards the clean data (:func:`scene_conditions`).

Stylisation (the paper's applications, ``--style "at night"``) is the same loop through a diffusers text-to-image
prior, ``y`` the style prompt's text embedding and ``y'`` the empty prompt's (:func:`style_conditions`).

Cameras: level views from points drawn uniformly in the central half of the scene box (in x and y) at the sampled
trajectory's mean height, heading uniform in [0, 2 pi): "around the scene origin". Each step renders one view at the
scene model's frame size, area-downsamples it to the prior's, draws ``t ~ U[t_min T, t_max T]`` and back-propagates
the SDS gradient ``w(t) (eps_guided - eps)`` through the renderer into the grid (Adam); densities are kept >= 0.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from latent3d.distill.sds import SDSSettings, sds_grad, sds_timestep


def post_opt_cameras(box: tuple[Tensor, Tensor], height: float, n: int,
                     generator: torch.Generator) -> Tensor:  # -> [n, 4, 4]  # fmt: skip
    """``n`` level cameras around the scene origin (module docstring)."""
    from latent3d.render.camera import look_at

    lo, hi = box
    half = (hi - lo)[:2] / 2
    xy = (torch.rand(n, 2, generator=generator, dtype=torch.float64) - 0.5) * half.double()
    yaw = torch.rand(n, generator=generator, dtype=torch.float64) * 2 * math.pi
    eye = torch.cat([xy + ((lo + hi) / 2)[:2].double(), torch.full((n, 1), float(height), dtype=torch.float64)], 1)
    fwd = torch.stack([yaw.cos(), yaw.sin(), torch.zeros_like(yaw)], -1)
    return look_at(eye, eye + fwd, up=(0.0, 0.0, 1.0), dtype=torch.float32)


def post_optimise(model, prior, grid: Tensor, trajectory: Tensor, steps: int, cond: Tensor, uncond: Tensor,
                  alpha: float = 2.0, lr: float = 0.01, t_range: tuple[float, float] = (0.02, 0.6),
                  generator: torch.Generator | None = None) -> tuple[Tensor, list[float]]:  # fmt: skip
    """``grid [C + 1, X, Y, Z]`` of a sampled scene (``trajectory [K, 5]`` its sampled poses) after ``steps`` SDS
    steps through any 2-D ``prior`` (``encode_images``, ``resolution``, ``predict_eps_cfg``: the scene prior or a
    diffusers text prior) guided by ``eps(uncond) + alpha (eps(cond) - eps(uncond))`` (module docstring); also each
    step's mean |SDS gradient|. The scene model's networks stay frozen."""
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    dev = grid.device
    C = model.scene_ae.cfg.features
    lo, hi = (b.cpu() for b in model.box)
    box = (lo.to(dev), hi.to(dev))
    height = float(trajectory[:, 2].cpu().mean() * (hi - lo)[2] / 2 + (lo + hi)[2] / 2)  # the poses' mean z
    s = SDSSettings(guidance_scale=alpha, t_min=t_range[0], t_max=t_range[1])
    param = grid.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([param], lr=lr)
    for p in model.scene_ae.parameters():
        p.requires_grad_(False)
    K, res = model.K.to(dev), prior.resolution
    norms = []
    for _ in range(steps):
        vm = post_opt_cameras((lo, hi), height, 1, g).to(dev)
        rgb = model.scene_ae.render(param, box[0], box[1], vm, K[None], model.height, model.width).rgb
        x = prior.encode_images(F.interpolate(rgb, size=(res, res), mode="area" if rgb.shape[-1] >= res else
                                              "bilinear"))  # fmt: skip
        t = sds_timestep(s, prior.num_train_timesteps, g)
        grad, _ = sds_grad(prior, x, cond, uncond, t, s, g)
        loss = 0.5 * ((x - (x - grad.to(x.dtype)).detach()) ** 2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            param[C:].clamp_(min=0)
        norms.append(float(grad.abs().mean()))
    return param.detach(), norms


def scene_conditions(prior, negative: bool) -> tuple[Tensor, Tensor]:  # -> cond [1, D], uncond [1, D]
    """NF-LDM's conditions on the scene prior (:class:`~.scene_prior.ScenePrior`): ``y`` against ``y'``
    (``negative``), or against the zero token."""
    y_neg = prior.y_neg if negative else torch.zeros_like(prior.y_neg)
    return prior.y[None], y_neg[None]


def style_conditions(prior, style: str, negative_prompt: str = "") -> tuple[Tensor, Tensor]:  # -> [1, L, D] x 2
    """Stylisation (NF-LDM's applications): a text prior's embeddings of the style prompt and of the negative (by
    default the empty) prompt."""
    return prior.encode_text([style]), prior.encode_text([negative_prompt])


class post_optimiser:  # noqa: N801 (a function with settings attached)
    """``latent3d scene --post-opt / --style``: ``refine(k, grid, trajectory)`` for
    :func:`~.generate.generate_scenes`, sample ``k`` post-optimised with the generator of ``seed + k``;
    ``settings`` goes to run.json."""

    def __init__(self, model, prior, steps: int, alpha: float, cond: Tensor, uncond: Tensor, settings: dict,
                 seed: int):  # fmt: skip
        self.model, self.prior, self.seed, self.cond, self.uncond = model, prior, seed, cond, uncond
        self.steps, self.alpha = steps, alpha
        self.settings = {"steps": steps, "alpha": alpha, **settings}

    def __call__(self, k: int, grid: Tensor, trajectory: Tensor) -> tuple[Tensor, dict]:
        out, norms = post_optimise(self.model, self.prior, grid, trajectory, self.steps, self.cond, self.uncond,
                                   self.alpha, generator=torch.Generator().manual_seed(self.seed + k))  # fmt: skip
        return out, {"post_opt_steps": self.steps, "sds_grad_first_last": [norms[0], norms[-1]]}
