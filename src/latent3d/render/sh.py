"""Real spherical harmonics up to degree 3, in the basis and sign convention of 3DGS.

Kerbl et al. 2023, "3D Gaussian Splatting for Real-Time Radiance Field Rendering", Sec. 4: view-dependent colour
is a degree-3 SH expansion per Gaussian, evaluated along the direction from the camera centre to the Gaussian mean;
the renderer adds 0.5 and clamps at 0 (so SH DC ``f_dc`` stores ``(rgb - 0.5) / C0``).
"""

from __future__ import annotations

import torch
from torch import Tensor

SH_C0 = 0.28209479177387814
SH_C1 = 0.4886025119029199
SH_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
SH_C3 = (
    -0.5900435899266435,
    2.890611442640554,
    -0.4570457994644658,
    0.3731763325901154,
    -0.4570457994644658,
    1.445305721320277,
    -0.5900435899266435,
)


def num_sh_bases(degree: int) -> int:
    """Number of SH coefficients K = (degree + 1)^2 for a degree in 0..3."""
    if degree not in (0, 1, 2, 3):
        raise ValueError(f"sh degree must be 0..3, got {degree}")
    return (degree + 1) ** 2


def sh_degree_from_bases(k: int) -> int:
    """Inverse of :func:`num_sh_bases`."""
    table = {1: 0, 4: 1, 9: 2, 16: 3}
    if k not in table:
        raise ValueError(f"number of SH coefficients must be 1, 4, 9 or 16, got {k}")
    return table[k]


def rgb_to_sh(rgb: Tensor) -> Tensor:
    """DC coefficient that renders as ``rgb`` (3DGS convention: rgb = 0.5 + C0 * f_dc)."""
    return (rgb - 0.5) / SH_C0


def sh_to_rgb(sh_dc: Tensor) -> Tensor:
    """Colour of the DC term alone (inverse of :func:`rgb_to_sh`)."""
    return sh_dc * SH_C0 + 0.5


def sh_basis(
    degree: int,
    dirs: Tensor,  # [..., 3] unit directions
) -> Tensor:  # [..., (degree + 1)^2]
    """Real SH basis functions Y_k(dirs) in the 3DGS ordering and signs."""
    num_sh_bases(degree)
    x, y, z = dirs.unbind(-1)
    out = [torch.full_like(x, SH_C0)]
    if degree >= 1:
        out += [-SH_C1 * y, SH_C1 * z, -SH_C1 * x]
    if degree >= 2:
        xx, yy, zz = x * x, y * y, z * z
        xy, yz, xz = x * y, y * z, x * z
        out += [
            SH_C2[0] * xy,
            SH_C2[1] * yz,
            SH_C2[2] * (2.0 * zz - xx - yy),
            SH_C2[3] * xz,
            SH_C2[4] * (xx - yy),
        ]
    if degree >= 3:
        out += [
            SH_C3[0] * y * (3.0 * xx - yy),
            SH_C3[1] * xy * z,
            SH_C3[2] * y * (4.0 * zz - xx - yy),
            SH_C3[3] * z * (2.0 * zz - 3.0 * xx - 3.0 * yy),
            SH_C3[4] * x * (4.0 * zz - xx - yy),
            SH_C3[5] * z * (xx - yy),
            SH_C3[6] * x * (xx - 3.0 * yy),
        ]
    return torch.stack(out, dim=-1)


def eval_sh(
    degree: int,
    dirs: Tensor,  # [..., 3] view directions (need not be normalised)
    coeffs: Tensor,  # [..., K, D] with K >= (degree + 1)^2
) -> Tensor:  # [..., D]
    """SH expansion sum_k Y_k(d) c_k using the first ``(degree + 1)^2`` coefficients (no +0.5 offset, no clamp).

    Coefficients beyond the active degree are ignored (3DGS's progressive SH schedule, Kerbl et al. 2023 Sec. 5.2).
    """
    k = num_sh_bases(degree)
    if coeffs.shape[-2] < k:
        raise ValueError(f"sh degree {degree} needs {k} coefficients, got {coeffs.shape[-2]}")
    dirs = torch.nn.functional.normalize(dirs, dim=-1)
    basis = sh_basis(degree, dirs)  # [..., k]
    return (basis.unsqueeze(-1) * coeffs[..., :k, :]).sum(dim=-2)
