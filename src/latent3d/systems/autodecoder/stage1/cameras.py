"""Learnable camera corrections (3DVADER Sec. 3.1: the camera "supervision can be learned"; BARF-style pose
refinement, Lin et al. 2021): every training view gets a 6-vector xi = (omega, v), zero at the start, and its
world-to-camera matrix becomes ``[[exp(omega^), v], [0, 1]] @ viewmat``: a rotation (Rodrigues' formula of the
axis-angle omega) and a translation, both in the camera's own frame.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def axis_angle_to_matrix(omega: Tensor) -> Tensor:  # [..., 3] -> [..., 3, 3]
    """Rodrigues: ``R = I + sin(t) K + (1 - cos(t)) K^2`` with ``t = |omega|``, ``K`` the cross-product matrix of
    ``omega / t``; written with sin(t)/t and (1 - cos t)/t^2 (Taylor near 0) so that it is smooth at omega = 0."""
    t2 = (omega * omega).sum(-1, keepdim=True)[..., None]  # [..., 1, 1]
    t = t2.clamp_min(1e-12).sqrt()
    small = t2 < 1e-8
    a = torch.where(small, 1 - t2 / 6, torch.sin(t) / t)
    b = torch.where(small, 0.5 - t2 / 24, (1 - torch.cos(t)) / t2.clamp_min(1e-12))
    x, y, z = omega.unbind(-1)
    zero = torch.zeros_like(x)
    k = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).reshape(*omega.shape[:-1], 3, 3)
    eye = torch.eye(3, dtype=omega.dtype, device=omega.device).expand_as(k)
    return eye + a * k + b * (k @ k)


def rotation_log(R: Tensor) -> Tensor:  # [..., 3, 3] -> axis-angle [..., 3] (angle below pi)
    """The inverse of Rodrigues' formula (:func:`axis_angle_to_matrix`) for rotations by less than pi."""
    cos = ((R.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2).clamp(-1.0, 1.0)
    angle = torch.acos(cos)
    v = torch.stack([R[..., 2, 1] - R[..., 1, 2], R[..., 0, 2] - R[..., 2, 0], R[..., 1, 0] - R[..., 0, 1]], -1)
    scale = torch.where(angle < 1e-6, 0.5 + angle**2 / 12, angle / (2 * torch.sin(angle).clamp_min(1e-12)))
    return v * scale[..., None]


class CameraRefiner(nn.Module):
    """``forward(viewmats [M, 4, 4], view_ids [M] long) -> corrected viewmats [M, 4, 4]`` (one correction per
    training view; identity at initialisation)."""

    def __init__(self, num_views: int):
        super().__init__()
        self.xi = nn.Parameter(torch.zeros(num_views, 6))

    def forward(self, viewmats: Tensor, view_ids: Tensor) -> Tensor:
        xi = self.xi[view_ids].to(viewmats.dtype)
        top = torch.cat([axis_angle_to_matrix(xi[:, :3]), xi[:, 3:, None]], dim=-1)  # [M, 3, 4]
        bottom = torch.zeros_like(top[:, :1])
        bottom[..., 3] = 1
        return torch.cat([top, bottom], dim=1) @ viewmats
