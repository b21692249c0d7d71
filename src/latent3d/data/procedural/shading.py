"""Materials, procedural solid textures, lights, sky, and the shading model of the procedural renderer.

Shading (per hit, colours in linear [0, 1], no gamma): ``albedo * (ambient_sky + (1 - ambient) * lambert * lit)
+ shininess * blinn_phong * lit``, with ``lit`` in {0, 1} from an optional hard-shadow ray. ``ambient_sky`` is a
hemisphere term: ``ambient * (0.75 + 0.25 * n_z)`` (surfaces facing the sky are a little brighter).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

Texture = Literal["none", "checker", "stripes", "wood", "noise", "bricks"]

#: Named palette (linear RGB in [0, 1]) used by objects, scenes and captions.
COLORS: dict[str, tuple[float, float, float]] = {
    "red": (0.85, 0.12, 0.10),
    "green": (0.15, 0.65, 0.20),
    "blue": (0.12, 0.30, 0.85),
    "yellow": (0.95, 0.85, 0.15),
    "white": (0.92, 0.92, 0.92),
    "black": (0.06, 0.06, 0.06),
    "orange": (0.95, 0.50, 0.08),
    "purple": (0.50, 0.18, 0.70),
    "pink": (0.95, 0.55, 0.70),
    "brown": (0.45, 0.28, 0.12),
    "grey": (0.50, 0.50, 0.50),
}


@dataclass(frozen=True)
class Material:
    """Surface appearance: albedo, an optional procedural solid texture, and Blinn-Phong shininess.

    Textures are functions of the hit point in the primitive's local frame (so they move with the object):
    ``checker`` (3D checkerboard of ``albedo``/``albedo2``), ``stripes`` (bands along local x), ``wood``
    (planks along local y with grain), ``noise`` (smooth value noise mixing the two colours), ``bricks``
    (brick rows on the local x-z / y-z faces). ``scale`` is the number of texture cells per unit length.
    """

    albedo: tuple[float, float, float] = (0.7, 0.7, 0.7)
    texture: Texture = "none"
    albedo2: tuple[float, float, float] | None = None  # second texture colour (default: a darker albedo)
    scale: float = 4.0
    shininess: float = 0.0  # specular strength in [0, 1]; 0 = matte
    exponent: float = 32.0  # Blinn-Phong exponent
    emissive: bool = False  # ignore lighting (e.g. a lamp bulb, the sun disc)


def _hash3(i: Tensor) -> Tensor:  # [R, 3] integer lattice points (as float) -> [R] in [0, 1)
    """Deterministic lattice hash (sin-fract trick evaluated in float64 for platform stability)."""
    x = (i.double() * torch.tensor([127.1, 311.7, 74.7], dtype=torch.float64)).sum(-1)
    return torch.frac(torch.sin(x) * 43758.5453).abs().to(i.dtype)


def value_noise(p: Tensor) -> Tensor:  # [R, 3] -> [R] smooth noise in [0, 1]
    """Trilinearly interpolated lattice value noise with a smoothstep fade."""
    i = torch.floor(p)
    f = p - i
    f = f * f * (3.0 - 2.0 * f)
    out = torch.zeros_like(p[:, 0])
    for dx in (0, 1):
        for dy in (0, 1):
            for dz in (0, 1):
                corner = i + torch.tensor([dx, dy, dz], dtype=p.dtype)
                w = (f[:, 0] if dx else 1 - f[:, 0]) * (f[:, 1] if dy else 1 - f[:, 1]) * (f[:, 2] if dz else 1 - f[:, 2])
                out = out + w * _hash3(corner)
    return out


def albedo_at(mat: Material, p_local: Tensor) -> Tensor:  # p_local [R, 3] -> [R, 3]
    """Albedo of ``mat`` at local hit points (evaluates the procedural texture)."""
    a = torch.tensor(mat.albedo, dtype=p_local.dtype)
    b = torch.tensor(mat.albedo2 if mat.albedo2 is not None else tuple(0.55 * v for v in mat.albedo), dtype=a.dtype)
    if mat.texture == "none":
        return a.expand(p_local.shape[0], 3)
    p = p_local * mat.scale
    if mat.texture == "checker":
        w = torch.remainder(torch.floor(p + 1e-4).sum(-1), 2.0)
    elif mat.texture == "stripes":
        w = (torch.remainder(p[:, 0], 1.0) < 0.5).to(p.dtype)
    elif mat.texture == "wood":
        plank = torch.floor(p[:, 1])
        grain = 0.5 + 0.5 * torch.sin(2 * math.pi * (3.0 * p[:, 0] + 7.0 * _hash3(torch.stack([plank] * 3, -1))))
        seam = (torch.remainder(p[:, 1], 1.0) < 0.06).to(p.dtype)
        w = (0.35 * grain + 0.3 * _hash3(torch.stack([plank, plank, plank + 1], -1))).clamp(0, 1)
        w = torch.maximum(w, seam)
    elif mat.texture == "noise":
        w = 0.65 * value_noise(p) + 0.35 * value_noise(p * 4.0 + 17.0)
    elif mat.texture == "bricks":
        u = p[:, 0] + p[:, 1]  # along the wall (works for walls facing x or y)
        row = torch.floor(p[:, 2] * 2.0)
        u = u + 0.5 * torch.remainder(row, 2.0)
        mortar = (torch.remainder(u, 1.0) < 0.06) | (torch.remainder(p[:, 2] * 2.0, 1.0) < 0.12)
        w = mortar.to(p.dtype)
    else:
        raise ValueError(f"unknown texture {mat.texture!r}")
    return torch.lerp(a, b, w[:, None].clamp(0.0, 1.0))


@dataclass(frozen=True)
class Light:
    """A key light: ``"directional"`` (``direction`` points *towards* the light) or ``"point"`` (at ``position``).

    ``ambient`` is the fraction of unshadowed sky/fill light; ``shadows`` casts hard shadow rays.
    """

    kind: Literal["directional", "point"] = "directional"
    direction: tuple[float, float, float] = (0.6, 0.35, 0.75)  # from front (+x), a little left, above
    position: tuple[float, float, float] = (0.0, 0.0, 2.5)
    ambient: float = 0.35
    shadows: bool = True


@dataclass(frozen=True)
class Sky:
    """Background: a vertical gradient (horizon -> zenith) with an optional sun disc; below the horizon ``ground``."""

    zenith: tuple[float, float, float] = (0.25, 0.45, 0.85)
    horizon: tuple[float, float, float] = (0.75, 0.85, 0.95)
    ground: tuple[float, float, float] = (0.45, 0.42, 0.38)
    sun: tuple[float, float, float] | None = None  # unit direction of the sun disc, if drawn


def background_color(
    bg: Sky | tuple[float, float, float],
    dirs: Tensor,  # [R, 3] unit world ray directions
) -> Tensor:  # [R, 3]
    """Colour of rays that hit nothing: a constant colour or the sky gradient."""
    if not isinstance(bg, Sky):
        return torch.tensor(bg, dtype=dirs.dtype).expand(dirs.shape[0], 3)
    z = dirs[:, 2:3]
    up = torch.tensor(bg.zenith, dtype=dirs.dtype)
    hor = torch.tensor(bg.horizon, dtype=dirs.dtype)
    col = torch.lerp(hor, up, z.clamp(0.0, 1.0).sqrt())
    col = torch.where(z < 0, torch.lerp(hor, torch.tensor(bg.ground, dtype=dirs.dtype), (-z * 4).clamp(0, 1)), col)
    if bg.sun is not None:
        s = torch.nn.functional.normalize(torch.tensor(bg.sun, dtype=dirs.dtype), dim=0)
        c = (dirs * s).sum(-1, keepdim=True)
        col = col + (torch.tensor((1.0, 0.95, 0.8), dtype=dirs.dtype) * ((c - 0.995) / 0.005).clamp(0, 1)) * 0.8
    return col.clamp(0.0, 1.0)


def shade(
    albedo: Tensor,  # [R, 3]
    normal: Tensor,  # [R, 3] unit, facing the viewer
    view_dir: Tensor,  # [R, 3] unit ray direction (camera -> point)
    to_light: Tensor,  # [R, 3] unit direction point -> light
    lit: Tensor,  # [R] float in {0, 1}: 1 = not in shadow
    light: Light,
    shininess: Tensor,  # [R]
    exponent: Tensor,  # [R]
) -> Tensor:  # [R, 3]
    """Lambert + hemisphere ambient + Blinn-Phong specular under one key light (see module docstring)."""
    ndl = (normal * to_light).sum(-1).clamp(min=0.0)
    amb = light.ambient * (0.75 + 0.25 * normal[:, 2])
    half = torch.nn.functional.normalize(to_light - view_dir, dim=-1)
    spec = (normal * half).sum(-1).clamp(min=0.0) ** exponent * (ndl > 0)
    diffuse = (1.0 - light.ambient) * ndl * lit
    return (albedo * (amb + diffuse)[:, None] + (shininess * spec * lit)[:, None]).clamp(0.0, 1.0)
