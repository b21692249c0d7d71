"""A set of 3D Gaussians as optimisable parameters (Kerbl et al. 2023, "3D Gaussian Splatting", Sec. 4-5).

Stored raw, activated on read exactly as in 3DGS: ``scales = exp(log_scales)``, ``opacities = sigmoid(logits)``,
``quats`` normalised (wxyz), colours as SH coefficients (DC in ``sh_dc``, higher bands in ``sh_rest``; the
renderer adds 0.5, so ``rgb = 0.5 + C0 * f_dc``). PLY I/O in the INRIA layout via :mod:`latent3d.io.ply`.
"""

from __future__ import annotations

import math
import os
from typing import Literal

import torch
from torch import Tensor, nn

from latent3d.render.rasterize import RenderMode, rasterize
from latent3d.render.sh import num_sh_bases, rgb_to_sh, sh_degree_from_bases

InitShape = Literal["sphere", "box"]  # GaussianModel.random: uniform in a ball or a cube


def inverse_sigmoid(x: Tensor) -> Tensor:
    """logit, the inverse of the opacity activation."""
    return torch.log(x / (1.0 - x))


def knn_mean_sq_dist(
    points: Tensor,  # [N, 3]
    k: int = 3,
    chunk: int = 4096,
) -> Tensor:  # [N]
    """Mean squared distance to the k nearest other points (3DGS ``distCUDA2`` initial scale), chunked cdist."""
    n = points.shape[0]
    if n <= 1:
        return torch.ones(n, dtype=points.dtype, device=points.device)
    k = min(k, n - 1)
    out = []
    for s in range(0, n, chunk):
        d = torch.cdist(points[s : s + chunk], points).pow_(2)
        d[torch.arange(d.shape[0]), torch.arange(s, s + d.shape[0])] = float("inf")
        out.append(d.topk(k, dim=1, largest=False).values.mean(1))
    return torch.cat(out)


