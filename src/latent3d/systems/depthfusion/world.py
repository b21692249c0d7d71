"""DepthFusion (LDM3D, Stan et al. 2023, arXiv 2305.10853, Sec. 5): an RGBD panorama becomes a 360° world.

The pipeline of the paper's application, step by step:

1. an equirectangular RGB panorama and its depth (LDM3D-pano outputs both; here any RGBD panorama);
2. the RGB is mapped onto a sphere seen from its centre and the depth moves each vertex along its ray (0.5 stays,
   towards 1 nearer, towards 0 farther): :func:`latent3d.render.sphere.build_displaced_sphere`;
3. the world is viewed from the centre (monoscopic: unchanged panorama) or in stereo: omnidirectional stereo so the
   eyes can turn around (:func:`latent3d.render.stereo.render_ods`), and from points off the centre, where nearer
   things move more (parallax).

:func:`build_world` writes everything a person needs to look at the result: ``world.glb`` (opens in any glTF viewer,
Blender, ``latent3d view``), ``stereo_tb.png`` (a top-bottom 360° stereo photo for VR photo viewers), ``anaglyph.png``
(red-cyan preview), ``parallax.png`` (perspective views from left of, at and right of the centre), ``tour.mp4`` (a
short fly-through), the panorama itself and ``run.json``.
"""

from __future__ import annotations

import json
import math
import resource
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from latent3d.render.sphere import DepthMode, DisplacedSphere
from latent3d.systems.depthfusion.config import WorldConfig


def config_dict(cfg: WorldConfig) -> dict:
    return asdict(cfg)


def tour_path(
    n_frames: int,
    reach: float,  # metres: the farthest the camera gets from the centre
    yaw0_deg: float = 0.0,
    turn_deg: float = 120.0,
) -> tuple[Tensor, Tensor, Tensor]:  # positions [T, 3], yaw [T] degrees, pitch [T] degrees
    """A short fly-through that starts and ends at the centre: the view turns right by ``turn_deg`` while the
    camera dollies forward (``sin(pi s)``) and sways sideways (``sin(2 pi s)``), so parallax shows both ways."""
    s = torch.linspace(0.0, 1.0, n_frames)
    yaw = yaw0_deg + turn_deg * s
    heading = math.radians(yaw0_deg + 0.5 * turn_deg)
    fwd = torch.tensor([math.cos(heading), -math.sin(heading), 0.0])
    right = torch.tensor([-math.sin(heading), -math.cos(heading), 0.0])
    pos = reach * (0.8 * torch.sin(math.pi * s)[:, None] * fwd + 0.5 * torch.sin(2 * math.pi * s)[:, None] * right)
    pitch = -5.0 * torch.sin(math.pi * s)
    return pos, yaw, pitch


def parallax_views(
    sphere: DisplacedSphere,
    size: int,
    fov_deg: float,
    offset: float,  # metres left/right of the centre
    yaw_deg: float = 0.0,
) -> Tensor:  # [3, size, size, 3] views from the left, the centre, the right
    """Perspective views looking along ``yaw_deg`` from ``offset`` metres left of, at, and right of the centre."""
    from latent3d.render.camera import intrinsics_from_fov
    from latent3d.render.stereo import camera_looking, render_perspective

    h = math.radians(yaw_deg)
    right = torch.tensor([-math.sin(h), -math.cos(h), 0.0])
    pos = torch.stack([-offset * right, torch.zeros(3), offset * right])
    viewmats = camera_looking(pos, yaw_deg, -5.0)
    Ks = intrinsics_from_fov(math.radians(fov_deg), size, size).expand(3, 3, 3)
    return render_perspective(sphere, viewmats, Ks, size, size)[0]


def _disparity_for_png(depth: Tensor, mode: DepthMode) -> Tensor:  # [H, W] -> [H, W] in [0, 1], bright = near
    if mode == "metric":
        from latent3d.io.depth import depth_to_disparity

        return depth_to_disparity(torch.where(torch.isfinite(depth), depth, torch.zeros_like(depth)))
    return depth.clamp(0.0, 1.0)


def _panorama_tensors(pano_rgb: Any, pano_depth: Any) -> tuple[Tensor, Tensor]:  # rgb [H, W, 3], depth [H, W]
    """The panorama as float32 tensors (uint8 RGB scaled to [0, 1]), checked to be [H, W, 3] and [H, W]."""
    rgb = torch.as_tensor(pano_rgb)
    rgb = rgb.float() / 255.0 if rgb.dtype == torch.uint8 else rgb.float()
    depth = torch.as_tensor(pano_depth, dtype=torch.float32)
    if rgb.ndim != 3 or rgb.shape[-1] != 3 or depth.shape != rgb.shape[:2]:
        raise ValueError(f"build_world: pano_rgb must be [H, W, 3] and pano_depth [H, W] of the same size, got "
                         f"{tuple(rgb.shape)} and {tuple(depth.shape)}")
    return rgb, depth


