"""Depth-based reprojection between two posed views: the geometric check that a posed RGB-D source (procedural
trajectories, VizDoom recordings, GSN's published episodes) is consistent, and the warp a scene auto-encoder's data
must satisfy (NF-LDM, Kim et al. 2023, Sec. 3.1 lifts exactly these depths along exactly these rays).

Pixel ``(u, v)`` of view ``j`` at z-depth ``d`` is the world point ``X = c2w_j (d K_j^-1 (u, v, 1))``; its colour in
view ``i`` is read where ``X`` projects there (bilinear, pixel centres at ``(col + 0.5, row + 0.5)``, the
convention of :mod:`latent3d.render.camera`). Occlusion is not modelled: a point hidden in view ``i`` reads the
occluder's colour, which is why the check compares the error of the true pose with that of other poses instead of
asking for zero.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from latent3d.render.camera import pixel_rays, project_points


def reproject(
    image_i: Tensor,  # [H, W, 3] the view to read colours from
    viewmat_i: Tensor,  # [4, 4] world-to-camera of view i
    K_i: Tensor,  # [3, 3]
    depth_j: Tensor,  # [h, w] z-depth of view j (0, inf or nan: no depth)
    viewmat_j: Tensor,  # [4, 4]
    K_j: Tensor,  # [3, 3]
) -> tuple[Tensor, Tensor]:  # warped [h, w, 3] (view i's colours seen from view j), valid [h, w] bool
    """View ``i``'s image warped into view ``j`` through ``j``'s depth; ``valid`` marks pixels with a finite positive
    depth whose point lies in front of camera ``i`` and projects inside its image."""
    h, w = depth_j.shape
    H, W = image_i.shape[:2]
    dt = torch.float64
    origins, dirs = pixel_rays(viewmat_j[None].to(dt), K_j[None].to(dt), w, h, normalize=False)  # [1, h, w, 3]
    d = depth_j.to(dt)
    has = torch.isfinite(d) & (d > 0)
    pts = origins[0] + torch.where(has, d, 0)[..., None] * dirs[0]  # [h, w, 3] world
    uv, z = project_points(pts.reshape(-1, 3), viewmat_i[None].to(dt), K_i[None].to(dt))  # [1, hw, 2], [1, hw]
    uv, z = uv[0].reshape(h, w, 2), z[0].reshape(h, w)
    inside = (uv[..., 0] >= 0) & (uv[..., 0] <= W) & (uv[..., 1] >= 0) & (uv[..., 1] <= H)
    valid = has & (z > 1e-6) & inside
    grid = torch.stack([2 * uv[..., 0] / W - 1, 2 * uv[..., 1] / H - 1], dim=-1)  # align_corners=False
    grid = torch.where(valid[..., None], grid, 0).to(image_i.dtype)
    warped = F.grid_sample(image_i.permute(2, 0, 1)[None], grid[None], mode="bilinear", padding_mode="border",
                           align_corners=False)[0].permute(1, 2, 0)  # fmt: skip
    return warped, valid


def reprojection_error(
    image_i: Tensor,  # [H, W, 3]
    viewmat_i: Tensor,  # [4, 4]
    K_i: Tensor,  # [3, 3]
    image_j: Tensor,  # [h, w, 3]
    depth_j: Tensor,  # [h, w]
    viewmat_j: Tensor,  # [4, 4]
    K_j: Tensor,  # [3, 3]
) -> tuple[float, float]:  # mean absolute colour error over valid pixels, share of valid pixels
    """The photometric error of :func:`reproject` (mean |warped - image_j| over the valid pixels) and the share of
    view ``j``'s pixels that were valid (nan error when none)."""
    warped, valid = reproject(image_i, viewmat_i, K_i, depth_j, viewmat_j, K_j)
    share = float(valid.float().mean())
    if not valid.any():
        return float("nan"), share
    return float((warped - image_j.to(warped.dtype)).abs()[valid].mean()), share
