"""Analytic primitives and vectorised ray casting against them.

Every primitive lives in its own local frame (``p_world = rotation @ p_local + center``) and has a closed-form
ray intersection, so a render is exact: depth, normals and masks are the true geometry at the pixel-centre ray.

Local shapes (``size`` tuple):

- ``"ellipsoid"`` ``(rx, ry, rz)`` semi-axes (a sphere is ``(r, r, r)``; use :func:`sphere`);
- ``"box"`` ``(hx, hy, hz)`` half extents, axis-aligned in the local frame;
- ``"cone"`` ``(r_bottom, r_top, h)``: capped cone (frustum) around local z from ``z=-h`` (radius ``r_bottom``) to
  ``z=+h`` (radius ``r_top``); ``r_top=0`` is a pointed cone, ``r_bottom == r_top`` a capped cylinder;
- ``"quad"`` ``(hx, hy)``: the rectangle ``|x|<=hx, |y|<=hy`` of the local plane ``z=0`` (``inf`` = unbounded
  plane), two-sided.

The loop over primitives is in Python (a scene has a handful), everything else is batched over rays.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Literal, Sequence

import torch
from torch import Tensor

from latent3d.data.procedural.shading import Material

Kind = Literal["ellipsoid", "box", "cone", "quad"]
_INF = float("inf")
_IDENTITY = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))


def rotation(yaw_deg: float = 0.0, pitch_deg: float = 0.0, roll_deg: float = 0.0) -> tuple[tuple[float, ...], ...]:
    """Rotation matrix ``Rz(yaw) @ Ry(pitch) @ Rx(roll)`` (degrees, right-handed, world z up) as nested tuples."""
    cz, sz = math.cos(math.radians(yaw_deg)), math.sin(math.radians(yaw_deg))
    cy, sy = math.cos(math.radians(pitch_deg)), math.sin(math.radians(pitch_deg))
    cx, sx = math.cos(math.radians(roll_deg)), math.sin(math.radians(roll_deg))
    rz = torch.tensor([[cz, -sz, 0.0], [sz, cz, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    ry = torch.tensor([[cy, 0.0, sy], [0.0, 1.0, 0.0], [-sy, 0.0, cy]], dtype=torch.float64)
    rx = torch.tensor([[1.0, 0.0, 0.0], [0.0, cx, -sx], [0.0, sx, cx]], dtype=torch.float64)
    return tuple(tuple(float(v) for v in row) for row in (rz @ ry @ rx).tolist())


@dataclass(frozen=True)
class Primitive:
    """One analytic shape with a rigid local frame and a material.

    ``foreground`` marks what counts as "object" in the render's ``mask`` (objects: True; floors, walls, ground:
    False). ``label`` names the part (e.g. ``"snowman/head"``) for debugging and captions.
    """

    kind: Kind
    size: tuple[float, ...]
    center: tuple[float, float, float] = (0.0, 0.0, 0.0)
    rot: tuple[tuple[float, ...], ...] = _IDENTITY  # local -> world rotation, row-major 3x3
    material: Material = field(default_factory=Material)
    foreground: bool = True
    label: str = ""

    def transformed(self, scale: float = 1.0, offset: Sequence[float] = (0.0, 0.0, 0.0), yaw_deg: float = 0.0):
        """The primitive after ``p -> Rz(yaw) @ (scale * p) + offset`` (uniform scale, rotation about world z)."""
        R = torch.tensor(rotation(yaw_deg), dtype=torch.float64)
        c = R @ (scale * torch.tensor(self.center, dtype=torch.float64)) + torch.tensor(offset, dtype=torch.float64)
        rot = R @ torch.tensor(self.rot, dtype=torch.float64)
        size = tuple(s * scale for s in self.size)
        return replace(self, size=size, center=tuple(c.tolist()), rot=tuple(tuple(r) for r in rot.tolist()))

    def local_half_extent(self) -> tuple[float, float, float]:
        """Half extents of the local axis-aligned bounding box."""
        if self.kind in ("ellipsoid", "box"):
            return tuple(self.size)  # type: ignore[return-value]
        if self.kind == "cone":
            r = max(self.size[0], self.size[1])
            return (r, r, self.size[2])
        return (self.size[0], self.size[1], 0.0)

    def aabb(self) -> tuple[Tensor, Tensor]:  # lo [3], hi [3] world-space bounding box (conservative)
        """World-space axis-aligned bounding box (exact for boxes, conservative for round shapes)."""
        R = torch.tensor(self.rot, dtype=torch.float64).abs()
        h = torch.tensor(self.local_half_extent(), dtype=torch.float64)
        half = torch.nan_to_num(R @ h, nan=_INF) if math.isinf(max(h.tolist())) else R @ h
        c = torch.tensor(self.center, dtype=torch.float64)
        return c - half, c + half


def sphere(radius: float, center=(0.0, 0.0, 0.0), **kw) -> Primitive:
    return Primitive("ellipsoid", (radius, radius, radius), tuple(center), **kw)


def ellipsoid(radii, center=(0.0, 0.0, 0.0), **kw) -> Primitive:
    return Primitive("ellipsoid", tuple(radii), tuple(center), **kw)


def box(half, center=(0.0, 0.0, 0.0), **kw) -> Primitive:
    return Primitive("box", tuple(half), tuple(center), **kw)


def cylinder(radius: float, half_height: float, center=(0.0, 0.0, 0.0), **kw) -> Primitive:
    return Primitive("cone", (radius, radius, half_height), tuple(center), **kw)


def cone(r_bottom: float, r_top: float, half_height: float, center=(0.0, 0.0, 0.0), **kw) -> Primitive:
    return Primitive("cone", (r_bottom, r_top, half_height), tuple(center), **kw)


def quad(hx: float, hy: float, center=(0.0, 0.0, 0.0), **kw) -> Primitive:
    return Primitive("quad", (hx, hy), tuple(center), **kw)


# ---------------------------------------------------------------------------------------------- intersections
def _first_positive(cands: list[tuple[Tensor, Tensor]], t_min: float) -> tuple[Tensor, Tensor]:
    """Smallest ``t > t_min`` over candidate (t [R], normal [R, 3]) pairs; misses are ``inf``."""
    best_t = torch.full_like(cands[0][0], _INF)
    best_n = torch.zeros_like(cands[0][1])
    for t, n in cands:
        t = torch.where(torch.isfinite(t) & (t > t_min), t, torch.full_like(t, _INF))
        closer = t < best_t
        best_t = torch.where(closer, t, best_t)
        best_n = torch.where(closer[:, None], n, best_n)
    return best_t, best_n


def _quadratic_roots(a: Tensor, b: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:  # [R] each -> two roots (nan = none)
    """Numerically stable roots of ``a t^2 + b t + c = 0`` (q-formula); nan where there is no real root."""
    disc = b * b - 4.0 * a * c
    sq = torch.sqrt(disc.clamp(min=0.0))
    q = -0.5 * (b + torch.where(b >= 0, sq, -sq))
    nan = torch.full_like(a, float("nan"))
    t0 = torch.where(disc >= 0, q / a, nan)
    t1 = torch.where(disc >= 0, c / q, nan)
    lin = a.abs() < 1e-12  # degenerate: linear equation
    t0 = torch.where(lin, -c / b, t0)
    t1 = torch.where(lin, nan, t1)
    return t0, t1


def intersect_local(
    kind: Kind,
    size: tuple[float, ...],
    o: Tensor,  # [R, 3] ray origins in the local frame
    d: Tensor,  # [R, 3] ray directions in the local frame (any length)
    t_min: float,
) -> tuple[Tensor, Tensor]:  # t [R] (inf = miss), outward local normal [R, 3] (unnormalised)
    """Closed-form first intersection of rays with one primitive in its local frame."""
    if kind == "ellipsoid":
        r = torch.tensor(size, dtype=o.dtype)
        os_, ds = o / r, d / r
        t0, t1 = _quadratic_roots((ds * ds).sum(-1), 2.0 * (os_ * ds).sum(-1), (os_ * os_).sum(-1) - 1.0)
        cands = [(t, (o + t[:, None] * d) / (r * r)) for t in (t0, t1)]
        return _first_positive(cands, t_min)
    if kind == "box":
        h = torch.tensor(size, dtype=o.dtype)
        dd = torch.where(d.abs() < 1e-12, torch.full_like(d, 1e-12), d)
        ta, tb = (-h - o) / dd, (h - o) / dd
        t_near = torch.minimum(ta, tb).amax(-1)
        t_far = torch.maximum(ta, tb).amin(-1)
        ok = t_near <= t_far
        cands = []
        for t in (t_near, t_far):
            p = (o + t[:, None] * d) / h
            axis = p.abs().argmax(-1, keepdim=True)
            n = torch.zeros_like(p).scatter(-1, axis, torch.sign(p.gather(-1, axis)))
            cands.append((torch.where(ok, t, torch.full_like(t, _INF)), n))
        return _first_positive(cands, t_min)
    if kind == "cone":
        r0, r1, hh = size
        slope = (r1 - r0) / (2.0 * hh)
        a0 = 0.5 * (r0 + r1)  # radius at z = 0; radius(z) = a0 + slope * z
        k_o = a0 + slope * o[:, 2]
        qa = d[:, 0] ** 2 + d[:, 1] ** 2 - (slope * d[:, 2]) ** 2
        qb = 2.0 * (o[:, 0] * d[:, 0] + o[:, 1] * d[:, 1] - slope * d[:, 2] * k_o)
        qc = o[:, 0] ** 2 + o[:, 1] ** 2 - k_o**2
        cands = []
        for t in _quadratic_roots(qa, qb, qc):
            p = o + t[:, None] * d
            k = a0 + slope * p[:, 2]
            ok = (p[:, 2].abs() <= hh) & (k >= 0)
            n = torch.stack([p[:, 0], p[:, 1], -k * slope], -1)
            cands.append((torch.where(ok, t, torch.full_like(t, _INF)), n))
        dz = torch.where(d[:, 2].abs() < 1e-12, torch.full_like(d[:, 2], 1e-12), d[:, 2])
        for z, rad in ((-hh, r0), (hh, r1)):
            t = (z - o[:, 2]) / dz
            p = o + t[:, None] * d
            ok = (p[:, 0] ** 2 + p[:, 1] ** 2) <= rad * rad
            n = torch.zeros_like(p)
            n[:, 2] = math.copysign(1.0, z)
            cands.append((torch.where(ok, t, torch.full_like(t, _INF)), n))
        return _first_positive(cands, t_min)
    if kind == "quad":
        hx, hy = size
        dz = torch.where(d[:, 2].abs() < 1e-12, torch.full_like(d[:, 2], 1e-12), d[:, 2])
        t = -o[:, 2] / dz
        p = o + t[:, None] * d
        ok = (p[:, 0].abs() <= hx) & (p[:, 1].abs() <= hy)
        n = torch.zeros_like(p)
        n[:, 2] = 1.0
        return _first_positive([(torch.where(ok, t, torch.full_like(t, _INF)), n)], t_min)
    raise ValueError(f"unknown primitive kind {kind!r}")


@dataclass
class Hits:
    """First hits of a batch of rays against a list of primitives."""

    t: Tensor  # [R] ray parameter of the hit (distance when directions are unit length); inf = miss
    normal: Tensor  # [R, 3] unit world normal, flipped to face the incoming ray (zero on a miss)
    index: Tensor  # [R] long, index of the primitive hit, -1 = miss
    p_local: Tensor  # [R, 3] hit point in the hit primitive's local frame (for solid textures)


def _frames(prims: Sequence[Primitive], dtype) -> tuple[Tensor, Tensor]:  # R [P, 3, 3], c [P, 3]
    R = torch.tensor([p.rot for p in prims], dtype=dtype).reshape(-1, 3, 3)
    c = torch.tensor([p.center for p in prims], dtype=dtype).reshape(-1, 3)
    return R, c


def cast(
    prims: Sequence[Primitive],
    origins: Tensor,  # [R, 3] world
    dirs: Tensor,  # [R, 3] world (unit length recommended: then ``t`` is the distance)
    t_min: float = 1e-4,
    any_hit_before: Tensor | None = None,  # [R] if given, only answer "is there a hit with t < this?" (shadows)
) -> Hits | Tensor:
    """First hit of each ray (or, with ``any_hit_before``, a bool [R] occlusion test for shadow rays)."""
    n_rays = origins.shape[0]
    dtype = origins.dtype
    best_t = torch.full((n_rays,), _INF, dtype=dtype)
    best_n = torch.zeros(n_rays, 3, dtype=dtype)
    best_i = torch.full((n_rays,), -1, dtype=torch.long)
    if len(prims) == 0:
        if any_hit_before is not None:
            return torch.zeros(n_rays, dtype=torch.bool)
        return Hits(best_t, best_n, best_i, torch.zeros(n_rays, 3, dtype=dtype))
    Rs, cs = _frames(prims, dtype)
    occluded = torch.zeros(n_rays, dtype=torch.bool)
    for i, prim in enumerate(prims):
        o_l = (origins - cs[i]) @ Rs[i]  # R^T (o - c), row-vector form
        d_l = dirs @ Rs[i]
        t, n_l = intersect_local(prim.kind, prim.size, o_l, d_l, t_min)
        if any_hit_before is not None:
            occluded |= t < any_hit_before
            continue
        closer = t < best_t
        best_t = torch.where(closer, t, best_t)
        best_n = torch.where(closer[:, None], n_l @ Rs[i].T, best_n)
        best_i = torch.where(closer, torch.full_like(best_i, i), best_i)
    if any_hit_before is not None:
        return occluded
    hit = best_i >= 0
    best_n = torch.nn.functional.normalize(best_n, dim=-1, eps=1e-12)
    facing = (best_n * dirs).sum(-1, keepdim=True) > 0
    best_n = torch.where(facing, -best_n, best_n) * hit[:, None]
    p_local = torch.zeros(n_rays, 3, dtype=dtype)
    p_world = origins + torch.where(hit, best_t, torch.zeros_like(best_t))[:, None] * dirs
    for i in range(len(prims)):
        sel = best_i == i
        if sel.any():
            p_local[sel] = (p_world[sel] - cs[i]) @ Rs[i]
    return Hits(best_t, best_n, best_i, p_local)


def bounds(prims: Sequence[Primitive]) -> tuple[Tensor, Tensor]:  # lo [3], hi [3]
    """World AABB of a list of primitives (float64)."""
    boxes = [p.aabb() for p in prims]
    return torch.stack([b[0] for b in boxes]).amin(0), torch.stack([b[1] for b in boxes]).amax(0)
