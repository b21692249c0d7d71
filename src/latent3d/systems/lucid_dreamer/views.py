"""Renders of the Gaussians being dreamt, for the outputs (:mod:`.export`) and ``latent3d app``'s live views: white
background, cameras at the mean radius and field of view of the dream's camera ranges."""

from __future__ import annotations

import torch
from torch import Tensor

from latent3d.io.image import make_grid
from latent3d.render.camera import turntable_cameras
from latent3d.render.gaussians import GaussianModel
from latent3d.systems.lucid_dreamer.config import DreamConfig


@torch.no_grad()
def render_model(model: GaussianModel, viewmats: Tensor, Ks: Tensor, size: int, chunk: int = 16):
    """RGB (white background), expected depth and alpha of ``model`` for many views, in chunks."""
    dev = model.means.device
    rgbs, depths, alphas = [], [], []
    for i in range(0, len(viewmats), chunk):
        V, K = viewmats[i:i + chunk].to(dev), Ks[i:i + chunk].to(dev)
        out, alpha, _ = model.render(V, K, size, size, backgrounds=torch.ones(len(V), 3, device=dev),
                                     render_mode="RGB+ED")  # fmt: skip
        rgbs.append(out[..., :3].clamp(0, 1).cpu())
        depths.append(out[..., 3].cpu())
        alphas.append(alpha[..., 0].cpu())
    return torch.cat(rgbs), torch.cat(depths), torch.cat(alphas)


def mean_radius(cfg: DreamConfig) -> float:
    return 0.5 * (cfg.radius_range[0] + cfg.radius_range[1])


def mean_fov(cfg: DreamConfig) -> float:
    return 0.5 * (cfg.fov_range[0] + cfg.fov_range[1])


def preview_image(model: GaussianModel, cfg: DreamConfig, size: int = 96):  # -> [H, W, 3] uint8, a 2 x 2 grid
    """Four turntable views of the Gaussians as they are now (``latent3d app``'s live preview; no random draw, no
    gradient, nothing of the model changed)."""
    V, K = turntable_cameras(4, size, mean_radius(cfg), mean_fov(cfg))
    rgb, _, _ = render_model(model, V, K, size)
    return make_grid(list(rgb), ncols=2)
