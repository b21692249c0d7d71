"""Text-to-3D with Gaussian splats distilled from a 2D prior (LucidDreamer, Liang et al. 2023, Sec. 3-4).

Each iteration renders a batch of random orbit views of the Gaussians, appends the view to the prompt
("..., side view"), turns the renders into prior latents and applies the ISM (or SDS) gradient through the
differentiable rasterizer; adaptive density control grows and prunes the Gaussians (Kerbl et al. 2023, Sec. 5).
Schedules, augmentations and loss weights come from a recipe (:mod:`latent3d.systems.lucid_dreamer.recipe`): the
official LucidDreamer config for SD-size priors, a tuned CPU budget for the bundled prior.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Callable, get_args

import torch
from torch import Tensor

from latent3d.data.procedural.captions import view_bin
from latent3d.distill import distillation_loss, ism_grad, ism_timestep, sds_grad
from latent3d.distill.ism import ISMSettings
from latent3d.distill.sds import sds_timestep
from latent3d.progress import preview_due, report_preview
from latent3d.render.camera import sample_orbit_cameras
from latent3d.render.densify import DensifyConfig, DensityController, make_optimizer, update_lrs
from latent3d.render.gaussians import GaussianModel, InitShape
from latent3d.render.rasterize import rasterize
from latent3d.systems.lucid_dreamer.config import LUCID_NEGATIVE, DreamConfig
from latent3d.systems.lucid_dreamer.views import preview_image
from latent3d.systems.lucid_dreamer.recipe import (
    RECIPES,
    augment_scales,
    backgrounds,
    camera_ranges,
    disparity_images,
    recipe_for,
    tv_loss,
    view_embeddings,
)

if TYPE_CHECKING:
    from latent3d.priors.base import DiffusionPrior
    from latent3d.runtime import ThreadGovernor


def resolve_defaults(cfg: DreamConfig, prior: DiffusionPrior) -> DreamConfig:
    """Fill the None fields from the recipe (``auto``: bundled for small priors, LucidDreamer's for big ones)."""
    small = prior.resolution <= 128
    r = recipe_for(cfg.recipe, prior.resolution)
    cfg.recipe = r.name
    for name in ("iters", "radius_range", "elevation_range_deg", "fov_range", "init_points", "init_extent", "bg_aug",
                 "densify_from", "densify_until", "densify_every", "grad_threshold"):  # fmt: skip
        if getattr(cfg, name) is None:
            setattr(cfg, name, getattr(r, name))
    if cfg.resolution is None:
        cfg.resolution = prior.resolution
    if cfg.negative is None:
        cfg.negative = "" if small else LUCID_NEGATIVE
    if cfg.guidance_scale is None:  # the prior's recommendation, else LucidDreamer (7.5) / DreamFusion (100)
        cfg.guidance_scale = prior.defaults.get(f"{cfg.method}_guidance_scale", 7.5 if cfg.method == "ism" else 100.0)
    cfg.ism.guidance_scale = cfg.sds.guidance_scale = cfg.guidance_scale
    if small:  # the bundled prior's warm-up must fit its short run
        cfg.ism.warmup_iters = min(cfg.ism.warmup_iters, max(1, cfg.iters // 2))
    if cfg.ism.xs_delta_t == ISMSettings.xs_delta_t:  # not changed by the caller: the recipe's stride
        cfg.ism.xs_delta_t = r.xs_delta_t
    return cfg


def init_gaussians(cfg: DreamConfig, generator: torch.Generator) -> GaussianModel:
    """Random Gaussians in a sphere/box of radius ``init_extent`` (grey), a sample of the bundled 3DVADER object
    generator for the same prompt (``"object"``: the most opaque ``init_points`` voxels of its radiance grid, as
    LucidDreamer starts from a Point-E point cloud), or a given PLY (3DGS or points)."""
    from latent3d.priors.initializer import get_initializer, initializer_names

    if cfg.init in initializer_names():  # a registered text-to-3D initialiser (3DVADER's generator: "object")
        init = get_initializer(cfg.init, cfg.init_model)
        return GaussianModel.from_gaussian_ply(init.gaussians(cfg.prompt, cfg.seed, cfg.init_points))
    if cfg.init in get_args(InitShape):
        g = GaussianModel.random(cfg.init_points, cfg.init_extent, cfg.init, sh_degree=0, opacity=0.1,
                                 generator=generator)  # fmt: skip
        with torch.no_grad():
            g.sh_dc.mul_(0.2)  # start near grey: colour comes from the prior, not the random init
        return g
    from latent3d.io.ply import read_gaussian_ply

    return GaussianModel.from_gaussian_ply(read_gaussian_ply(cfg.init, plausible=True))


@dataclass
class DreamResult:
    model: GaussianModel
    config: DreamConfig
    history: list[dict]
    timings: dict


def view_prompts(prompt: str, azimuth_deg: Tensor, elevation_deg: Tensor) -> list[str]:
    """View-dependent prompts (DreamFusion Sec. 3.2 / LucidDreamer): "a red snowman, side view"."""
    return [f"{prompt}, {view_bin(float(a), float(e))}" for a, e in zip(azimuth_deg, elevation_deg)]


@dataclass
class DistillStep:
    loss: Tensor  # [] whose gradient w.r.t. the latents is lambda_guidance * grad / views, plus the regularisers
    latents: Tensor  # [V, C, h, w] (differentiable w.r.t. the Gaussians)
    grad: Tensor  # [V, C, h, w] ISM / SDS gradient
    info: dict
    meta: dict  # rasterizer meta (means2d for densification)
    prior_s: float  # seconds spent in the prior (text, inversion, guided eps)


def _draw(p: float, generator: torch.Generator) -> bool:
    """One Bernoulli(p) draw; none is made when p is 0 (so recipes without the augmentation draw nothing)."""
    return p > 0 and bool(torch.rand(1, generator=generator) < p)


def view_conditions(prior: DiffusionPrior, cfg: DreamConfig, cams) -> Tensor:  # [V, L, D]
    """The text condition of each view: discrete view words, or LucidDreamer's azimuth-interpolated embeddings of
    "<prompt>, front / side / back view"."""
    if RECIPES[cfg.recipe].view_embedding == "words":
        return prior.encode_text(view_prompts(cfg.prompt, cams.azimuth_deg, cams.elevation_deg))
    names = ("front", "side", "back")
    emb = dict(zip(names, prior.encode_text([f"{cfg.prompt}, {d} view" for d in names]).split(1)))
    return view_embeddings(emb, cams.azimuth_deg)


def distill_step(
    model: GaussianModel,
    prior: DiffusionPrior,
    cfg: DreamConfig,
    cams,  # OrbitSample of V views
    backgrounds: Tensor,  # [V, 3]
    iteration: int,
    uncond: Tensor,  # [1, L, D] negative-prompt embedding (the empty prompt's when there is none)
    generator: torch.Generator,
    inverse: Tensor | None = None,  # [1, L, D] ISM's inversion prompt (the empty prompt's); None: `uncond`
) -> DistillStep:
    """Render the views, encode them, and build the score-distillation loss (LucidDreamer Alg. 1, one step), with
    the recipe's augmentations (scale noise, depth as the latent, flip) and regularisers (TV, scale)."""
    dev, R, r = prior.device, cfg.resolution, RECIPES[cfg.recipe]
    scales = augment_scales(model.scales, generator) if _draw(r.scale_aug, generator) else model.scales
    with_depth = r.as_latent_ratio > 0 or r.lambda_tv > 0
    out, alpha, meta = rasterize(model.means, model.quats, scales, model.opacities, model.sh, cams.viewmats.to(dev),
                                 cams.Ks.to(dev), R, R, sh_degree=model.active_sh_degree,
                                 backgrounds=backgrounds.to(dev), render_mode="RGB+D" if with_depth else "RGB")
    meta["means2d"].retain_grad()
    rgb = out[..., :3].permute(0, 3, 1, 2)  # [V, 3, R, R]
    disp = disparity_images(out[..., 3:], alpha) if with_depth else None
    image = disp if _draw(r.as_latent_ratio, generator) else rgb
    if _draw(r.flip, generator):
        image = image.flip(-1)
    latents = prior.encode_images(image, generator if r.posterior_sample else None)  # -> prior latents
    t0 = time.time()
    cond = view_conditions(prior, cfg, cams)
    if cfg.method == "ism":
        t_idx, delta_t = ism_timestep(cfg.ism, iteration, generator)
        grad, info = ism_grad(prior, latents, cond, uncond, t_idx, delta_t, cfg.ism, generator, inverse)
    else:
        t = sds_timestep(cfg.sds, prior.num_train_timesteps, generator)
        grad, info = sds_grad(prior, latents, cond, uncond, t, cfg.sds, generator)
    prior_s = time.time() - t0
    loss = r.lambda_guidance * distillation_loss(latents.to(grad.dtype), grad) / cfg.views
    if r.lambda_tv > 0:
        loss = loss + r.lambda_tv * (tv_loss(rgb) + tv_loss(disp[:, :1]))
    if r.lambda_scale > 0:
        loss = loss + r.lambda_scale * scales.mean()
    return DistillStep(loss, latents, grad, info, meta, prior_s)


def dream(
    prior: DiffusionPrior,
    cfg: DreamConfig,
    progress: bool = True,
    callback: Callable[[int, dict], None] | None = None,
    governor: ThreadGovernor | None = None,
) -> DreamResult:
    """Optimise Gaussians so that their renders score well under ``prior`` (LucidDreamer Alg. 1 with ISM or SDS).

    ``governor`` picks the CPU threads as the loop runs (the command starts one before loading the weights, so that
    its first measurement covers the load); None keeps torch's thread setting."""
    from tqdm.auto import trange

    cfg = resolve_defaults(cfg, prior)
    recipe = RECIPES[cfg.recipe]
    gen = torch.Generator().manual_seed(cfg.seed)
    dev = prior.device
    model = init_gaussians(cfg, gen).to(dev)
    extent = recipe.extent or cfg.init_extent * 1.5
    lrs = recipe.scaled_lrs(cfg.iters)
    opt = make_optimizer(model, lrs, extent)
    dcfg = DensifyConfig(refine_start=int(cfg.densify_from * cfg.iters), refine_stop=int(cfg.densify_until * cfg.iters),
                         refine_every=cfg.densify_every, reset_every=recipe.reset_every,
                         grad_threshold=cfg.grad_threshold, percent_dense=recipe.percent_dense,
                         prune_opacity=recipe.prune_opacity)  # fmt: skip
    ctrl = DensityController(dcfg, extent)
    R = cfg.resolution
    uncond_1, empty_1 = prior.encode_text([cfg.negative]), prior.encode_text([""])
    history, t_prior = [], 0.0
    t0 = time.time()
    bar = trange(cfg.iters, desc=f"dream ({cfg.method})", disable=not progress, dynamic_ncols=True)
    threads = []
    for it in bar:
        threads.append(governor.update() if governor is not None else torch.get_num_threads())
        update_lrs(opt, it, lrs, extent)
        radius_range, fov_range = camera_ranges(replace(recipe, radius_range=cfg.radius_range,
                                                        fov_range=cfg.fov_range), it + 1)  # fmt: skip
        cams = sample_orbit_cameras(cfg.views, R, R, radius_range, cfg.elevation_range_deg, (-180.0, 180.0),
                                    fov_range, generator=gen)  # fmt: skip
        bg = backgrounds(cfg.views, cfg.bg_aug, recipe.bg_black, gen)
        step = distill_step(model, prior, cfg, cams, bg, it, uncond_1, gen, empty_1)
        loss, info, meta = step.loss, step.info, step.meta
        if cfg.scale_reg > 0:
            loss = loss + cfg.scale_reg * model.scales.amax(-1).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        ctrl.update(meta)
        opt.step()
        refined = ctrl.step(model, opt, it + 1, generator=gen)
        t_prior += step.prior_s
        row = {"iter": it + 1, "loss": loss.item(), "t": info["t"], "num": model.num, **refined}
        history.append(row)
        if callback is not None:
            callback(it, row)
        if preview_due(it + 1):  # only while `latent3d app` watches
            report_preview(preview_image(model, cfg))
        if it % 10 == 0 or it == cfg.iters - 1:
            bar.set_postfix(loss=f"{row['loss']:.3g}", n=model.num)
    wall = time.time() - t0
    timings = {"optimise_s": round(wall, 3), "s_per_iter": round(wall / cfg.iters, 4),
               "prior_s_per_iter": round(t_prior / cfg.iters, 4),
               "render_and_update_s_per_iter": round((wall - t_prior) / cfg.iters, 4),
               "threads_mean": round(sum(threads) / len(threads), 2)}
    return DreamResult(model, cfg, history, timings)

