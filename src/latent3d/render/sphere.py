"""DepthFusion's displaced sphere: an equirectangular RGBD panorama as a surface you can stand inside.

LDM3D (Stan et al. 2023, arXiv 2305.10853, Sec. 5 "DepthFusion"): the RGB panorama is mapped onto a sphere seen
from its centre and the depth panorama moves every vertex along its ray -- a depth value of 0.5 leaves the vertex
on the sphere, values towards 1.0 pull it nearer, values towards 0.0 push it farther. Because every vertex moves
along the ray through it, the view from the centre is the input panorama unchanged; any other eye position sees
parallax.

The surface is a radial height field ``p(w) = r(w) * w`` over unit directions ``w``. ``r`` is stored on a regular
longitude/latitude vertex grid (:class:`DisplacedSphere`), the same grid the exported mesh uses:

- vertex ``(i, j)`` has longitude ``-pi + 2*pi*j/n_lon`` and latitude ``pi/2 - pi*i/n_lat`` (world axes and
  longitude sense of :func:`latent3d.render.camera.equirect_directions`: z up, lon 0 along +x, positive to the
  right = towards -y);
- **seam**: column ``n_lon`` duplicates column 0 (same radius, so the same 3D point; the mesh keeps both only so
  that the texture coordinate can jump from u=1 back to u=0) -- no crack at lon = +-pi;
- **poles**: rows 0 and ``n_lat`` hold one radius each (the mean of the panorama's polar cap), so all pole
  vertices coincide and the cap is closed by triangles (no degenerate quads, no hole).

Between vertices the radius is interpolated bilinearly in (lon, lat); colours come from the full-resolution
panorama (bilinear, wrapping in longitude). :func:`trace_sphere` intersects rays with this height field exactly up
to a bisection tolerance; :func:`export_world_glb` writes the mesh as a textured, double-sided, unlit glTF 2.0.
"""

from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from latent3d.io.mesh import z_up_to_y_up  # noqa: F401  (re-exported: world.glb is y up)
from latent3d.render.depth_modes import DepthMode


@dataclass
class DisplacedSphere:
    """A displaced equirect sphere centred at the origin (world z up)."""

    radii: Tensor  # [n_lat + 1, n_lon + 1] radius of every grid vertex (seam column duplicated, pole rows constant)
    texture: Tensor  # [H, W, 3] float in [0, 1], the equirect RGB panorama

    @property
    def n_lat(self) -> int:
        return self.radii.shape[0] - 1

    @property
    def n_lon(self) -> int:
        return self.radii.shape[1] - 1

    @property
    def r_min(self) -> float:
        return float(self.radii.min())

    @property
    def r_max(self) -> float:
        return float(self.radii.max())


# ------------------------------------------------------------------------------------------------- depth -> radius
def depth_to_radius(
    depth: Tensor,  # [H, W] disparity-style depth in [0, 1] (bright = near), or metric radial distance
    mode: DepthMode = "disparity",
    strength: float = 0.5,
    radius: float = 4.0,
    far: float | None = None,
) -> Tensor:  # [H, W] radial distance of the surface from the centre
    """How far along its ray each panorama pixel lies (DepthFusion's displacement, LDM3D Sec. 5).

    - ``"disparity"`` (default): ``r = radius / (1 + strength * (2*d - 1))``. 0.5 stays at ``radius``; 1 moves to
      ``radius / (1 + strength)`` (nearer), 0 to ``radius / (1 - strength)`` (farther). Inverse distance is linear
      in ``d``, as it is for the DPT/LDM3D disparity output, so the parallax is geometrically consistent; this is
      :func:`latent3d.io.depth.disparity_to_depth` with ``near = radius/(1+strength)``, ``far = radius/(1-strength)``.
      ``strength`` in [0, 1).
    - ``"linear"``: ``r = radius * (1 - strength * (2*d - 1))``: a vertex displaced along its normal by an amount
      linear in ``d - 0.5`` (DepthFusion's TouchDesigner displacement). ``strength`` in [0, 1).
    - ``"metric"``: ``depth`` already is the distance along the ray (e.g. ``Render.distance`` of
      :func:`latent3d.data.procedural.raycast.render_equirect`); non-finite values (sky) and values beyond ``far``
      become ``far`` (default: 2x the largest finite distance). ``strength`` and ``radius`` are ignored.
    """
    d = torch.as_tensor(depth, dtype=torch.float32)
    if mode == "metric":
        finite = torch.isfinite(d) & (d > 0)
        if not finite.any():
            raise ValueError("depth_to_radius(mode='metric'): no finite positive distance in the depth map")
        far = float(far) if far is not None else 2.0 * float(d[finite].max())
        near = float(d[finite].min())
        if not 0 < near <= far:
            raise ValueError(f"depth_to_radius: far={far} is nearer than the nearest point ({near})")
        return torch.where(finite, d, torch.full_like(d, far)).clamp(max=far)
    if not 0.0 <= strength < 1.0:
        raise ValueError(f"strength must be in [0, 1), got {strength} (1 would collapse near points onto the centre)")
    if radius <= 0:
        raise ValueError(f"radius must be positive, got {radius}")
    d = torch.nan_to_num(d, nan=0.5).clamp(0.0, 1.0)
    if mode == "disparity":
        return radius / (1.0 + strength * (2.0 * d - 1.0))
    if mode == "linear":
        return radius * (1.0 - strength * (2.0 * d - 1.0))
    raise ValueError(f"unknown depth mode {mode!r}; use disparity, linear or metric")


