"""A float64 distillation scene shared by the dream tests: the config's initial Gaussians and orbit views."""

from __future__ import annotations

import dataclasses

import torch

from latent3d.render.camera import sample_orbit_cameras
from latent3d.systems.lucid_dreamer.dream import init_gaussians


def float64_scene(cfg, gen: torch.Generator, views: int = 2, size: int = 32):
    """(GaussianModel, OrbitSample) in float64, drawn from ``gen`` in the order ``dream`` draws them."""
    model = init_gaussians(cfg, gen).double()
    cams = sample_orbit_cameras(views, size, size, cfg.radius_range, cfg.elevation_range_deg, fov_range=cfg.fov_range,
                                generator=gen)  # fmt: skip
    return model, dataclasses.replace(cams, viewmats=cams.viewmats.double(), Ks=cams.Ks.double())
