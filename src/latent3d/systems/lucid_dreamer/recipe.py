"""The two schedules of ``latent3d dream``: LucidDreamer's official one for SD-size priors and a tuned CPU one for the
bundled prior (Liang et al. 2023, Sec. 4 "Implementation details" and the official code: ``arguments/__init__.py``,
``configs/*.yaml``, ``train.py``, ``gaussian_renderer/__init__.py``, ``guidance/sd_utils.py``).

Official value -> latent3d ``LUCID`` (SD-size priors) -> ``BUNDLED`` (the 64^2 bundled prior), and why:

==========================  ================================  ===========================  =========================
setting                     official                          LUCID                        BUNDLED (why)
==========================  ================================  ===========================  =========================
iterations, views           5000, C_batch_size 4              same                         300, 4 (CPU budget)
cameras: radius, fovy,      [5.2, 5.5], [0.32, 0.60] rad,     same                         [2.8, 3.2], [0.6, 0.8],
polar                       theta [45, 105] deg                                            elevation [-10, 60]: the
                                                                                           views its data was drawn at
progressive cameras         from it. 500 every 500: radius    same (``camera_ranges``)     none (300 steps)
                            x0.95 down to [3.5, 5.0], fovy
                            x[0.75, 1.1] within [0.16, 0.60]
init                        100k points in a 0.5 ball         same                         2048 in a 0.7 ball (CPU)
lr extent                   cameras_extent = 3.5              same                         1.5 x init radius
lrs: position, colour,      1.6e-4 -> 1.6e-6, 5e-3 -> 3e-3,   same (``LearningRates``)     1.6e-3 -> 1.6e-5, 1e-2,
opacity, scale, rotation    0.05, 5e-3 -> 1e-3, 1e-3 -> 2e-4                               0.05, 5e-3, 1e-3: 300
                            (log-linear over the run)                                      steps need bigger steps
densify from/until/every    100 / 3000 / 100                  same                         30 / 180 / 50 (scaled)
grad threshold              7.5e-4 (statistic of the last     7.5e-4 on the mean over the  8e-4 (= the tuned 2e-4
                            view of the batch only)           batch's views, gsplat-style  on the unscaled 4-view
                                                              (every rendered view counts) statistic, issue 19)
percent_dense, min opacity  0.003, 0.005                      same                         0.01, 0.01 (fewer, larger
                                                                                           splats at 64^2)
opacity reset               every 300 (to 0.01)               same                         none: 300 steps leave no
                                                                                           time to recover
background                  p 0.66: half random colour,       same (``backgrounds``)       p 0.66, random colour
                            half black; else white                                         (no black: measured
                                                                                           fidelity table)
scale-noise augmentation    p 1: s + N(0, 0.2) s / 4, >= 0    same (``augment_scales``)    off
horizontal flip of batch    p 0.5 (renders, depth, alpha)     same                         off
depth as the latent         p 0.2 (``as_latent_ratio``)       same; disparity of the       off (the bundled VAE
                                                              expected depth (note 1)      never saw depth maps)
view prompt                 embeddings of "front/side/back    same (``view_embeddings``)   discrete words (the
                            view" interpolated in azimuth                                  bundled prior's captions)
VAE latents                 posterior sample                  same                         posterior mean
loss weights                lambda_guidance 0.1, tv 1.0,      same                         1, 0, 0 (the table's
                            scale 1.0                                                      figures were tuned so)
ISM inversion stride        xs_delta_t 200                    same                         500: 15 % fewer UNet
                                                                                           calls, -26 % time, same
                                                                                           mean PSNR, better SSIM
                                                                                           and IoU (issue 19)
==========================  ================================  ===========================  =========================

Note 1: the official disparity ``focal / (depth + 10 alpha)`` is defined on its forked rasterizer's depth output;
latent3d takes ``1 / expected depth`` on covered pixels (alpha > 0.1) over its maximum in each view, background 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

import torch
from torch import Tensor

from latent3d.render.densify import LearningRates


@dataclass(frozen=True)
class Progressive:
    """LucidDreamer's progressive camera schedule (``train.py``: ``scale_up_cameras_iter``): at every ``every``-th
    iteration from ``start`` on, the radius range shrinks by ``radius_factor`` down to ``radius_min`` and the fovy
    range scales by ``fov_factor`` within ``fov_bounds``."""

    start: int = 500
    every: int = 500
    radius_factor: float = 0.95
    radius_min: tuple[float, float] = (3.5, 5.0)
    fov_factor: tuple[float, float] = (0.75, 1.1)
    fov_bounds: tuple[float, float] = (0.16, 0.60)


@dataclass(frozen=True)
class Recipe:
    """Everything a dream run schedules; see the module docstring for where each value comes from."""

    name: str
    iters: int
    radius_range: tuple[float, float]
    elevation_range_deg: tuple[float, float]
    fov_range: tuple[float, float]
    init_points: int
    init_extent: float
    extent: float | None  # spatial lr scale and densification extent; None: 1.5 x init_extent
    lrs: LearningRates
    densify_from: float  # fractions of the run
    densify_until: float
    densify_every: int
    reset_every: int
    grad_threshold: float
    percent_dense: float
    prune_opacity: float
    bg_aug: float
    bg_black: float  # share of the augmented backgrounds that are black (the rest random colours)
    scale_aug: float = 0.0
    flip: float = 0.0
    as_latent_ratio: float = 0.0
    progressive: Progressive | None = None
    view_embedding: Literal["words", "interpolate"] = "words"
    posterior_sample: bool = False
    lambda_guidance: float = 1.0
    lambda_tv: float = 0.0
    lambda_scale: float = 0.0
    xs_delta_t: int = 200  # ISM's inversion stride (ISMSettings.xs_delta_t)

    def scaled_lrs(self, iters: int) -> LearningRates:
        """The learning rates with their decay spread over ``iters`` steps (official: ``max_steps=iterations``)."""
        return replace(self.lrs, means_max_steps=iters)


LUCID = Recipe(
    name="lucid", iters=5000, radius_range=(5.2, 5.5), elevation_range_deg=(-15.0, 45.0), fov_range=(0.32, 0.60),
    init_points=100_000, init_extent=0.5, extent=3.5,
    lrs=LearningRates(means=1.6e-4, means_final=1.6e-6, sh_dc=5e-3, sh_dc_final=3e-3, sh_rest=5e-3 / 20,
                      opacity_logits=0.05, log_scales=5e-3, log_scales_final=1e-3, quats=1e-3, quats_final=2e-4),
    densify_from=100 / 5000, densify_until=3000 / 5000, densify_every=100, reset_every=300, grad_threshold=7.5e-4,
    percent_dense=0.003, prune_opacity=0.005, bg_aug=0.66, bg_black=0.5, scale_aug=1.0, flip=0.5,
    as_latent_ratio=0.2, progressive=Progressive(), view_embedding="interpolate", posterior_sample=True,
    lambda_guidance=0.1, lambda_tv=1.0, lambda_scale=1.0,
)  # fmt: skip
"""LucidDreamer's shipped configs (SD 2.1-base, 512^2)."""

