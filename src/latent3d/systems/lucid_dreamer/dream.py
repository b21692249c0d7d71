"""Text-to-3D with Gaussian splats distilled from a 2D prior (LucidDreamer, Liang et al. 2023, Sec. 3-4).

Each iteration renders a batch of random orbit views of the Gaussians, appends the view to the prompt
("..., side view"), turns the renders into prior latents and applies the ISM (or SDS) gradient through the
differentiable rasterizer; adaptive density control grows and prunes the Gaussians (Kerbl et al. 2023, Sec. 5).
Defaults follow the official LucidDreamer config for SD-size priors and a tuned CPU budget for the bundled prior.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, get_args

import torch
from torch import Tensor

from latent3d.data.procedural.captions import view_bin
from latent3d.distill import distillation_loss, ism_grad, ism_timestep, sds_grad
from latent3d.distill.sds import sds_timestep
from latent3d.render.camera import sample_orbit_cameras
from latent3d.render.densify import DensifyConfig, DensityController, LearningRates, make_optimizer, update_means_lr
from latent3d.render.gaussians import GaussianModel, InitShape
from latent3d.systems.lucid_dreamer.config import DreamConfig

if TYPE_CHECKING:
    from latent3d.priors.base import DiffusionPrior


def resolve_defaults(cfg: DreamConfig, prior: DiffusionPrior) -> DreamConfig:
    """Fill the None fields for this prior: small (bundled) priors get the CPU settings, big ones LucidDreamer's."""
    small = prior.resolution <= 128
    if cfg.iters is None:
        cfg.iters = 300 if small else 5000
    if cfg.resolution is None:
        cfg.resolution = prior.resolution
    if cfg.radius_range is None:
        cfg.radius_range = (2.8, 3.2) if small else (5.2, 5.5)
    if cfg.elevation_range_deg is None:
        cfg.elevation_range_deg = (-10.0, 60.0) if small else (-15.0, 45.0)
    if cfg.fov_range is None:
        cfg.fov_range = (0.6, 0.8) if small else (0.32, 0.60)
    if cfg.guidance_scale is None:  # the prior's recommendation, else LucidDreamer (7.5) / DreamFusion (100)
        cfg.guidance_scale = prior.defaults.get(f"{cfg.method}_guidance_scale", 7.5 if cfg.method == "ism" else 100.0)
    cfg.ism.guidance_scale = cfg.sds.guidance_scale = cfg.guidance_scale
    if small:  # the bundled prior's warm-up must fit its short run
        cfg.ism.warmup_iters = min(cfg.ism.warmup_iters, max(1, cfg.iters // 2))
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
    loss: Tensor  # [] whose gradient w.r.t. the latents is grad / views
    latents: Tensor  # [V, C, h, w] (differentiable w.r.t. the Gaussians)
    grad: Tensor  # [V, C, h, w] ISM / SDS gradient
    info: dict
    meta: dict  # rasterizer meta (means2d for densification)
    prior_s: float  # seconds spent in the prior (text, inversion, guided eps)


def distill_step(
    model: GaussianModel,
    prior: DiffusionPrior,
    cfg: DreamConfig,
    cams,  # OrbitSample of V views
    backgrounds: Tensor,  # [V, 3]
    iteration: int,
    uncond: Tensor,  # [1, L, D] empty-prompt embedding
    generator: torch.Generator,
) -> DistillStep:
    """Render the views, encode them, and build the score-distillation loss (LucidDreamer Alg. 1, one step)."""
    dev, R = prior.device, cfg.resolution
    rgb, _, meta = model.render(cams.viewmats.to(dev), cams.Ks.to(dev), R, R, backgrounds=backgrounds.to(dev))
    meta["means2d"].retain_grad()
    latents = prior.encode_images(rgb.permute(0, 3, 1, 2))  # [V, 3, R, R] -> prior latents
    t0 = time.time()
    cond = prior.encode_text(view_prompts(cfg.prompt, cams.azimuth_deg, cams.elevation_deg))
    if cfg.method == "ism":
        t_idx, delta_t = ism_timestep(cfg.ism, iteration, generator)
        grad, info = ism_grad(prior, latents, cond, uncond, t_idx, delta_t, cfg.ism, generator)
    else:
        t = sds_timestep(cfg.sds, prior.num_train_timesteps, generator)
        grad, info = sds_grad(prior, latents, cond, uncond, t, cfg.sds, generator)
    prior_s = time.time() - t0
    loss = distillation_loss(latents.to(grad.dtype), grad) / cfg.views
    return DistillStep(loss, latents, grad, info, meta, prior_s)


def dream(
    prior: DiffusionPrior,
    cfg: DreamConfig,
    progress: bool = True,
    callback: Callable[[int, dict], None] | None = None,
) -> DreamResult:
    """Optimise Gaussians so that their renders score well under ``prior`` (LucidDreamer Alg. 1 with ISM or SDS)."""
    from tqdm.auto import trange

    cfg = resolve_defaults(cfg, prior)
    gen = torch.Generator().manual_seed(cfg.seed)
    dev = prior.device
    model = init_gaussians(cfg, gen).to(dev)
    extent = cfg.init_extent * 1.5
    lrs = LearningRates(means=1.6e-3, means_final=1.6e-5, means_max_steps=cfg.iters, sh_dc=1e-2, opacity_logits=5e-2,
                        log_scales=5e-3, quats=1e-3)  # fmt: skip
    opt = make_optimizer(model, lrs, extent)
    dcfg = DensifyConfig(refine_start=int(cfg.densify_from * cfg.iters), refine_stop=int(cfg.densify_until * cfg.iters),
                         refine_every=cfg.densify_every, reset_every=0, grad_threshold=cfg.grad_threshold,
                         prune_opacity=0.01)  # fmt: skip
    ctrl = DensityController(dcfg, extent)
    R = cfg.resolution
    uncond_1 = prior.encode_text([""])
    history, t_prior = [], 0.0
    t0 = time.time()
    bar = trange(cfg.iters, desc=f"dream ({cfg.method})", disable=not progress, dynamic_ncols=True)
    for it in bar:
        update_means_lr(opt, it, lrs, extent)
        cams = sample_orbit_cameras(cfg.views, R, R, cfg.radius_range, cfg.elevation_range_deg, (-180.0, 180.0),
                                    cfg.fov_range, generator=gen)  # fmt: skip
        white = torch.rand(cfg.views, generator=gen) >= cfg.bg_aug
        bg = torch.where(white[:, None], torch.ones(cfg.views, 3), torch.rand(cfg.views, 3, generator=gen))
        step = distill_step(model, prior, cfg, cams, bg, it, uncond_1, gen)
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
        if it % 10 == 0 or it == cfg.iters - 1:
            bar.set_postfix(loss=f"{row['loss']:.3g}", n=model.num)
    wall = time.time() - t0
    timings = {"optimise_s": round(wall, 3), "s_per_iter": round(wall / cfg.iters, 4),
               "prior_s_per_iter": round(t_prior / cfg.iters, 4),
               "render_and_update_s_per_iter": round((wall - t_prior) / cfg.iters, 4)}
    return DreamResult(model, cfg, history, timings)

