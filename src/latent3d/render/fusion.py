"""Meshes from rendered depth: TSDF fusion (Curless & Levoy 1996) + marching cubes, coloured from the renders.

Used to turn Gaussian splats into a mesh (``mesh.glb`` of ``latent3d dream``): render RGB, expected depth and alpha
from many views, fuse a truncated signed distance in a voxel grid, extract the zero level set with scikit-image's
marching cubes and colour each vertex with the alpha-weighted average of the renders that see it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from latent3d.render.camera import project_points


@dataclass
class FusedMesh:
    vertices: np.ndarray  # [V, 3] float32, world space
    faces: np.ndarray  # [F, 3] int64
    colors: np.ndarray  # [V, 3] uint8


def _sample(img: Tensor, uv: Tensor) -> Tensor:  # img [C, H, W, D], uv [C, N, 2] pixels -> [C, N, D] (nearest)
    C, H, W, D = img.shape
    x = uv[..., 0].floor().long().clamp(0, W - 1)
    y = uv[..., 1].floor().long().clamp(0, H - 1)
    flat = img.reshape(C, H * W, D)
    return torch.gather(flat, 1, (y * W + x)[..., None].expand(-1, -1, D))


@torch.no_grad()
def tsdf_fuse(
    depths: Tensor,  # [C, H, W] camera z (any value where alpha is low)
    alphas: Tensor,  # [C, H, W] in [0, 1]
    rgbs: Tensor,  # [C, H, W, 3] in [0, 1]
    viewmats: Tensor,  # [C, 4, 4]
    Ks: Tensor,  # [C, 3, 3]
    bound: float = 1.0,
    resolution: int = 64,
    trunc: float | None = None,
    alpha_threshold: float = 0.5,
) -> FusedMesh:
    """Fuse the views into a TSDF over ``[-bound, bound]^3`` and extract its zero level set.

    A voxel seen by a view gets ``sdf = clamp(depth - z, -trunc, trunc)`` where the view sees the surface
    (alpha above the threshold) and ``+trunc`` (free space) where the pixel is empty; voxels more than ``trunc``
    behind the observed surface are left unobserved by that view. The fused value is the mean over observing views.
    """
    from skimage.measure import marching_cubes

    trunc = trunc if trunc is not None else 3.0 * 2 * bound / resolution
    C, H, W = depths.shape
    lin = torch.linspace(-bound, bound, resolution)
    grid = torch.stack(torch.meshgrid(lin, lin, lin, indexing="ij"), -1).reshape(-1, 3)  # [M, 3]
    uv, z = project_points(grid, viewmats.float(), Ks.float())  # [C, M, 2], [C, M]
    inside = (z > 1e-3) & (uv[..., 0] >= 0) & (uv[..., 0] < W) & (uv[..., 1] >= 0) & (uv[..., 1] < H)
    d = _sample(depths[..., None].float(), uv)[..., 0]
    a = _sample(alphas[..., None].float(), uv)[..., 0]
    surface = a > alpha_threshold
    sdf = torch.where(surface, (d - z).clamp(-trunc, trunc), torch.full_like(z, trunc))
    observed = inside & (~surface | (d - z > -trunc))
    w = observed.float()
    tsdf = (sdf * w).sum(0) / w.sum(0).clamp(min=1)
    # never observed: behind the surface in every view that frames it. Interior if most views frame it (an object
    # inside the orbit); empty otherwise (grid corners framed by a few views only)
    framed = inside.float().mean(0) >= 0.5
    unseen = torch.where(framed, torch.full_like(tsdf, -trunc), torch.full_like(tsdf, trunc))
    tsdf = torch.where(w.sum(0) > 0, tsdf, unseen)
    vol = tsdf.reshape(resolution, resolution, resolution).numpy()
    if vol.min() >= 0 or vol.max() <= 0:
        return FusedMesh(np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int64), np.zeros((0, 3), np.uint8))
    verts, faces, _, _ = marching_cubes(vol, level=0.0, spacing=(2 * bound / (resolution - 1),) * 3)
    verts = verts - bound  # skimage winds faces counter-clockwise seen from the positive (outside) side
    colors = vertex_colors(torch.from_numpy(verts.astype(np.float32)), depths, alphas, rgbs, viewmats, Ks, trunc)
    return FusedMesh(verts.astype(np.float32), faces.astype(np.int64), colors)


@torch.no_grad()
def vertex_colors(
    verts: Tensor,  # [V, 3]
    depths: Tensor,  # [C, H, W]
    alphas: Tensor,  # [C, H, W]
    rgbs: Tensor,  # [C, H, W, 3]
    viewmats: Tensor,
    Ks: Tensor,
    tol: float,
) -> np.ndarray:  # [V, 3] uint8
    """Mean colour over the views in which the vertex is visible (its depth within ``tol`` of the rendered depth)."""
    C, H, W = depths.shape
    uv, z = project_points(verts, viewmats.float(), Ks.float())
    d = _sample(depths[..., None].float(), uv)[..., 0]
    a = _sample(alphas[..., None].float(), uv)[..., 0]
    col = _sample(rgbs.float(), uv)  # [C, V, 3]
    vis = ((d - z).abs() < 2 * tol) & (a > 0.5) & (z > 1e-3)
    w = vis.float()[..., None]
    mean = (col * w).sum(0) / w.sum(0).clamp(min=1)
    fallback = (col * a[..., None]).sum(0) / a.sum(0)[..., None].clamp(min=1e-6)
    out = torch.where(w.sum(0) > 0, mean, fallback)
    return (out.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
