"""Camera pose errors against the truth, up to the frame a method is free to choose (a reconstruction without pose
supervision is known only up to a rotation of its world; BARF, Lin et al. 2021, Sec. 4.2, aligns the same way)."""

from __future__ import annotations

import torch
from torch import Tensor


def align_rotation(learned: Tensor, true: Tensor) -> Tensor:  # world-to-camera rotations [V, 3, 3] x 2 -> A [3, 3]
    """The rotation A of the world minimising ``sum_i |learned_i A - true_i|_F^2`` (orthogonal Procrustes, Kabsch:
    A = U diag(1, 1, det(U V^T)) V^T for ``sum_i learned_i^T true_i = U S V^T``)."""
    M = (learned.transpose(1, 2).double() @ true.double()).sum(0)
    U, _, Vt = torch.linalg.svd(M)
    D = torch.eye(3, dtype=M.dtype)
    D[2, 2] = torch.sign(torch.linalg.det(U @ Vt))
    return (U @ D @ Vt).to(learned.dtype)


def rotation_angle_deg(R: Tensor) -> Tensor:  # [..., 3, 3] -> [...] degrees in [0, 180]
    """The angle of a rotation (its geodesic distance to the identity): ``acos((trace R - 1) / 2)``."""
    return torch.rad2deg(torch.acos(((R.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2).clamp(-1, 1)))


def rotation_errors(learned: Tensor, true: Tensor) -> Tensor:  # viewmats [V, 4, 4] x 2 -> degrees [V]
    """Each camera's rotation error in degrees, the geodesic angle of ``learned_i A true_i^T``, after the best
    world rotation A (:func:`align_rotation`)."""
    L, T = learned[:, :3, :3].double(), true[:, :3, :3].double()
    return rotation_angle_deg(L @ align_rotation(L, T) @ T.transpose(1, 2)).float()


def summary(errors: Tensor) -> dict[str, float]:
    """Median, mean and max of angle errors (degrees), rounded to 0.01."""
    stats = (("median", torch.median), ("mean", torch.mean), ("max", torch.max))
    return {k: round(float(f(errors)), 2) for k, f in stats}
