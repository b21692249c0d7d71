"""EWA projection of 3D Gaussians to the image plane and their assignment to screen tiles.

References: Zwicker et al. 2001/2002, "EWA volume/splatting" (local affine approximation J of the perspective map,
Sigma' = J W Sigma W^T J^T); Kerbl et al. 2023 (3DGS) Sec. 4 (Sigma = R S S^T R^T from a quaternion and scales),
Sec. 6 (16x16 tiles, 3-sigma extent, 0.3 px low-pass dilation, frustum culling, per-tile depth sort).
Conventions (see :mod:`latent3d.render.camera`): OpenCV cameras, ``viewmats`` world-to-camera ``[C, 4, 4]``,
``Ks`` ``[C, 3, 3]`` in pixels, pixel (row i, column j) centred at ``(j + 0.5, i + 0.5)``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor


def quat_to_rotmat(
    quats: Tensor,  # [..., 4] wxyz, need not be normalised
) -> Tensor:  # [..., 3, 3]
    """Rotation matrix of a (normalised) wxyz quaternion."""
    q = torch.nn.functional.normalize(quats, dim=-1)
    w, x, y, z = q.unbind(-1)
    R = torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    )  # fmt: skip
    return R.reshape(q.shape[:-1] + (3, 3))


def quat_scale_to_covar(
    quats: Tensor,  # [..., 4] wxyz
    scales: Tensor,  # [..., 3] positive
) -> Tensor:  # [..., 3, 3]
    """3D covariance Sigma = R S S^T R^T (Kerbl et al. 2023, Eq. 6)."""
    M = quat_to_rotmat(quats) * scales[..., None, :]
    return M @ M.transpose(-1, -2)


class Projection(NamedTuple):
    radii: Tensor  # [C, N] int32, 0 = culled
    means2d: Tensor  # [C, N, 2] pixels
    depths: Tensor  # [C, N] camera-space z
    conics: Tensor  # [C, N, 3] inverse 2D covariance (a, b, c) = upper triangle of [[a, b], [b, c]]
    compensations: Tensor | None  # [C, N] sqrt(det(cov2d) / det(cov2d + eps2d I)) or None


def project_gaussians(
    means: Tensor,  # [N, 3]
    covars: Tensor,  # [N, 3, 3]
    viewmats: Tensor,  # [C, 4, 4]
    Ks: Tensor,  # [C, 3, 3]
    width: int,
    height: int,
    eps2d: float = 0.3,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    calc_compensations: bool = False,
) -> Projection:
    """EWA perspective projection (Zwicker et al. 2002, Eq. 31-34; Kerbl et al. 2023 Eq. 5) of N Gaussians in C cameras.

    The camera-space mean is clamped to 1.3x the field of view before building the Jacobian (as in 3DGS), the 2D
    covariance is dilated by ``eps2d`` pixels^2 (low-pass filter), the radius is ceil(3 sqrt(lambda_max)), and
    Gaussians behind the near plane, beyond the far plane, with a degenerate covariance or whose 3-sigma box misses
    the image get radius 0. Differentiable w.r.t. means, covars, viewmats (plain autograd).
    """
    R = viewmats[:, :3, :3]  # [C, 3, 3]
    t = viewmats[:, :3, 3]  # [C, 3]
    means_c = torch.einsum("cij,nj->cni", R, means) + t[:, None, :]  # [C, N, 3]
    covars_c = torch.einsum("cij,njk,clk->cnil", R, covars, R)  # [C, N, 3, 3]
    tx, ty, tz = means_c.unbind(-1)

    fx, fy = Ks[:, 0, 0, None], Ks[:, 1, 1, None]  # [C, 1]
    cx, cy = Ks[:, 0, 2, None], Ks[:, 1, 2, None]
    tan_fovx, tan_fovy = 0.5 * width / fx, 0.5 * height / fy
    lim_x_pos, lim_x_neg = (width - cx) / fx + 0.3 * tan_fovx, cx / fx + 0.3 * tan_fovx
    lim_y_pos, lim_y_neg = (height - cy) / fy + 0.3 * tan_fovy, cy / fy + 0.3 * tan_fovy
    tz_safe = torch.where(tz.abs() > 1e-12, tz, torch.full_like(tz, 1e-12))
    txc = tz_safe * torch.clamp(tx / tz_safe, min=-lim_x_neg, max=lim_x_pos)
    tyc = tz_safe * torch.clamp(ty / tz_safe, min=-lim_y_neg, max=lim_y_pos)
    zero = torch.zeros_like(tz)
    J = torch.stack(
        [fx / tz_safe, zero, -fx * txc / tz_safe**2, zero, fy / tz_safe, -fy * tyc / tz_safe**2], dim=-1
    ).reshape(tz.shape + (2, 3))
    cov2d = J @ covars_c @ J.transpose(-1, -2)  # [C, N, 2, 2]
    means2d = torch.stack([fx * tx / tz_safe + cx, fy * ty / tz_safe + cy], dim=-1)  # [C, N, 2]

    a0, b0, c0 = cov2d[..., 0, 0], 0.5 * (cov2d[..., 0, 1] + cov2d[..., 1, 0]), cov2d[..., 1, 1]
    det_orig = a0 * c0 - b0 * b0
    a, c = a0 + eps2d, c0 + eps2d
    det = (a * c - b0 * b0).clamp(min=1e-10)
    conics = torch.stack([c / det, -b0 / det, a / det], dim=-1)
    compensations = torch.sqrt(torch.clamp(det_orig / det, min=0.0)) if calc_compensations else None

    with torch.no_grad():
        mid = 0.5 * (a + c)
        lam = mid + torch.sqrt(torch.clamp(mid * mid - det, min=0.01))
        radius = torch.ceil(3.0 * torch.sqrt(lam))
        valid = (a * c - b0 * b0 > 0) & (tz > near_plane) & (tz < far_plane)
        mx, my = means2d[..., 0], means2d[..., 1]
        inside = (mx + radius > 0) & (mx - radius < width) & (my + radius > 0) & (my - radius < height)
        radii = torch.where(valid & inside, radius, torch.zeros_like(radius)).int()
    return Projection(radii, means2d, tz, conics, compensations)


class TileIntersections(NamedTuple):
    tile_ids: Tensor  # [M] int64 global tile id = camera * n_tiles + ty * tiles_x + tx, sorted
    flatten_ids: Tensor  # [M] int64 index into the flattened [C * N] Gaussians, depth-sorted within each tile
    isect_offsets: Tensor  # [C * n_tiles + 1] int64 start of each tile's run in the sorted lists
    tiles_per_gauss: Tensor  # [C, N] int64
    tiles_x: int
    tiles_y: int


@torch.no_grad()
def isect_tiles(
    means2d: Tensor,  # [C, N, 2]
    radii: Tensor,  # [C, N]
    depths: Tensor,  # [C, N]
    width: int,
    height: int,
    tile_size: int = 16,
    keep: Tensor | None = None,  # [C, N] bool, extra filter (e.g. opacity >= 1/255)
) -> TileIntersections:
    """All (tile, Gaussian) pairs whose 3-sigma box overlaps the tile, sorted by (camera, tile, depth).

    The tile range of a Gaussian is [floor((m - r) / s), ceil((m + r) / s)) clipped to the image (as in gsplat's
    ``isect_tiles``), so a Gaussian is evaluated at every pixel of every tile it touches (Kerbl et al. 2023 Sec. 6).
    Vectorised: a ``repeat_interleave`` expands Gaussians into pairs and one int64 sort orders them.
    """
    C, N = radii.shape
    device = means2d.device
    tiles_x = (width + tile_size - 1) // tile_size
    tiles_y = (height + tile_size - 1) // tile_size
    n_tiles = tiles_x * tiles_y
    r = radii.to(means2d.dtype)
    tm = means2d.detach() / tile_size
    tr = (r / tile_size)[..., None]
    lo = torch.floor(tm - tr).long()
    hi = torch.ceil(tm + tr).long()
    lim = torch.tensor([tiles_x, tiles_y], device=device)
    lo = torch.minimum(lo.clamp(min=0), lim)
    hi = torch.minimum(hi.clamp(min=0), lim)
    ext = hi - lo  # [C, N, 2]
    ok = radii > 0
    if keep is not None:
        ok = ok & keep
    tiles_per_gauss = (ext[..., 0] * ext[..., 1]) * ok
    counts = tiles_per_gauss.reshape(-1)
    M = int(counts.sum())
    flat = torch.arange(C * N, device=device)
    gid = torch.repeat_interleave(flat, counts, output_size=M)  # [M]
    starts = torch.cumsum(counts, 0) - counts
    local = torch.arange(M, device=device) - starts[gid]
    w = ext.reshape(-1, 2)[gid, 0]
    lo_g = lo.reshape(-1, 2)[gid]
    tx = lo_g[:, 0] + local % w
    ty = lo_g[:, 1] + local // w
    cam = gid // N
    tile_ids = cam * n_tiles + ty * tiles_x + tx
    # depth rank within each camera (stable ordering of equal depths by index)
    order = torch.argsort(depths.detach(), dim=1, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(N, device=device).expand(C, N))
    key = tile_ids * N + rank.reshape(-1)[gid]
    key, perm = torch.sort(key)
    tile_ids = tile_ids[perm]
    flatten_ids = gid[perm]
    tile_counts = torch.bincount(tile_ids, minlength=C * n_tiles)
    offsets = torch.zeros(C * n_tiles + 1, dtype=torch.long, device=device)
    offsets[1:] = torch.cumsum(tile_counts, 0)
    return TileIntersections(tile_ids, flatten_ids, offsets, tiles_per_gauss, tiles_x, tiles_y)
