"""Lifting images into a voxel grid (NF-LDM's scene auto-encoder, Kim et al. 2023, Sec. 3.1, after Lift-Splat-Shoot,
Philion & Fidler 2020): per pixel, densities at D fixed depth bins and a feature vector; the bins' occupancy weights
``O(h, w, d) = exp(-sum_{j<d} sigma_j delta_j) (1 - exp(-sigma_d delta_d))``; frustum cells ``[O phi, sigma]`` at
their world points; every voxel the mean of the cells that fall into it.

``lift`` makes the cells, ``splat_to_voxels`` averages them into a grid by one ``index_add_`` over precomputed voxel
indices (no loop over cameras or voxels), with :func:`splat_to_voxels_reference` (a dense one-hot matrix product) as
its twin. Grids follow :mod:`latent3d.render.grid_checks`: ``[C, X, Y, Z]`` filling ``[bbox_min, bbox_max]``, voxel
``(i, j, k)`` spanning ``bbox_min + [i, i + 1) h``; the Z axis is kept (Lift-Splat-Shoot collapses it for its BEV).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from latent3d.render.camera import pixel_rays


def depth_bins(near: float, far: float, n: int) -> tuple[Tensor, Tensor]:  # centres [D], widths [D]
    """``n`` equal depth bins between ``near`` and ``far``: their centres (the z-depths the cells sit at) and widths
    (the ``delta`` of the occupancy weights)."""
    edges = torch.linspace(near, far, n + 1, dtype=torch.float64)
    return ((edges[1:] + edges[:-1]) / 2).float(), (edges[1:] - edges[:-1]).float()


def frustum_points(
    Ks: Tensor,  # [V, 3, 3]
    viewmats: Tensor,  # [V, 4, 4] world-to-camera (OpenCV)
    depths: Tensor,  # [D] z-depths (bin centres)
    height: int,
    width: int,
) -> Tensor:  # [V, D, H, W, 3] world points at the pixel centres and the given z-depths
    """The world point of every (view, depth bin, pixel): ``origin + z * dir`` with ``dir`` of camera-space z 1."""
    origins, dirs = pixel_rays(viewmats, Ks, width, height, normalize=False)  # [V, H, W, 3] each
    z = depths.to(dirs.dtype)[None, :, None, None, None]
    return origins[:, None] + z * dirs[:, None]


def occupancy_weights(
    sigma: Tensor,  # [V, D, H, W] >= 0 densities per depth bin
    deltas: Tensor,  # [D] bin widths
) -> Tensor:  # [V, D, H, W]
    """``O_d = exp(-sum_{j<d} sigma_j delta_j) (1 - exp(-sigma_d delta_d))`` (NF-LDM Sec. 3.1, the NeRF weights of
    eq. 3 over the depth bins): how much of the pixel's ray ends in bin d; sums to at most 1 over d."""
    tau = sigma * deltas.to(sigma.dtype)[None, :, None, None]
    before = torch.cumsum(tau, dim=1) - tau  # exclusive cumulative sum
    return torch.exp(-before) * -torch.expm1(-tau)


def lift(
    features: Tensor,  # [V, C, H, W] per-pixel features phi
    sigma: Tensor,  # [V, D, H, W] >= 0 densities per depth bin
    deltas: Tensor,  # [D]
) -> Tensor:  # [V, C + 1, D, H, W] cells [O phi, sigma]
    """The frustum cells of NF-LDM Sec. 3.1: occupancy-weighted features and the density itself."""
    occ = occupancy_weights(sigma, deltas)
    return torch.cat([occ[:, None] * features[:, :, None], sigma[:, None]], dim=1)


def voxel_index(
    points: Tensor,  # [N, 3] world
    bbox_min: Sequence[float] | Tensor,  # [3]
    bbox_max: Sequence[float] | Tensor,  # [3]
    resolution: tuple[int, int, int],  # (X, Y, Z)
) -> tuple[Tensor, Tensor]:  # flat index [N] (into X*Y*Z), inside [N] bool
    """The voxel each point falls into (flat index ``(i * Y + j) * Z + k``) and whether it lies in the box."""
    lo = torch.as_tensor(bbox_min, dtype=points.dtype, device=points.device)
    hi = torch.as_tensor(bbox_max, dtype=points.dtype, device=points.device)
    res = torch.tensor(resolution, device=points.device)
    ijk = torch.floor((points - lo) / (hi - lo) * res.to(points.dtype)).long()
    inside = ((ijk >= 0) & (ijk < res)).all(-1)
    ijk = torch.where(inside[:, None], ijk, 0)
    return (ijk[:, 0] * resolution[1] + ijk[:, 1]) * resolution[2] + ijk[:, 2], inside


def splat_to_voxels(
    points: Tensor,  # [N, 3] world positions of the cells
    values: Tensor,  # [N, C]
    bbox_min: Sequence[float] | Tensor,  # [3]
    bbox_max: Sequence[float] | Tensor,  # [3]
    resolution: tuple[int, int, int],  # (X, Y, Z)
) -> tuple[Tensor, Tensor]:  # grid [C, X, Y, Z] (mean of the cells in each voxel, 0 where none), count [X, Y, Z]
    """Each voxel the mean of the cells that fall into it (NF-LDM Sec. 3.1), by one ``index_add_`` (Lift-Splat-
    Shoot's splat with a mean instead of a sum); differentiable w.r.t. ``values``."""
    idx, inside = voxel_index(points, bbox_min, bbox_max, resolution)
    n_vox = resolution[0] * resolution[1] * resolution[2]
    idx, vals = idx[inside], values[inside]
    total = vals.new_zeros(n_vox, values.shape[1]).index_add_(0, idx, vals)
    count = vals.new_zeros(n_vox).index_add_(0, idx, torch.ones_like(idx, dtype=vals.dtype))
    grid = total / count.clamp_min(1)[:, None]
    return grid.T.reshape(values.shape[1], *resolution), count.reshape(resolution)


def splat_to_voxels_reference(
    points: Tensor,  # [N, 3]
    values: Tensor,  # [N, C]
    bbox_min: Sequence[float] | Tensor,  # [3]
    bbox_max: Sequence[float] | Tensor,  # [3]
    resolution: tuple[int, int, int],
) -> tuple[Tensor, Tensor]:  # grid [C, X, Y, Z], count [X, Y, Z]
    """Twin of :func:`splat_to_voxels` for tests: a dense ``[X*Y*Z, N]`` membership matrix built by comparing every
    voxel's box with every point, then a matrix product."""
    lo = torch.as_tensor(bbox_min, dtype=points.dtype)
    hi = torch.as_tensor(bbox_max, dtype=points.dtype)
    h = (hi - lo) / torch.tensor(resolution, dtype=points.dtype)
    axes = [lo[a] + h[a] * torch.arange(resolution[a], dtype=points.dtype) for a in range(3)]
    corner = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 1, 3)  # [XYZ, 1, 3] lower corners
    rel = (points[None] - corner) / h  # [XYZ, N, 3] position in voxel units from each corner
    member = ((rel >= 0) & (rel < 1)).all(-1).to(values.dtype)  # [XYZ, N]
    count = member.sum(1)
    grid = (member @ values) / count.clamp_min(1)[:, None]
    return grid.T.reshape(values.shape[1], *resolution), count.reshape(resolution)
