"""Ground-truth renderer: analytic ray casting of primitives for pinhole and equirectangular views.

Output conventions (:class:`Render`, all tensors batched over views ``C``):

- ``rgb`` [C, H, W, 3] float in [0, 1] (linear shading, no gamma); supersampled when ``ss > 1`` (box filter);
- ``depth`` [C, H, W]: **pinhole**: camera-space z (distance along the optical axis, OpenCV +z);
  **equirect**: radial distance from the panorama centre along the pixel's ray. ``inf`` where the ray hits
  nothing (sky / background);
- ``distance`` [C, H, W]: radial distance along the ray for both projections (``inf`` on a miss);
- ``hit`` [C, H, W] bool: the ray hit any surface (``== isfinite(depth)``);
- ``mask`` [C, H, W] bool: the ray hit a *foreground* primitive. For a single object every part is foreground,
  so ``mask == hit``; for scenes the placed objects are foreground and floors, walls, ceilings, ground planes and
  sky are not;
- ``normals`` [C, H, W, 3]: unit world-space normals of the hit surface, oriented towards the viewer (zero on a miss).

Geometry (depth, distance, hit, mask, normals) is always taken from the ray through the pixel centre, so it is
exact; only ``rgb`` is anti-aliased by supersampling.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Sequence

import torch
from torch import Tensor

from latent3d.data.procedural.object_sets_config import OBJECT_FOV_Y
from latent3d.data.procedural.primitives import Primitive, cast
from latent3d.data.procedural.shading import Light, Sky, albedo_at, background_color, shade
from latent3d.render.camera import equirect_directions, orbit_cameras, pixel_rays

WHITE = (1.0, 1.0, 1.0)


@dataclass
class Render:
    """Exact renders of a batch of views (see the module docstring for every field's meaning)."""

    rgb: Tensor  # [C, H, W, 3]
    depth: Tensor  # [C, H, W] pinhole: camera z; equirect: radial distance; inf = no hit
    distance: Tensor  # [C, H, W] radial distance along the ray; inf = no hit
    mask: Tensor  # [C, H, W] bool, foreground objects
    hit: Tensor  # [C, H, W] bool, any surface
    normals: Tensor  # [C, H, W, 3] world space, facing the viewer
    projection: Literal["pinhole", "equirect"]
    viewmats: Tensor | None = None  # [C, 4, 4] world-to-camera (OpenCV) for pinhole views
    Ks: Tensor | None = None  # [C, 3, 3]
    centers: Tensor | None = None  # [C, 3] panorama centres for equirect views
    index: Tensor | None = None  # [C, H, W] long: the primitive hit through the pixel centre (-1 = none)


def _unpack(target: Any, light: Light | None, background: Any) -> tuple[list[Primitive], Light, Any]:
    prims = list(target) if isinstance(target, (list, tuple)) else list(target.primitives)
    light = light or getattr(target, "light", None) or Light()
    if background is None:
        background = getattr(target, "background", None) or WHITE
    return prims, light, background


def trace(
    prims: Sequence[Primitive],
    origins: Tensor,  # [R, 3] world
    dirs: Tensor,  # [R, 3] unit world directions
    light: Light = Light(),
    background: Sky | tuple[float, float, float] = WHITE,
    shadows: bool | None = None,
    chunk: int = 1 << 17,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:  # rgb [R, 3], t [R] (inf = miss), normal [R, 3], index [R] (-1 = miss)
    """Cast and shade rays (chunked to bound memory); ``shadows`` overrides ``light.shadows``."""
    use_shadows = light.shadows if shadows is None else shadows
    outs = []
    for s in range(0, origins.shape[0], chunk):
        o, d = origins[s : s + chunk], dirs[s : s + chunk]
        h = cast(prims, o, d)
        hit = h.index >= 0
        rgb = background_color(background, d).clone()
        if hit.any():
            idx = hit.nonzero().squeeze(-1)
            n, t, k = h.normal[idx], h.t[idx], h.index[idx]
            p = o[idx] + t[:, None] * d[idx]
            if light.kind == "point":
                vec = torch.tensor(light.position, dtype=p.dtype) - p
                dist = vec.norm(dim=-1)
                to_light = vec / dist[:, None].clamp(min=1e-9)
            else:
                to_light = torch.nn.functional.normalize(torch.tensor(light.direction, dtype=p.dtype), dim=0)
                to_light = to_light.expand_as(p)
                dist = torch.full_like(t, float("inf"))
            lit = torch.ones_like(t)
            if use_shadows:
                cand = ((n * to_light).sum(-1) > 0).nonzero().squeeze(-1)
                if cand.numel():
                    occ = cast(prims, p[cand] + 1e-3 * n[cand], to_light[cand], any_hit_before=dist[cand])
                    lit[cand] = (~occ).to(lit.dtype)
            albedo = torch.zeros_like(p)
            shin = torch.zeros_like(t)
            expo = torch.ones_like(t)
            emissive = torch.zeros_like(t, dtype=torch.bool)
            for i, prim in enumerate(prims):
                sel = k == i
                if sel.any():
                    albedo[sel] = albedo_at(prim.material, h.p_local[idx][sel])
                    shin[sel] = prim.material.shininess
                    expo[sel] = prim.material.exponent
                    emissive[sel] = prim.material.emissive
            col = shade(albedo, n, d[idx], to_light, lit, light, shin, expo)
            rgb[idx] = torch.where(emissive[:, None], albedo, col)
        outs.append((rgb, h.t, h.normal, h.index))
    return tuple(torch.cat(x, 0) for x in zip(*outs))  # type: ignore[return-value]


def _foreground(prims: Sequence[Primitive], index: Tensor) -> Tensor:
    fg = torch.tensor([p.foreground for p in prims] + [False], dtype=torch.bool)
    return fg[index]  # index -1 picks the trailing False


def _supersample(img: Tensor, ss: int) -> Tensor:  # [C, H*ss, W*ss, 3] -> [C, H, W, 3]
    C, Hs, Ws, ch = img.shape
    return img.reshape(C, Hs // ss, ss, Ws // ss, ss, ch).mean(dim=(2, 4))


def render_views(
    target: Any,  # Object3D, Scene, or a list of Primitive
    viewmats: Tensor,  # [C, 4, 4] world-to-camera (OpenCV)
    Ks: Tensor,  # [C, 3, 3]
    width: int,
    height: int,
    ss: int = 1,
    background: Sky | tuple[float, float, float] | None = None,
    light: Light | None = None,
    shadows: bool | None = None,
) -> Render:
    """Exact pinhole renders (rgb, z-depth, distance, mask, hit, normals) of ``target`` for each camera."""
    prims, light, background = _unpack(target, light, background)
    viewmats = torch.as_tensor(viewmats, dtype=torch.float32).reshape(-1, 4, 4)
    Ks = torch.as_tensor(Ks, dtype=torch.float32).reshape(-1, 3, 3)
    C = viewmats.shape[0]
    o, d = pixel_rays(viewmats, Ks, width, height, normalize=True)  # [C, H, W, 3]
    rgb, t, n, idx = trace(prims, o.reshape(-1, 3), d.reshape(-1, 3), light, background, shadows)
    fwd = viewmats[:, 2, :3]  # camera +z axis in world coordinates, [C, 3]
    cos = (d * fwd[:, None, None, :]).sum(-1)  # [C, H, W]
    dist = t.reshape(C, height, width)
    if ss > 1:
        Ks_ss = Ks.clone()
        Ks_ss[:, :2] *= ss
        o2, d2 = pixel_rays(viewmats, Ks_ss, width * ss, height * ss, normalize=True)
        rgb_ss = trace(prims, o2.reshape(-1, 3), d2.reshape(-1, 3), light, background, shadows)[0]
        rgb = _supersample(rgb_ss.reshape(C, height * ss, width * ss, 3), ss)
    idx = idx.reshape(C, height, width)
    return Render(
        rgb=rgb.reshape(C, height, width, 3),
        depth=dist * cos,
        distance=dist,
        mask=_foreground(prims, idx),
        hit=idx >= 0,
        normals=n.reshape(C, height, width, 3),
        projection="pinhole",
        viewmats=viewmats,
        Ks=Ks,
        index=idx,
    )


def render_orbit(
    target: Any,
    azimuth_deg: float | Sequence[float] | Tensor,  # [C] or scalar; 0 = front (+x)
    elevation_deg: float | Sequence[float] | Tensor = 15.0,  # [C] or scalar
    radius: float = 3.0,
    fov_y: float = OBJECT_FOV_Y,  # radians
    width: int = 256,
    height: int = 256,
    **kw: Any,
) -> Render:
    """Render ``target`` from orbit cameras looking at the origin (:func:`latent3d.render.camera.orbit_cameras`)."""
    viewmats, Ks = orbit_cameras(radius, torch.as_tensor(elevation_deg), torch.as_tensor(azimuth_deg), fov_y,
                                 width, height)
    return render_views(target, viewmats, Ks, width, height, **kw)


def render_equirect(
    target: Any,
    center: Sequence[float] | Tensor,  # [3] or [C, 3] panorama centres in world space
    width: int = 512,
    height: int = 256,
    ss: int = 1,
    background: Sky | tuple[float, float, float] | None = None,
    light: Light | None = None,
    shadows: bool | None = None,
) -> Render:
    """Equirectangular 360° renders from ``center`` (layout of :func:`latent3d.render.camera.equirect_directions`).

    ``depth`` and ``distance`` are both the radial distance along each pixel's ray (not a z-depth).
    """
    prims, light, background = _unpack(target, light, background)
    centers = torch.as_tensor(center, dtype=torch.float32).reshape(-1, 3)
    C = centers.shape[0]

    def run(w: int, h: int):
        d = equirect_directions(w, h).reshape(1, -1, 3).expand(C, -1, -1).reshape(-1, 3)
        o = centers[:, None, :].expand(C, w * h, 3).reshape(-1, 3)
        return trace(prims, o, d, light, background, shadows)

    rgb, t, n, idx = run(width, height)
    if ss > 1:
        rgb = _supersample(run(width * ss, height * ss)[0].reshape(C, height * ss, width * ss, 3), ss)
    idx = idx.reshape(C, height, width)
    dist = t.reshape(C, height, width)
    return Render(
        rgb=rgb.reshape(C, height, width, 3),
        depth=dist,
        distance=dist,
        mask=_foreground(prims, idx),
        hit=idx >= 0,
        normals=n.reshape(C, height, width, 3),
        projection="equirect",
        centers=centers,
    )