def _vertex_radii(
    r_pix: Tensor,  # [H, W] per-pixel radius of the panorama
    n_lon: int,
    n_lat: int,
) -> Tensor:  # [n_lat + 1, n_lon + 1]
    """Radii at the grid vertices: resample to one value per face (area average when shrinking), then each
    vertex takes the mean of its 4 faces (wrapping in longitude); pole rows take the mean of the polar face row."""
    x = r_pix[None, None]
    H, W = r_pix.shape
    if H >= n_lat and W >= n_lon:
        cells = F.interpolate(x, size=(n_lat, n_lon), mode="area")[0, 0]
    else:  # upsampling: bilinear, wrapping in longitude
        cells = _wrap_bilinear(r_pix, n_lat, n_lon)
    left = torch.roll(cells, 1, dims=1)  # face j-1 for vertex column j
    col = 0.5 * (cells + left)  # [n_lat, n_lon]: mean of the two faces beside vertex column j, per face row
    inner = 0.5 * (col[:-1] + col[1:])  # [n_lat - 1, n_lon] vertex rows 1..n_lat-1
    top = cells[0].mean().expand(1, n_lon)
    bottom = cells[-1].mean().expand(1, n_lon)
    grid = torch.cat([top, inner, bottom], dim=0)  # [n_lat + 1, n_lon]
    return torch.cat([grid, grid[:, :1]], dim=1).contiguous()  # seam column duplicates column 0 exactly


def _wrap_bilinear(img: Tensor, out_h: int, out_w: int) -> Tensor:  # [H, W] -> [out_h, out_w], lon-periodic
    lon = 2.0 * math.pi * (torch.arange(out_w, dtype=torch.float32) + 0.5) / out_w - math.pi
    lat = 0.5 * math.pi - math.pi * (torch.arange(out_h, dtype=torch.float32) + 0.5) / out_h
    lat, lon = torch.meshgrid(lat, lon, indexing="ij")
    return sample_equirect(img[..., None], lon, lat)[..., 0]


def build_displaced_sphere(
    rgb: Tensor,  # [H, W, 3] float in [0, 1], equirect panorama
    depth: Tensor,  # [H, W] disparity in [0, 1] (bright = near), or metric radial distance with mode="metric"
    n_lon: int = 256,
    n_lat: int = 128,
    mode: DepthMode = "disparity",
    strength: float = 0.5,
    radius: float = 4.0,
    far: float | None = None,
) -> DisplacedSphere:
    """The displaced sphere of an RGBD panorama (LDM3D Sec. 5) with ``n_lon x n_lat`` segments; ``mode``,
    ``strength``, ``radius`` and ``far`` are those of :func:`depth_to_radius`."""
    rgb = torch.as_tensor(rgb, dtype=torch.float32)
    depth = torch.as_tensor(depth, dtype=torch.float32)
    if rgb.ndim != 3 or rgb.shape[-1] != 3 or depth.shape != rgb.shape[:2]:
        raise ValueError(f"build_displaced_sphere: rgb must be [H, W, 3] and depth [H, W] of the same size, got "
                         f"{tuple(rgb.shape)} and {tuple(depth.shape)}")
    if n_lon < 3 or n_lat < 2:
        raise ValueError(f"need n_lon >= 3 and n_lat >= 2 segments, got {n_lon} x {n_lat}")
    r_pix = depth_to_radius(depth, mode, strength, radius, far)
    return DisplacedSphere(_vertex_radii(r_pix, n_lon, n_lat), rgb.clamp(0.0, 1.0).contiguous())