class _Laps:
    """Wall time of each step, as ``{"<name>_s": seconds}``."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self.t = time.time()

    def lap(self, name: str) -> None:
        now = time.time()
        self.timings[f"{name}_s"] = round(now - self.t, 3)
        self.t = now


def _write_sphere(out: Path, rgb: Tensor, depth: Tensor, cfg: WorldConfig) -> DisplacedSphere:
    """Steps 1-2 (Sec. 5): write the panorama (RGB, 16-bit disparity) and the displaced sphere as ``world.glb``."""
    from latent3d.io.depth import quantize_depth, write_depth_png16
    from latent3d.io.image import save_image
    from latent3d.render.sphere import build_displaced_sphere, export_world_glb

    save_image(out / "pano_rgb.png", rgb)
    write_depth_png16(out / "pano_depth.png", quantize_depth(_disparity_for_png(depth, cfg.depth_mode)).numpy())
    sphere = build_displaced_sphere(rgb, depth, cfg.sphere_lon, cfg.sphere_lat, cfg.depth_mode, cfg.strength,
                                    cfg.radius, cfg.far)
    export_world_glb(out / "world.glb", sphere)
    return sphere


def _write_stereo(out: Path, sphere: DisplacedSphere, cfg: WorldConfig) -> None:
    """Step 3, stereo: the ODS pair as a top-bottom 360° photo and a red-cyan anaglyph."""
    from latent3d.io.image import save_image
    from latent3d.render.stereo import anaglyph, render_ods, top_bottom

    w = cfg.stereo_width
    left, right = render_ods(sphere, w, w // 2, cfg.ipd)
    save_image(out / "stereo_tb.png", top_bottom(left, right))
    save_image(out / "anaglyph.png", anaglyph(left, right))


def _write_tour(out: Path, sphere: DisplacedSphere, cfg: WorldConfig, reach: float, progress: bool) -> tuple[int, str]:
    """Step 3, parallax in motion: render :func:`tour_path` and write it as a video -> (frames, video file name)."""
    from tqdm import tqdm

    from latent3d.io.video import write_video
    from latent3d.render.camera import intrinsics_from_fov
    from latent3d.render.stereo import camera_looking, render_perspective

    n = max(2, round(cfg.tour_seconds * cfg.tour_fps))
    pos, yaw, pitch = tour_path(n, reach)
    K = intrinsics_from_fov(math.radians(cfg.fov_deg), cfg.view_size, cfg.view_size)[None]
    frames = []
    for k in tqdm(range(n), desc="tour", unit="frame", disable=not progress, leave=False):
        vm = camera_looking(pos[k], yaw[k], pitch[k])
        img = render_perspective(sphere, vm, K, cfg.view_size, cfg.view_size)[0][0]
        frames.append((img * 255.0).round().to(torch.uint8))
    video = write_video(out / "tour.mp4", frames, fps=cfg.tour_fps)
    return n, Path(video).name


def _run_record(cfg: WorldConfig, rgb: Tensor, sphere: DisplacedSphere, n_frames: int, reach: float, video: str,
                timings: dict[str, float]) -> dict:
    """``run.json`` of a world: the settings, the sphere's and the stereo's numbers, timings and the files."""
    w = cfg.stereo_width
    files = ["pano_rgb.png", "pano_depth.png", "world.glb", "stereo_tb.png", "anaglyph.png", "parallax.png",
             video, "run.json"]
    return {
        "system": "DepthFusion (LDM3D arXiv 2305.10853, Sec. 5)",
        "panorama": {"width": int(rgb.shape[1]), "height": int(rgb.shape[0])},
        "config": config_dict(cfg),
        "sphere": {"segments": [cfg.sphere_lon, cfg.sphere_lat], "r_min": round(sphere.r_min, 5),
                   "r_max": round(sphere.r_max, 5),
                   "vertices": cfg.sphere_lon * (cfg.sphere_lat + 1) + cfg.sphere_lat - 1,
                   "faces": 2 * cfg.sphere_lon * (cfg.sphere_lat - 1)},
        "stereo": {"layout": "top-bottom, left eye on top", "eye_size": [w, w // 2], "ipd": cfg.ipd,
                   "equator_disparity_deg_at_r_min": round(math.degrees(2 * math.asin(min(1.0, 0.5 * cfg.ipd /
                                                                                          sphere.r_min))), 4)},
        "tour": {"frames": n_frames, "fps": cfg.tour_fps, "reach": round(reach, 4)},
        "timings": timings,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "files": files,
    }


def build_world(
    pano_rgb: Any,  # [H, W, 3] float in [0, 1] (or uint8), equirect, centre column looking along +x
    pano_depth: Any,  # [H, W] disparity-style in [0, 1] (bright = near), or metric distance (depth_mode="metric")
    out_dir: str | Path,
    config: WorldConfig | None = None,
    extra: dict | None = None,
    started_at: float | None = None,
    progress: bool = True,
) -> dict:
    """Build the DepthFusion world of an RGBD panorama (LDM3D Sec. 5) and write it to ``out_dir`` (every file
    atomically).

    Writes ``pano_rgb.png``, ``pano_depth.png`` (16-bit disparity), ``world.glb``, ``stereo_tb.png``,
    ``anaglyph.png``, ``parallax.png``, ``tour.mp4`` and ``run.json`` (settings, sphere statistics, timings; ``extra``
    is merged in; ``started_at``, a ``time.time()`` value, adds the caller's total wall time). Returns the run dict.
    """
    from latent3d.io.atomic import write_text
    from latent3d.io.image import make_grid, save_image

    cfg = config or WorldConfig()
    out = Path(out_dir)
    rgb, depth = _panorama_tensors(pano_rgb, pano_depth)
    laps = _Laps()
    sphere = _write_sphere(out, rgb, depth, cfg)
    laps.lap("sphere")
    _write_stereo(out, sphere, cfg)
    laps.lap("stereo")
    reach = cfg.tour_reach * sphere.r_min
    views = parallax_views(sphere, cfg.view_size, cfg.fov_deg, reach)
    save_image(out / "parallax.png", make_grid(list(views), ncols=3))
    laps.lap("parallax")
    n, video = _write_tour(out, sphere, cfg, reach, progress)
    laps.lap("tour")
    run = {**_run_record(cfg, rgb, sphere, n, reach, video, laps.timings), **(extra or {})}
    if started_at is not None:
        run["timings"]["total_s"] = round(time.time() - started_at, 3)
    write_text(out / "run.json", json.dumps(run, indent=1))
    return run
