"""Radiance grids checked in one place, and the one map from world points to ``grid_sample`` coordinates.

A radiance grid is what 3DVADER decodes per object (Ntavelis et al. 2023, arXiv 2307.05445, Sec. 3.1: 1 density + 3
RGB channels on a voxel grid filling a world box). Its convention, shared by the renderer
(:mod:`latent3d.render.volume`), the user assets (:mod:`latent3d.render.grid_assets`) and the ``.npz`` files
(:mod:`latent3d.io.volume`):

- grid index (i, j, k) <-> world axes x, y, z: ``density[..., i, j, k]`` is the voxel at index (i, j, k);
- the grid fills ``[bbox_min, bbox_max]`` exactly, voxel centres at ``bbox_min + (i + 0.5) * h`` with the voxel step
  ``h = (bbox_max - bbox_min) / N`` per axis, i.e. ``F.grid_sample(..., align_corners=False)``;
- ``F.grid_sample`` on a 5-D input ``[N, C, D, H, W]`` reads the last coordinate dimension in (W, H, D) order, so
  with the grid laid out ``[..., X, Y, Z]`` the normalised point is passed as (z, y, x): :func:`grid_sample_coords`.

The checks return the first problem as one line (or None); the caller raises it with its own context (a file name,
the function's name). Numpy arrays and torch tensors alike; this module imports neither torch nor anything heavy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from torch import Tensor

__all__ = ["batched_grid_problem", "box_problem", "density_problem", "finite_problem", "grid_problem",
           "grid_sample_coords", "rgb_problem"]


def density_problem(density: Any) -> str | None:  # [X, Y, Z]
    if density.ndim != 3 or min(density.shape) < 1:
        return f"density must be [X, Y, Z] (or [1, X, Y, Z]), got shape {list(density.shape)}"
    return None


def rgb_problem(rgb: Any, shape: tuple[int, ...]) -> str | None:  # rgb [3, X, Y, Z], shape (X, Y, Z)
    if rgb.shape != (3, *shape):
        return f"rgb must be [3, {', '.join(map(str, shape))}] like density, got {list(rgb.shape)}"
    return None


def finite_problem(name: str, a: np.ndarray) -> str | None:
    if not np.isfinite(a).all():
        return f"{name} has {int((~np.isfinite(a)).sum())} NaN or infinite values"
    return None


def box_problem(lo: Any, hi: Any) -> str | None:  # lo [3], hi [3] (ndarray or tensor)
    """The box must be non-empty on every axis (NaN bounds fail too)."""
    if not bool((hi > lo).all()):
        return f"bbox_max {hi.tolist()} must exceed bbox_min {lo.tolist()} on every axis"
    return None


def batched_grid_problem(density: Any, features: Any) -> str | None:  # [B, 1, X, Y, Z], [B, C, X, Y, Z]
    """The renderer's inputs: a batch of density grids and feature grids of the same size."""
    if density.dim() != 5 or density.shape[1] != 1 or features.dim() != 5:
        return (f"density must be [B, 1, X, Y, Z] and features [B, C, X, Y, Z], got {list(density.shape)}, "
                f"{list(features.shape)}")
    if features.shape[0] != density.shape[0] or features.shape[2:] != density.shape[2:]:
        return f"features {list(features.shape)} do not match density {list(density.shape)}"
    return None


def grid_problem(density: np.ndarray, rgb: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> str | None:
    """A whole radiance grid (density [X, Y, Z] >= 0, rgb [3, X, Y, Z], bbox_min / bbox_max [3], all finite, a
    non-empty box): the first thing wrong, or None."""
    problem = density_problem(density) or rgb_problem(rgb, density.shape)
    if problem:
        return problem
    if lo.shape != (3,) or hi.shape != (3,):
        return f"bbox_min and bbox_max must be [3], got {list(lo.shape)} and {list(hi.shape)}"
    for name, a in (("density", density), ("rgb", rgb), ("bbox_min", lo), ("bbox_max", hi)):
        problem = finite_problem(name, a)
        if problem:
            return problem
    if (density < 0).any():
        return f"density must be >= 0, its minimum is {float(density.min()):.3g}"
    return box_problem(lo, hi)


def grid_sample_coords(
    points: Tensor,  # [..., 3] world (x, y, z)
    bbox_min: Tensor,  # [3]
    bbox_max: Tensor,  # [3]
) -> Tensor:  # [..., 3] (z, y, x), -1 / 1 at the box faces
    """The ``F.grid_sample(align_corners=False)`` coordinate of world points for a grid ``[..., X, Y, Z]`` filling the
    box (see the module docstring): normalised to ``[-1, 1]`` on the box, passed in (z, y, x) order."""
    return ((points - bbox_min) / (bbox_max - bbox_min) * 2.0 - 1.0).flip(-1)