# ------------------------------------------------------------------------------------------------------- lookups
def direction_to_lonlat(dirs: Tensor) -> tuple[Tensor, Tensor]:  # [..., 3] -> lon [...], lat [...] (radians)
    """Longitude (0 = +x, positive towards -y) and latitude (positive up) of any non-zero vectors."""
    x, y, z = dirs.unbind(-1)
    return torch.atan2(-y, x), torch.atan2(z, torch.hypot(x, y))


def sample_equirect(
    img: Tensor,  # [H, W, C] equirect image (pixel centres as in camera.equirect_directions)
    lon: Tensor,  # [...] radians
    lat: Tensor,  # [...] radians
) -> Tensor:  # [..., C]
    """Bilinear lookup that wraps around in longitude and clamps at the poles. At a pixel centre it returns that
    pixel exactly (up to float rounding of the angles)."""
    H, W, C = img.shape
    x = (lon + math.pi) * (W / (2.0 * math.pi)) - 0.5
    y = (0.5 * math.pi - lat) * (H / math.pi) - 0.5
    x0, y0 = torch.floor(x), torch.floor(y)
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]
    x0 = x0.long()
    y0 = y0.long()
    xa, xb = torch.remainder(x0, W), torch.remainder(x0 + 1, W)
    ya, yb = y0.clamp(0, H - 1), (y0 + 1).clamp(0, H - 1)
    flat = img.reshape(-1, C)

    def g(yy: Tensor, xx: Tensor) -> Tensor:
        return flat[(yy * W + xx).reshape(-1)].reshape(*xx.shape, C)

    top = g(ya, xa) * (1 - fx) + g(ya, xb) * fx
    bot = g(yb, xa) * (1 - fx) + g(yb, xb) * fx
    return top * (1 - fy) + bot * fy


def radius_at(
    sphere: DisplacedSphere,
    dirs: Tensor,  # [..., 3] any non-zero length
) -> Tensor:  # [...] surface radius in that direction (bilinear in lon/lat between grid vertices)
    """``r(w)`` of the height field, the surface the mesh approximates with flat triangles."""
    lon, lat = direction_to_lonlat(dirs)
    n_lon, n_lat = sphere.n_lon, sphere.n_lat
    gx = (lon + math.pi) * (n_lon / (2.0 * math.pi))
    gy = (0.5 * math.pi - lat) * (n_lat / math.pi)
    x0 = torch.floor(gx).clamp(0, n_lon - 1)
    y0 = torch.floor(gy).clamp(0, n_lat - 1)
    fx, fy = (gx - x0).clamp(0, 1), (gy - y0).clamp(0, 1)
    i = (y0.long() * (n_lon + 1) + x0.long()).reshape(-1)
    flat = sphere.radii.reshape(-1)
    shape = gx.shape
    r00, r01 = flat[i].reshape(shape), flat[i + 1].reshape(shape)
    r10, r11 = flat[i + n_lon + 1].reshape(shape), flat[i + n_lon + 2].reshape(shape)
    return (r00 * (1 - fx) + r01 * fx) * (1 - fy) + (r10 * (1 - fx) + r11 * fx) * fy


