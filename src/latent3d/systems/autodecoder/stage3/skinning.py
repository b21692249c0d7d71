"""Volumetric linear blend skinning of rigid parts (3DVADER, arXiv 2307.05445, Sec. 3: "a set of smaller, rigid
components whose poses are estimated and refined during training"; its base, Unsupervised Volumetric Animation,
Siarohin et al. 2023, Sec. 3.2).

A canonical radiance grid (density, RGB) carries per-voxel skinning logits over P parts; frame f moves part p by the
rigid transform ``T_fp`` (canonical -> posed world). A point x of the posed world is explained by every part at once:
each part p maps it back to its canonical point ``x_p = T_fp^-1 x``, and the field at x is the skinning-weighted mix

    sigma(x) = sum_p w_p(x_p) sigma(x_p),      c(x) = sum_p w_p(x_p) sigma(x_p) c(x_p) / sigma(x),

``w(.) = softmax(skinning logits)`` in canonical space (inverse LBS with the weights read at each candidate: exact for
rigid parts whose canonical regions do not overlap, differentiable in the grid and the poses). The rays are then
marched as :func:`latent3d.render.volume.render_volume` does (emission-absorption, NeRF quadrature).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from latent3d.render.grid_checks import grid_sample_coords
from latent3d.render.volume import ray_box_intersect, ray_samples
from latent3d.systems.autodecoder.stage1.cameras import axis_angle_to_matrix


def part_transforms(rotvec: Tensor, trans: Tensor) -> Tensor:  # [F, P, 3], [F, P, 3] -> [F, P, 4, 4]
    """Rigid transforms ``[R | t]`` from axis-angle rotations (Rodrigues, smooth at 0) and translations."""
    T = torch.zeros(*rotvec.shape[:-1], 4, 4, dtype=rotvec.dtype, device=rotvec.device)
    T[..., :3, :3] = axis_angle_to_matrix(rotvec)
    T[..., :3, 3] = trans
    T[..., 3, 3] = 1.0
    return T


def render_skinned(
    density: Tensor,  # [1, X, Y, Z] >= 0, canonical
    rgb: Tensor,  # [3, X, Y, Z] in [0, 1], canonical
    skin_logits: Tensor,  # [P, X, Y, Z]
    transforms: Tensor,  # [B, P, 4, 4] canonical -> posed world, one set per ray batch (frame)
    origins: Tensor,  # [B, R, 3] posed world
    dirs: Tensor,  # [B, R, 3] unit
    box: float,  # the grid fills [-box, box]^3 in canonical space; rays are marched through the same cube
    n_samples: int = 64,
    background: float = 1.0,
    generator: torch.Generator | None = None,
    parts: bool = False,
) -> tuple[Tensor, ...]:  # rgb [B, R, 3], occupancy [B, R] (, part responsibility [B, R, P])
    """Ray-march the skinned field (module docstring) along posed-world rays; with ``parts``, also each part's share
    of each ray's opacity (``sum_i w_i sigma_p(x_i) / sigma(x_i)``, summing to the occupancy)."""
    B, R, _ = origins.shape
    P = skin_logits.shape[0]
    lo, hi = origins.new_full((3,), -box), origins.new_full((3,), box)
    near, far, _ = ray_box_intersect(origins, dirs, lo, hi)  # [B, R]
    t = ray_samples(near, far, n_samples, generator)  # [B, R, S]
    delta = (far - near) / n_samples
    pts = origins[:, :, None] + t[..., None] * dirs[:, :, None]  # [B, R, S, 3]
    inv = torch.linalg.inv(transforms)  # [B, P, 4, 4]
    local = torch.einsum("bpij,brsj->bprsi", inv[..., :3, :3], pts) + inv[:, :, None, None, :3, 3]  # [B,P,R,S,3]
    grid = torch.cat([density, rgb, skin_logits], 0)[None].expand(B * P, -1, -1, -1, -1)
    zyx = grid_sample_coords(local.reshape(B * P, R, n_samples, 3), lo, hi)
    vals = F.grid_sample(grid, zyx[:, :, :, None], mode="bilinear", padding_mode="zeros",
                         align_corners=False)[..., 0].reshape(B, P, 4 + P, R, n_samples)  # fmt: skip
    w = torch.softmax(vals[:, :, 4:], dim=2)  # [B, P(candidate), P(weights), R, S]
    w_own = torch.diagonal(w, dim1=1, dim2=2).permute(0, 3, 1, 2)  # [B, P, R, S]: w_p at x_p
    sig = w_own * vals[:, :, 0]  # [B, P, R, S]
    sigma = sig.sum(1)  # [B, R, S]
    col = (sig[:, :, None] * vals[:, :, 1:4]).sum(1) / sigma[:, None].clamp_min(1e-8)  # [B, 3, R, S]
    tau = sigma * delta[..., None]
    cum = torch.cumsum(tau, -1)
    trans = torch.exp(-F.pad(cum[..., :-1], (1, 0)))
    wts = trans * -torch.expm1(-tau)  # [B, R, S]
    occupancy = -torch.expm1(-cum[..., -1])
    out = torch.einsum("brs,bcrs->brc", wts, col) + (1 - occupancy)[..., None] * background
    if parts:
        share = torch.einsum("brs,bprs->brp", wts, sig / sigma[:, None].clamp_min(1e-8))
        return out, occupancy, share
    return out, occupancy