class GaussianModel(nn.Module):
    """N anisotropic 3D Gaussians with SH colour up to ``sh_degree`` (the active degree can be lower)."""

    param_names = ("means", "log_scales", "quats", "opacity_logits", "sh_dc", "sh_rest")

    def __init__(
        self,
        means: Tensor,  # [N, 3]
        log_scales: Tensor,  # [N, 3]
        quats: Tensor,  # [N, 4] wxyz
        opacity_logits: Tensor,  # [N]
        sh: Tensor,  # [N, K, 3], K = (sh_degree + 1)^2
        active_sh_degree: int | None = None,
    ) -> None:
        super().__init__()
        self.sh_degree = sh_degree_from_bases(sh.shape[1])
        self.active_sh_degree = self.sh_degree if active_sh_degree is None else active_sh_degree
        self.means = nn.Parameter(means.detach().clone())
        self.log_scales = nn.Parameter(log_scales.detach().clone())
        self.quats = nn.Parameter(quats.detach().clone())
        self.opacity_logits = nn.Parameter(opacity_logits.detach().clone())
        self.sh_dc = nn.Parameter(sh[:, :1].detach().clone())
        self.sh_rest = nn.Parameter(sh[:, 1:].detach().clone())

    # ---- activations (Kerbl et al. 2023 Sec. 5.1)
    @property
    def num(self) -> int:
        return int(self.means.shape[0])

    @property
    def scales(self) -> Tensor:  # [N, 3]
        return torch.exp(self.log_scales)

    @property
    def opacities(self) -> Tensor:  # [N]
        return torch.sigmoid(self.opacity_logits)

    @property
    def rotations(self) -> Tensor:  # [N, 4] unit wxyz
        return nn.functional.normalize(self.quats, dim=-1)

    @property
    def sh(self) -> Tensor:  # [N, K, 3]
        return torch.cat([self.sh_dc, self.sh_rest], dim=1)

    # ---- initialisers
    @classmethod
    def random(
        cls,
        n: int,
        extent: float = 1.0,
        shape: InitShape = "sphere",
        sh_degree: int = 3,
        scale: float | None = None,
        opacity: float = 0.1,
        generator: torch.Generator | None = None,
        device: torch.device | str = "cpu",
    ) -> GaussianModel:
        """``n`` Gaussians uniform in a ball of radius ``extent`` or the cube [-extent, extent]^3, random colours.

        Scales default to the mean spacing (volume / n)^(1/3) / 2, rotations to identity, opacity to ``opacity``.
        """
        if shape == "sphere":
            d = torch.randn(n, 3, generator=generator)
            d = nn.functional.normalize(d, dim=-1)
            r = torch.rand(n, 1, generator=generator) ** (1.0 / 3.0)
            means = d * r * extent
            vol = 4.0 / 3.0 * math.pi * extent**3
        elif shape == "box":
            means = (torch.rand(n, 3, generator=generator) * 2.0 - 1.0) * extent
            vol = (2.0 * extent) ** 3
        else:
            raise ValueError(f"shape must be 'sphere' or 'box', got {shape!r}")
        s = scale if scale is not None else 0.5 * (vol / max(n, 1)) ** (1.0 / 3.0)
        rgb = torch.rand(n, 3, generator=generator)
        return cls._from_parts(means, torch.full((n, 3), math.log(s)), rgb, opacity, sh_degree).to(device)

    @classmethod
    def from_points(
        cls,
        points: Tensor,  # [N, 3]
        colors: Tensor | None = None,  # [N, 3] RGB in [0, 1] (uint8 0..255 accepted)
        sh_degree: int = 3,
        opacity: float = 0.1,
    ) -> GaussianModel:
        """3DGS initialisation from a point cloud (Kerbl et al. 2023 Sec. 5.1): isotropic scale sqrt of the mean
        squared distance to the 3 nearest neighbours, identity rotation, opacity 0.1, DC colour from RGB."""
        points = points.float()
        if colors is None:
            colors = torch.full_like(points, 0.5)
        elif colors.dtype == torch.uint8 or colors.max() > 1.0:
            colors = colors.float() / 255.0
        d2 = knn_mean_sq_dist(points).clamp_min(1e-7)
        log_s = (0.5 * torch.log(d2))[:, None].expand(-1, 3)
        return cls._from_parts(points, log_s, colors.float(), opacity, sh_degree)

    @classmethod
    def _from_parts(cls, means: Tensor, log_scales: Tensor, rgb: Tensor, opacity: float, sh_degree: int):
        n = means.shape[0]
        sh = torch.zeros(n, num_sh_bases(sh_degree), 3, dtype=means.dtype)
        sh[:, 0] = rgb_to_sh(rgb.to(means.dtype))
        quats = torch.zeros(n, 4, dtype=means.dtype)
        quats[:, 0] = 1.0
        logits = inverse_sigmoid(torch.full((n,), opacity, dtype=means.dtype))
        return cls(means, log_scales, quats, logits, sh)

    # ---- PLY (INRIA layout)
    def to_ply(self):
        """The raw parameters as a :class:`latent3d.io.ply.GaussianPLY` (float32 NumPy)."""
        from latent3d.io.ply import GaussianPLY

        return GaussianPLY(
            means=self.means.detach().cpu(),
            sh=self.sh.detach().cpu(),
            opacity_logits=self.opacity_logits.detach().cpu(),
            log_scales=self.log_scales.detach().cpu(),
            quats=self.quats.detach().cpu(),
        )

    def save_ply(self, path: str | os.PathLike):
        """Write a 3DGS PLY (atomically)."""
        from latent3d.io.ply import write_gaussian_ply

        return write_gaussian_ply(path, self.to_ply())

    @classmethod
    def from_gaussian_ply(cls, g) -> GaussianModel:
        """Model from a :class:`latent3d.io.ply.GaussianPLY`."""
        t = lambda a: torch.from_numpy(a.copy())  # noqa: E731
        return cls(t(g.means), t(g.log_scales), t(g.quats), t(g.opacity_logits), t(g.sh))

    @classmethod
    def from_ply(cls, path: str | os.PathLike) -> GaussianModel:
        """Read a 3DGS PLY written by latent3d or the INRIA code (implausible values refused, see
        :func:`latent3d.io.ply.check_plausible_gaussians`)."""
        from latent3d.io.ply import read_gaussian_ply

        return cls.from_gaussian_ply(read_gaussian_ply(path, plausible=True))

    # ---- editing (used by densification)
    @torch.no_grad()
    def replace_parameters(self, tensors: dict[str, Tensor]) -> None:
        """Swap parameter tensors (e.g. after densify/prune) keeping the nn.Parameter objects' names."""
        for name, value in tensors.items():
            setattr(self, name, nn.Parameter(value.detach().clone().requires_grad_(True)))

    # ---- rendering
    def render(
        self,
        viewmats: Tensor,  # [C, 4, 4]
        Ks: Tensor,  # [C, 3, 3]
        width: int,
        height: int,
        backgrounds: Tensor | None = None,  # [C, 3]
        render_mode: RenderMode = "RGB",
        **kwargs,
    ) -> tuple[Tensor, Tensor, dict]:
        """Render with :func:`latent3d.render.rasterize.rasterize` at the active SH degree."""
        return rasterize(
            self.means, self.quats, self.scales, self.opacities, self.sh, viewmats, Ks, width, height,
            sh_degree=self.active_sh_degree, backgrounds=backgrounds, render_mode=render_mode, **kwargs,
        )  # fmt: skip