# --------------------------------------------------------------------------------------------------- ray casting
def trace_sphere(
    sphere: DisplacedSphere,
    origins: Tensor,  # [R, 3] inside the surface: |o| < sphere.r_min
    dirs: Tensor,  # [R, 3] unit directions
    samples_per_cell: float = 2.0,
    refine: int = 12,
    chunk: int = 1 << 16,
) -> tuple[Tensor, Tensor, Tensor]:  # rgb [R, 3], t [R] distance along the ray, hit direction from the centre [R, 3]
    """First intersection of rays with the radial height field ``|p| = r(p/|p|)``.

    Along a ray ``p(t) = o + t*d`` the signed gap ``f(t) = |p(t)| - r(p(t))`` is <= 0 where ``|p| = r_min`` and
    >= 0 where ``|p| = r_max``; between those two ``t`` the ray is sampled uniformly in ``1/t`` and densely enough
    to cross no more than ``1 / samples_per_cell`` of a grid cell per step, the first sample with ``f >= 0``
    brackets the visible hit, ``refine`` bisections and a final secant step locate it. From the centre (``o = 0``)
    the ray never changes direction, so the hit colour is the panorama itself: the monoscopic invariance of
    DepthFusion.

    Like any height-field ray march it can step over a sliver: a ray that only grazes the steep "rubber sheet"
    stretched across a depth edge for a stretch of ``t`` shorter than one step sees what lies behind it instead.
    On real scenes this is rare (tests/test_stereo.py holds the default against a 16x denser twin).
    """
    origins = torch.as_tensor(origins, dtype=torch.float32).reshape(-1, 3)
    dirs = F.normalize(torch.as_tensor(dirs, dtype=torch.float32).reshape(-1, 3), dim=-1)
    if origins.shape != dirs.shape:
        raise ValueError(f"trace_sphere: origins {tuple(origins.shape)} and dirs {tuple(dirs.shape)} differ")
    r_min, r_max = sphere.r_min, sphere.r_max
    if origins.shape[0] and float(origins.norm(dim=-1).max()) >= r_min:
        raise ValueError(f"trace_sphere: ray origins must lie inside the nearest surface point (|o| < {r_min:.4g})")
    cells_per_rad = max(sphere.n_lon / (2.0 * math.pi), sphere.n_lat / math.pi)
    out = [_trace_chunk(sphere, origins[s : s + chunk], dirs[s : s + chunk], r_min, r_max,
                        cells_per_rad * samples_per_cell, refine) for s in range(0, origins.shape[0], chunk)]
    if not out:
        return torch.zeros(0, 3), torch.zeros(0), torch.zeros(0, 3)
    return tuple(torch.cat(x, 0) for x in zip(*out))  # type: ignore[return-value]


def _t_at_radius(o: Tensor, d: Tensor, r: float) -> Tensor:  # [R, 3], [R, 3] -> [R]: |o + t d| = r, t >= 0
    od = (o * d).sum(-1)
    return -od + torch.sqrt((od * od - (o * o).sum(-1) + r * r).clamp(min=0.0))


def _trace_chunk(sphere: DisplacedSphere, o: Tensor, d: Tensor, r_min: float, r_max: float, samples_per_rad: float,
                 refine: int) -> tuple[Tensor, Tensor, Tensor]:
    t_lo, t_hi = _t_at_radius(o, d, r_min), _t_at_radius(o, d, r_max)  # [R]

    p_lo, p_hi = o + t_lo[:, None] * d, o + t_hi[:, None] * d
    cos = (F.normalize(p_lo, dim=-1) * F.normalize(p_hi, dim=-1)).sum(-1).clamp(-1.0, 1.0)
    sweep = float(torch.arccos(cos).max()) if o.shape[0] else 0.0  # widest angle a ray of the chunk crosses
    n = int(min(max(math.ceil(sweep * samples_per_rad) + 2, 3), 1024))
    s = torch.linspace(0.0, 1.0, n)
    # uniform in inverse distance: a ray from near the centre turns (in panorama angle) like 1/t, so the samples
    # are about evenly spaced in angle however wide [r_min, r_max] is (metric depth spans 1 m to the sky)
    ts = 1.0 / (1.0 / t_lo[:, None] + (1.0 / t_hi - 1.0 / t_lo)[:, None] * s[None, :])  # [R, n]
    pts = o[:, None, :] + ts[..., None] * d[:, None, :]  # [R, n, 3]
    f = pts.norm(dim=-1) - radius_at(sphere, pts)  # [R, n]
    f[:, -1] = f[:, -1].clamp(min=0.0)  # r <= r_max everywhere: the last sample is outside (guards rounding)
    k = torch.argmax((f >= 0).to(torch.uint8), dim=1)  # first sample on or outside the surface
    kb = k.clamp(min=1)
    a = torch.where(k == 0, t_lo, ts.gather(1, (kb - 1)[:, None])[:, 0])
    b = torch.where(k == 0, t_lo, ts.gather(1, kb[:, None])[:, 0])
    fa = torch.where(k == 0, torch.zeros_like(t_lo), f.gather(1, (kb - 1)[:, None])[:, 0])
    fb = torch.where(k == 0, torch.zeros_like(t_lo), f.gather(1, kb[:, None])[:, 0])
    for _ in range(refine):
        m = 0.5 * (a + b)
        pm = o + m[:, None] * d
        fm = pm.norm(dim=-1) - radius_at(sphere, pm)
        inside = fm < 0
        a, fa = torch.where(inside, m, a), torch.where(inside, fm, fa)
        b, fb = torch.where(inside, b, m), torch.where(inside, fb, fm)
    denom = fb - fa
    t = torch.where(denom > 0, a - fa * (b - a) / denom.clamp(min=1e-12), b)
    hit = o + t[:, None] * d
    lon, lat = direction_to_lonlat(hit)
    rgb = sample_equirect(sphere.texture, lon, lat)
    return rgb, t, F.normalize(hit, dim=-1)


