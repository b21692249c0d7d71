"""Render posed, captioned views of procedural objects/scenes and write them as transforms.json datasets."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from latent3d.data.formats.transforms_json import write_transforms_dataset
from latent3d.data.procedural.captions import caption
from latent3d.data.procedural.object_sets_config import OBJECT_FOV_Y
from latent3d.data.procedural.objects import Object3D
from latent3d.data.procedural.raycast import Render, render_views
from latent3d.data.procedural.scenes import Scene, scene_cameras
from latent3d.render.camera import orbit_cameras


def object_views(
    obj: Object3D,
    n_views: int,
    width: int = 128,
    height: int = 128,
    seed: int = 0,
    radius: float | tuple[float, float] = 3.0,
    elevation_range_deg: tuple[float, float] = (-10.0, 60.0),
    fov_y: float = OBJECT_FOV_Y,
    ss: int = 1,
) -> tuple[Render, list[str]]:
    """Orbit views with stratified azimuth (first view at azimuth 0 = front when ``seed`` gives offset 0),
    uniform elevation and radius, and one caption per view ("a red chair, side view")."""
    g = torch.Generator().manual_seed(seed)
    az = 360.0 * (torch.rand(1, generator=g) + torch.arange(n_views)) / n_views - 180.0
    lo, hi = elevation_range_deg
    el = lo + (hi - lo) * torch.rand(n_views, generator=g)
    r_lo, r_hi = (radius, radius) if isinstance(radius, (int, float)) else radius
    r = r_lo + (r_hi - r_lo) * torch.rand(n_views, generator=g)
    viewmats, Ks = orbit_cameras(r, el, az, fov_y, width, height)
    out = render_views(obj, viewmats, Ks, width, height, ss=ss)
    caps = [caption(obj.name, obj.color_name, float(a), float(e)) for a, e in zip(az, el)]
    return out, caps


def write_object_dataset(out_dir: str | os.PathLike, obj: Object3D, n_views: int, **kw) -> Path:
    """Render :func:`object_views` of ``obj`` and write them to ``out_dir`` (returns transforms.json's path)."""
    r, caps = object_views(obj, n_views, **kw)
    meta = {"object": obj.name, "color": obj.color_name, "seed": obj.seed, "variation": obj.variation}
    return write_transforms_dataset(out_dir, r.rgb, r.viewmats, r.Ks, r.depth, r.mask, caps, meta=meta)


def write_scene_dataset(out_dir: str | os.PathLike, scene: Scene, n_views: int, width: int = 128, height: int = 128,
                        seed: int = 0, fov_y: float = 0.9, ss: int = 1) -> Path:
    """Render :func:`latent3d.data.procedural.scenes.scene_cameras` views of ``scene`` and write them with the scene
    caption."""
    viewmats, Ks = scene_cameras(scene, n_views, width, height, seed=seed, fov_y=fov_y)
    r = render_views(scene, viewmats, Ks, width, height, ss=ss)
    meta = {"scene": scene.kind, "seed": scene.seed}
    return write_transforms_dataset(out_dir, r.rgb, r.viewmats, r.Ks, r.depth, r.mask, [scene.caption] * n_views,
                                    meta=meta)
