"""The object prior's training set: renders of the named objects by latent3d's ray caster, cached on disk."""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from torch import Tensor

from latent3d.data.procedural.captions import caption
from latent3d.data.procedural.objects import make_object
from latent3d.data.procedural.raycast import render_views
from latent3d.priors.object_prior.config import ObjectPriorConfig
from latent3d.render.camera import orbit_cameras
from latent3d.runtime import num_threads


def render_training_set(cfg: ObjectPriorConfig) -> tuple[Tensor, list[str]]:
    """Renders ``[N, 3, R, R]`` in [0, 1] (white background) and their captions ("a red snowman, side view").

    Azimuths are stratified per (object, colour), elevations uniform in ``elevation_range_deg``; deterministic.
    """
    g = torch.Generator().manual_seed(cfg.seed)
    images, caps = [], []
    with num_threads(1):  # the ray caster is many small element-wise ops: one thread is fastest
        _render_all(cfg, g, images, caps)
    return torch.cat(images).contiguous(), caps  # cat keeps the channels-last strides of the permuted renders


def _render_all(cfg: ObjectPriorConfig, g: torch.Generator, images: list, caps: list) -> None:
    for name in cfg.objects:
        for color in cfg.colors:
            obj = make_object(name, color)
            az = 360.0 * (torch.rand(1, generator=g) + torch.arange(cfg.views)) / cfg.views - 180.0
            lo, hi = cfg.elevation_range_deg
            el = lo + (hi - lo) * torch.rand(cfg.views, generator=g)
            V, K = orbit_cameras(cfg.radius, el, az, cfg.fov_y, cfg.resolution, cfg.resolution)
            r = render_views(obj, V, K, cfg.resolution, cfg.resolution, ss=cfg.supersample)
            images.append(r.rgb.permute(0, 3, 1, 2).clamp(0, 1))
            caps += [caption(name, color, float(a), float(e)) for a, e in zip(az, el)]


_DATA_KEYS = ("resolution", "objects", "colors", "views", "elevation_range_deg", "radius", "fov_y", "supersample", "seed")


def cached_training_set(out_dir: Path, cfg: ObjectPriorConfig) -> tuple[Tensor, list[str], float]:
    """The training renders, cached in ``out_dir/data``; returns (images [N, 3, R, R] in [0, 1], captions, render
    seconds).

    The cache is keyed by the data settings (a changed setting renders afresh). A fresh run trains on what it reads
    back from the cache, not on the tensor the renderer returned, so a resumed run (which only reads) trains on the
    same values *and* the same memory layout: a channels-last tensor takes other CPU convolution kernels, whose
    float rounding differs (that broke bit-for-bit resume).
    """
    from safetensors.torch import load_file, save_file

    from latent3d.io.atomic import atomic_path, write_text

    key = json.dumps({k: getattr(cfg, k) for k in _DATA_KEYS}, sort_keys=True)
    meta_path, data_path = out_dir / "data" / "captions.json", out_dir / "data" / "renders.safetensors"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() and data_path.exists() else {}
    if meta.get("key") != key:
        t0 = time.time()
        images, caps = render_training_set(cfg)
        meta = {"key": key, "captions": caps, "render_s": time.time() - t0}
        data_path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(data_path) as tmp:
            save_file({"images": images}, str(tmp))
        write_text(meta_path, json.dumps(meta))
    return load_file(data_path)["images"], meta["captions"], meta["render_s"]