# -------------------------------------------------------------------------------------------------------- mesh
def sphere_mesh(
    sphere: DisplacedSphere,
) -> tuple[Tensor, Tensor, Tensor]:  # vertices [V, 3] (world, z up), faces [F, 3] int64, uv [V, 2] (v down)
    """Triangle mesh of the displaced sphere, wound so that faces look **inwards** (towards the centre).

    Layout: ``n_lon`` top-pole vertices (one per segment, u at the segment centre), ``n_lat - 1`` rows of
    ``n_lon + 1`` vertices (seam duplicated), ``n_lon`` bottom-pole vertices. UV: ``u = (lon + pi) / (2 pi)``,
    ``v = (pi/2 - lat) / pi`` (glTF convention, v = 0 at the top row of the texture).
    """
    n_lon, n_lat = sphere.n_lon, sphere.n_lat
    j = torch.arange(n_lon + 1, dtype=torch.float64)
    i = torch.arange(n_lat + 1, dtype=torch.float64)
    u_grid = j / n_lon
    lon = 2.0 * math.pi * u_grid - math.pi
    lat = 0.5 * math.pi - math.pi * i / n_lat
    la, lo = torch.meshgrid(lat, lon, indexing="ij")  # [n_lat + 1, n_lon + 1]
    dirs = torch.stack([la.cos() * lo.cos(), -la.cos() * lo.sin(), la.sin()], dim=-1)
    pts = (dirs * sphere.radii.double()[..., None]).float()  # [n_lat + 1, n_lon + 1, 3]
    pts[0], pts[-1] = pts[0, 0], pts[-1, 0]  # exact pole points (cos(pi/2) is not exactly 0 in floats)
    pts[:, -1] = pts[:, 0]  # exact seam
    uc = (j[:-1] + 0.5) / n_lon  # [n_lon] pole u at segment centres
    verts = torch.cat([pts[0, :n_lon], pts[1:-1].reshape(-1, 3), pts[-1, :n_lon]], dim=0)
    uv = torch.cat([
        torch.stack([uc, torch.zeros(n_lon, dtype=uc.dtype)], -1),
        torch.stack(torch.broadcast_tensors(u_grid[None, :], (i[1:-1] / n_lat)[:, None]), -1).reshape(-1, 2),
        torch.stack([uc, torch.ones(n_lon, dtype=uc.dtype)], -1),
    ]).float()

    def row(r: int) -> Tensor:  # vertex indices of grid row r (1..n_lat-1), [n_lon + 1]
        return n_lon + (r - 1) * (n_lon + 1) + torch.arange(n_lon + 1)

    seg = torch.arange(n_lon)
    faces = []
    if n_lat >= 2:
        first, last = row(1), row(n_lat - 1)
        bottom0 = n_lon + (n_lat - 1) * (n_lon + 1)
        faces.append(torch.stack([seg, first[seg], first[seg + 1]], -1))  # top cap
        for r in range(1, n_lat - 1):  # quads between rows r and r + 1
            a, b = row(r), row(r + 1)
            faces.append(torch.stack([a[seg], b[seg], a[seg + 1]], -1))
            faces.append(torch.stack([a[seg + 1], b[seg], b[seg + 1]], -1))
        faces.append(torch.stack([last[seg], bottom0 + seg, last[seg + 1]], -1))  # bottom cap
    return verts, torch.cat(faces, 0).long(), uv