BUNDLED = Recipe(
    name="bundled", iters=300, radius_range=(2.8, 3.2), elevation_range_deg=(-10.0, 60.0), fov_range=(0.6, 0.8),
    init_points=2048, init_extent=0.7, extent=None,
    lrs=LearningRates(means=1.6e-3, means_final=1.6e-5, sh_dc=1e-2, opacity_logits=5e-2, log_scales=5e-3, quats=1e-3),
    densify_from=0.1, densify_until=0.6, densify_every=50, reset_every=0, grad_threshold=8e-4, percent_dense=0.01,
    prune_opacity=0.01, bg_aug=0.66, bg_black=0.0, xs_delta_t=500,
)  # fmt: skip
"""Tuned for the bundled 64^2 prior on a CPU (the README's distillation-fidelity table)."""

RECIPES = {"lucid": LUCID, "bundled": BUNDLED}


def recipe_for(name: str, prior_resolution: int) -> Recipe:
    """``auto``: the bundled recipe for small priors (<= 128 px), LucidDreamer's for SD-size ones."""
    if name == "auto":
        return BUNDLED if prior_resolution <= 128 else LUCID
    return RECIPES[name]


def camera_ranges(recipe: Recipe, iteration: int) -> tuple[tuple[float, float], tuple[float, float]]:
    """Radius and fov ranges at 1-based ``iteration`` after the progressive scale-ups due so far (closed form of
    ``train.py``'s repeated ``max(min_r, r * 0.95)`` / fovy ``max(lo, f * 0.75)``, ``min(hi, f * 1.1)``)."""
    p, (r0, r1), (f0, f1) = recipe.progressive, recipe.radius_range, recipe.fov_range
    if p is None or iteration < p.start:
        return (r0, r1), (f0, f1)
    k = iteration // p.every - (p.start - 1) // p.every  # scale-ups at start, start + every, ... <= iteration
    rf = p.radius_factor**k
    radius = (max(p.radius_min[0], r0 * rf), max(p.radius_min[1], r1 * rf))
    fov = (max(p.fov_bounds[0], f0 * p.fov_factor[0] ** k), min(p.fov_bounds[1], f1 * p.fov_factor[1] ** k))
    return radius, fov


