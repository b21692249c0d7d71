"""What ``latent3d dream`` writes: splats, views, turntable, mesh, run.json -- and the score against ground truth
when the prompt names one of the bundled prior's objects."""

from __future__ import annotations

import json
import re
import resource
import time
from dataclasses import asdict
from pathlib import Path

import torch

from latent3d.data.procedural.objects import OBJECT_NAMES, make_object
from latent3d.data.procedural.raycast import render_views
from latent3d.data.procedural.shading import COLORS
from latent3d.io.atomic import write_text
from latent3d.io.image import make_grid, save_image
from latent3d.io.mesh import export_mesh
from latent3d.io.video import write_video
from latent3d.metrics.image import mask_iou, psnr, ssim
from latent3d.render.camera import orbit_cameras, turntable_cameras
from latent3d.render.fusion import tsdf_fuse
from latent3d.systems.lucid_dreamer.dream import DreamConfig, DreamResult
from latent3d.systems.lucid_dreamer.views import mean_fov, mean_radius, render_model


def config_dict(cfg: DreamConfig) -> dict:
    d = asdict(cfg)
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}


def named_object(prompt: str) -> tuple[str, str | None] | None:
    """``"a red snowman"`` -> ``("snowman", "red")`` when the prompt names a procedural object, else None."""
    words = re.findall(r"[a-z]+", prompt.lower())
    names = [w for w in words if w in OBJECT_NAMES]
    if not names:
        return None
    colors = [w for w in words if w in COLORS]
    return names[0], (colors[0] if colors else None)


@torch.no_grad()
def score_against_ground_truth(res: DreamResult, name: str, color: str | None, n_views: int = 16,
                               size: int = 64) -> dict:
    """PSNR / SSIM (white background) and mask IoU of the Gaussians' renders vs the exact renders of the named
    object, over ``n_views`` held-out views (azimuth offset by half a step from the turntable, elevation 20)."""
    az = (torch.arange(n_views) + 0.5) * (360.0 / n_views)
    V, K = orbit_cameras(mean_radius(res.config), 20.0, az, mean_fov(res.config), size, size)
    gt = render_views(make_object(name, color), V, K, size, size, ss=2)
    rgb, _, alpha = render_model(res.model, V, K, size)
    return {"object": name, "color": color, "views": n_views, "size": size,
            "psnr": round(psnr(rgb, gt.rgb.clamp(0, 1)), 3), "ssim": round(ssim(rgb, gt.rgb.clamp(0, 1)), 4),
            "mask_iou": round(mask_iou(alpha > 0.5, gt.mask), 4)}  # fmt: skip


def write_dream_outputs(res: DreamResult, out: Path, prior_name: str, view_size: int = 128, frames: int = 48,
                        mesh_resolution: int = 64, extra: dict | None = None,
                        started_at: float | None = None) -> dict:
    """Write gaussians.ply, grid.png (8 views), turntable.mp4, mesh.glb and run.json into ``out``; ``started_at``
    (a ``time.time()`` value) adds the command's total wall time to the timings."""
    t0 = time.time()
    out = Path(out)
    cfg, model = res.config, res.model
    radius, fov = mean_radius(cfg), mean_fov(cfg)
    model.save_ply(out / "gaussians.ply")
    V, K = turntable_cameras(8, view_size, radius, fov)
    rgb8, _, _ = render_model(model, V, K, view_size)
    save_image(out / "grid.png", make_grid(list(rgb8), ncols=4))
    V, K = turntable_cameras(frames, view_size, radius, fov)
    rgbs, _, _ = render_model(model, V, K, view_size)
    video = write_video(out / "turntable.mp4", (rgbs * 255).round().to(torch.uint8), fps=24)
    el = torch.tensor([-30.0, 10.0, 50.0]).repeat_interleave(8)
    az = torch.arange(8).repeat(3) * 45.0 + torch.tensor([0.0, 15.0, 30.0]).repeat_interleave(8)
    Vm, Km = orbit_cameras(radius, el, az, fov, 96, 96)
    rgb_m, depth_m, alpha_m = render_model(model, Vm, Km, 96)
    mesh = tsdf_fuse(depth_m, alpha_m, rgb_m, Vm, Km, bound=1.2, resolution=mesh_resolution)
    if len(mesh.faces):
        export_mesh(out / "mesh.glb", mesh.vertices, mesh.faces, vertex_colors=mesh.colors)
    t_export = time.time() - t0
    run = {
        "prompt": cfg.prompt, "method": cfg.method, "prior": prior_name, "config": config_dict(cfg),
        "gaussians": model.num, "mesh": {"vertices": len(mesh.vertices), "faces": len(mesh.faces)},
        "final_loss": sum(h["loss"] for h in res.history[-20:]) / max(1, len(res.history[-20:])),
        "timings": {**res.timings, "export_s": round(t_export, 3)},
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "files": ["gaussians.ply", "grid.png", Path(video).name] + (["mesh.glb"] if len(mesh.faces) else []),
        **(extra or {}),
    }  # fmt: skip
    named = named_object(cfg.prompt)
    if named is not None:
        run["ground_truth"] = score_against_ground_truth(res, *named)
    if started_at is not None:
        run["timings"]["total_s"] = round(time.time() - started_at, 3)
    write_text(out / "run.json", json.dumps(run, indent=1))
    return run