def _png_bytes(img: Tensor) -> bytes:  # [H, W, 3] float in [0, 1]
    import io

    from PIL import Image

    from latent3d.io.image import to_uint8_image

    buf = io.BytesIO()
    Image.fromarray(to_uint8_image(img)).save(buf, format="PNG")
    return buf.getvalue()


def world_glb_bytes(sphere: DisplacedSphere, name: str = "world") -> bytes:
    """A binary glTF 2.0 of the displaced sphere: positions (y up), TEXCOORD_0, uint32 indices, the panorama as
    an embedded PNG ``baseColorTexture``, ``KHR_materials_unlit`` (the panorama shows its own colours, as a photo
    sphere should) and ``doubleSided`` (visible from inside and out; faces are wound inwards)."""
    verts, faces, uv = sphere_mesh(sphere)
    pos = z_up_to_y_up(verts).numpy().astype("<f4")
    tex = uv.numpy().astype("<f4")
    idx = faces.numpy().astype("<u4").reshape(-1)
    png = _png_bytes(sphere.texture)
    blobs = [pos.tobytes(), tex.tobytes(), idx.tobytes(), png]
    views, offset, body = [], 0, b""
    targets = [34962, 34962, 34963, None]  # ARRAY_BUFFER, ARRAY_BUFFER, ELEMENT_ARRAY_BUFFER, image
    for blob, target in zip(blobs, targets):
        pad = (-len(body)) % 4
        body += b"\0" * pad
        offset = len(body)
        view: dict[str, Any] = {"buffer": 0, "byteOffset": offset, "byteLength": len(blob)}
        if target is not None:
            view["target"] = target
        views.append(view)
        body += blob
    body += b"\0" * ((-len(body)) % 4)
    doc = {
        "asset": {"version": "2.0", "generator": "latent3d (DepthFusion displaced sphere)"},
        "extensionsUsed": ["KHR_materials_unlit"],
        "scene": 0,
        "scenes": [{"name": name, "nodes": [0]}],
        "nodes": [{"name": name, "mesh": 0}],
        "meshes": [{"name": name, "primitives": [{"attributes": {"POSITION": 0, "TEXCOORD_0": 1}, "indices": 2,
                                                  "material": 0, "mode": 4}]}],
        "materials": [{"name": "panorama", "doubleSided": True,
                       "pbrMetallicRoughness": {"baseColorTexture": {"index": 0}, "metallicFactor": 0.0,
                                                "roughnessFactor": 1.0},
                       "extensions": {"KHR_materials_unlit": {}}}],
        "textures": [{"sampler": 0, "source": 0}],
        "samplers": [{"magFilter": 9729, "minFilter": 9987, "wrapS": 10497, "wrapT": 33071}],
        "images": [{"name": "panorama", "bufferView": 3, "mimeType": "image/png"}],
        "accessors": [
            {"bufferView": 0, "componentType": 5126, "count": int(pos.shape[0]), "type": "VEC3",
             "min": [float(v) for v in pos.min(0)], "max": [float(v) for v in pos.max(0)]},
            {"bufferView": 1, "componentType": 5126, "count": int(tex.shape[0]), "type": "VEC2"},
            {"bufferView": 2, "componentType": 5125, "count": int(idx.shape[0]), "type": "SCALAR"},
        ],
        "bufferViews": views,
        "buffers": [{"byteLength": len(body)}],
    }
    js = json.dumps(doc, separators=(",", ":")).encode("utf-8")
    js += b" " * ((-len(js)) % 4)
    total = 12 + 8 + len(js) + 8 + len(body)
    return (struct.pack("<III", 0x46546C67, 2, total) + struct.pack("<II", len(js), 0x4E4F534A) + js
            + struct.pack("<II", len(body), 0x004E4942) + body)


def export_world_glb(path: str | os.PathLike, sphere: DisplacedSphere) -> Path:
    """Atomically write :func:`world_glb_bytes` to ``path`` (``world.glb``)."""
    from latent3d.io.atomic import write_bytes

    return write_bytes(path, world_glb_bytes(sphere, Path(path).stem))