def backgrounds(n: int, p_aug: float, black: float, generator: torch.Generator) -> Tensor:  # [n, 3]
    """Background colours (``gaussian_renderer.render``): white, or with probability ``p_aug`` a random colour
    (``1 - black`` of those) or black."""
    aug = torch.rand(n, generator=generator) < p_aug
    colour = torch.rand(n, 3, generator=generator)
    if black > 0:
        colour = torch.where(torch.rand(n, generator=generator)[:, None] < black, torch.zeros_like(colour), colour)
    return torch.where(aug[:, None], colour, torch.ones_like(colour))


def augment_scales(scales: Tensor, generator: torch.Generator) -> Tensor:  # [N, 3] -> [N, 3]
    """LucidDreamer's scale noise: ``clamp(s + N(0, 1) sqrt(0.2) s / 4, min=0)`` (differentiable in ``s``)."""
    noise = torch.randn(scales.shape, generator=generator).to(scales)
    return torch.clamp(scales + noise * (math.sqrt(0.2) / 4.0) * scales, min=0.0)


def interpolation_weight(azimuth_deg: float) -> tuple[float, str, str]:
    """``(r, a, b)``: the view embedding is ``r * emb(a) + (1 - r) * emb(b)`` (``train.py``, perpneg off): front ->
    side over |azimuth| in [0, 90), side -> back over [90, 180]."""
    a = float(azimuth_deg)
    if -90.0 <= a < 90.0:
        return 1.0 - abs(a) / 90.0, "front", "side"
    return 1.0 - (abs(a) - 90.0) / 90.0, "side", "back"


def view_embeddings(
    embed: dict[str, Tensor],  # {"front", "side", "back"}: [1, L, D] embeddings of "<prompt>, <x> view"
    azimuth_deg: Tensor,  # [V]
) -> Tensor:  # [V, L, D]
    out = []
    for a in azimuth_deg.tolist():
        r, lo, hi = interpolation_weight(a)
        out.append(r * embed[lo] + (1.0 - r) * embed[hi])
    return torch.cat(out, 0)


def tv_loss(x: Tensor) -> Tensor:  # [B, C, H, W] -> []
    """Total variation of ``utils/loss_utils.tv_loss``: 2 (mean sq. vertical + mean sq. horizontal difference) / B."""
    dh = (x[:, :, 1:, :] - x[:, :, :-1, :]).pow(2).sum() / x[0, :, 1:, :].numel()
    dw = (x[:, :, :, 1:] - x[:, :, :, :-1]).pow(2).sum() / x[0, :, :, 1:].numel()
    return 2.0 * (dh + dw) / x.shape[0]


def disparity_images(
    depth: Tensor,  # [V, H, W, 1] accumulated depth sum_i w_i z_i
    alpha: Tensor,  # [V, H, W, 1]
) -> Tensor:  # [V, 3, H, W] in [0, 1]
    """Disparity of the expected depth on covered pixels (alpha > 0.1) over its maximum in the view, 0 elsewhere,
    grey in 3 channels: the image LucidDreamer encodes as the latent on ``as_latent_ratio`` of the steps (note 1)."""
    covered = alpha > 0.1
    disp = torch.where(covered, alpha / depth.clamp(min=1e-6), torch.zeros_like(depth))  # 1 / (depth / alpha)
    hi = disp.flatten(1).amax(1).clamp(min=1e-8).view(-1, 1, 1, 1)
    return (disp / hi).permute(0, 3, 1, 2).expand(-1, 3, -1, -1)
