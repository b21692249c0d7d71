"""Cameras: one convention for all of latent3d, converted at the borders.

Convention (OpenCV, as gsplat and COLMAP):

- camera space: +x right, +y down, +z forward (depth is the +z coordinate);
- ``viewmats`` are world-to-camera 4x4 matrices ``[..., 4, 4]``; ``Ks`` are 3x3 pinhole intrinsics in pixels, the
  centre of pixel (row i, column j) being at ``(j + 0.5, i + 0.5)``;
- world space is right-handed with **+z up**; orbit azimuth 0 puts the camera on the +x axis looking back at the
  origin (the "front view" of an object), azimuth grows counter-clockwise seen from above;
- equirectangular images: the centre column looks along +x, moving right in the image turns right (towards -y),
  the top row looks straight up (+z).

Converters: OpenGL / nerfstudio / NeRF-blender camera-to-world (``+y up, +z backward``) and INRIA 3DGS ``(R, T)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

_OPENGL_FLIP = (1.0, -1.0, -1.0)  # camera-axis flip between OpenGL (y up, z back) and OpenCV (y down, z forward)


def intrinsics_from_fov(
    fov_y: float | Tensor,  # [...] vertical field of view in radians
    width: int,
    height: int,
    dtype: torch.dtype = torch.float32,
) -> Tensor:  # [..., 3, 3]
    """Pinhole intrinsics with square pixels and the principal point at the image centre (in ``dtype``)."""
    fov_y = torch.as_tensor(fov_y, dtype=dtype)
    f = 0.5 * height / torch.tan(0.5 * fov_y)
    K = torch.zeros(*fov_y.shape, 3, 3, dtype=fov_y.dtype)
    K[..., 0, 0] = f
    K[..., 1, 1] = f
    K[..., 0, 2] = 0.5 * width
    K[..., 1, 2] = 0.5 * height
    K[..., 2, 2] = 1.0
    return K


def fov_from_intrinsics(
    Ks: Tensor,  # [..., 3, 3]
    height: int,
) -> Tensor:  # [...] vertical field of view in radians
    """Inverse of :func:`intrinsics_from_fov` for the vertical axis."""
    return 2.0 * torch.atan(0.5 * height / Ks[..., 1, 1])


def rigid_inverse(
    T: Tensor,  # [..., 4, 4] rigid transform (rotation + translation)
) -> Tensor:  # [..., 4, 4]
    """Inverse of a rigid transform without a general matrix inverse: [R t]^-1 = [R^T, -R^T t]."""
    R = T[..., :3, :3]
    t = T[..., :3, 3:]
    out = torch.zeros_like(T)
    Rt = R.transpose(-1, -2)
    out[..., :3, :3] = Rt
    out[..., :3, 3:] = -Rt @ t
    out[..., 3, 3] = 1.0
    return out


def camera_centers(
    viewmats: Tensor,  # [C, 4, 4] world-to-camera
) -> Tensor:  # [C, 3] world-space camera centres -R^T t
    """Where the cameras are in world space."""
    R, t = viewmats[:, :3, :3], viewmats[:, :3, 3]
    return -(R.transpose(1, 2) @ t[..., None])[..., 0]


def look_at(
    eye: Tensor,  # [..., 3] camera centre in world space
    target: Tensor,  # [..., 3] point the camera looks at
    up: Sequence[float] | Tensor = (0.0, 0.0, 1.0),  # [3] world up
    dtype: torch.dtype = torch.float32,
) -> Tensor:  # [..., 4, 4] world-to-camera (OpenCV)
    """World-to-camera matrices of cameras at ``eye`` looking at ``target`` with ``up`` pointing up in the image.

    Computed and returned in ``dtype`` (float32 by default; pass ``torch.float64`` for double-precision work).

    When the viewing direction is parallel to ``up`` (looking straight down/up) the image "up" falls back to +y
    of the world so that the result is still a proper rotation.
    """
    eye = torch.as_tensor(eye, dtype=dtype)
    target = torch.as_tensor(target, dtype=eye.dtype).expand_as(eye)
    up_t = torch.as_tensor(up, dtype=eye.dtype).expand_as(eye)
    fwd = torch.nn.functional.normalize(target - eye, dim=-1)
    right = torch.linalg.cross(fwd, up_t, dim=-1)
    degenerate = right.norm(dim=-1, keepdim=True) < 1e-6
    alt_up = torch.tensor([0.0, 1.0, 0.0], dtype=eye.dtype).expand_as(eye)
    right = torch.where(degenerate, torch.linalg.cross(fwd, alt_up, dim=-1), right)
    right = torch.nn.functional.normalize(right, dim=-1)
    down = torch.linalg.cross(fwd, right, dim=-1)
    c2w = torch.zeros(*eye.shape[:-1], 4, 4, dtype=eye.dtype)
    c2w[..., :3, 0] = right
    c2w[..., :3, 1] = down
    c2w[..., :3, 2] = fwd
    c2w[..., :3, 3] = eye
    c2w[..., 3, 3] = 1.0
    return rigid_inverse(c2w)


def spherical_to_cartesian(
    radius: Tensor,  # [...]
    elevation: Tensor,  # [...] radians above the xy plane
    azimuth: Tensor,  # [...] radians, 0 = +x, counter-clockwise seen from +z
) -> Tensor:  # [..., 3]
    """Point on a sphere around the origin (z up)."""
    ce = torch.cos(elevation)
    return torch.stack(
        [radius * ce * torch.cos(azimuth), radius * ce * torch.sin(azimuth), radius * torch.sin(elevation)], dim=-1
    )


def orbit_cameras(
    radius: float | Tensor,  # [C] or scalar
    elevation_deg: float | Tensor,  # [C] or scalar, degrees above the xy plane (90 - polar angle)
    azimuth_deg: float | Tensor,  # [C] or scalar
    fov_y: float | Tensor,  # [C] or scalar, radians
    width: int,
    height: int,
    target: Sequence[float] = (0.0, 0.0, 0.0),
    dtype: torch.dtype = torch.float32,
) -> tuple[Tensor, Tensor]:  # viewmats [C, 4, 4], Ks [C, 3, 3]
    """Cameras on a sphere around ``target`` looking at it (the object-centric rig of DreamFusion/LucidDreamer)."""
    r, el, az, fov = torch.broadcast_tensors(
        *(torch.as_tensor(v, dtype=dtype).reshape(-1) for v in (radius, elevation_deg, azimuth_deg, fov_y))
    )
    tgt = torch.tensor(target, dtype=dtype)
    eye = spherical_to_cartesian(r, torch.deg2rad(el), torch.deg2rad(az)) + tgt
    return look_at(eye, tgt.expand_as(eye), dtype=dtype), intrinsics_from_fov(fov, width, height, dtype=dtype)


def turntable_cameras(
    n: int,
    size: int,
    radius: float,
    fov: float,
    elevation_deg: float = 15.0,
) -> tuple[Tensor, Tensor]:  # viewmats [n, 4, 4], Ks [n, 3, 3]
    """``n`` square ``size`` x ``size`` cameras evenly around the origin at one elevation (azimuth 0 = front, +x)."""
    az = torch.arange(n) * (360.0 / n)
    return orbit_cameras(radius, elevation_deg, az, fov, size, size)


@dataclass
class OrbitSample:
    """Randomly drawn orbit cameras and the spherical coordinates they were drawn at."""

    viewmats: Tensor  # [C, 4, 4]
    Ks: Tensor  # [C, 3, 3]
    radius: Tensor  # [C]
    elevation_deg: Tensor  # [C]
    azimuth_deg: Tensor  # [C] in [-180, 180)
    fov_y: Tensor  # [C] radians


def sample_orbit_cameras(
    n: int,
    width: int,
    height: int,
    radius_range: tuple[float, float] = (5.2, 5.5),
    elevation_range_deg: tuple[float, float] = (-15.0, 45.0),
    azimuth_range_deg: tuple[float, float] = (-180.0, 180.0),
    fov_range: tuple[float, float] = (0.32, 0.60),
    generator: torch.Generator | None = None,
    stratified_azimuth: bool = True,
) -> OrbitSample:
    """Draw ``n`` cameras uniformly in radius, elevation and fov; azimuth stratified over the batch.

    Defaults are LucidDreamer's (Liang et al. 2023, Sec. 4 / official config): radius [5.2, 5.5], polar
    [45, 105] deg (= elevation [-15, 45]), fov [0.32, 0.60] rad. Stratifying the azimuth of a batch of views (one
    random offset, views evenly spaced) covers the object evenly, as DreamFusion-style trainers do.
    """

    def uniform(lo: float, hi: float, size: int) -> Tensor:
        return lo + (hi - lo) * torch.rand(size, generator=generator)

    radius = uniform(*radius_range, n)
    elevation = uniform(*elevation_range_deg, n)
    fov = uniform(*fov_range, n)
    lo, hi = azimuth_range_deg
    if stratified_azimuth and n > 1:
        azimuth = lo + (hi - lo) * (torch.rand(1, generator=generator) + torch.arange(n)) / n
    else:
        azimuth = uniform(lo, hi, n)
    azimuth = torch.remainder(azimuth + 180.0, 360.0) - 180.0
    viewmats, Ks = orbit_cameras(radius, elevation, azimuth, fov, width, height)
    return OrbitSample(viewmats, Ks, radius, elevation, azimuth, fov)


def pixel_rays(
    viewmats: Tensor,  # [C, 4, 4] world-to-camera
    Ks: Tensor,  # [C, 3, 3]
    width: int,
    height: int,
    normalize: bool = True,
) -> tuple[Tensor, Tensor]:  # origins [C, H, W, 3], directions [C, H, W, 3] in world space
    """Rays through pixel centres. ``normalize=False`` returns directions whose camera-space z is 1, so that
    ``origin + depth * direction`` is the 3D point at z-depth ``depth``."""
    dtype = viewmats.dtype
    jj, ii = torch.meshgrid(
        torch.arange(width, dtype=dtype) + 0.5, torch.arange(height, dtype=dtype) + 0.5, indexing="xy"
    )  # [H, W] each
    fx, fy = Ks[:, 0, 0, None, None], Ks[:, 1, 1, None, None]
    cx, cy = Ks[:, 0, 2, None, None], Ks[:, 1, 2, None, None]
    x = (jj - cx) / fx  # [C, H, W]
    y = (ii - cy) / fy
    d_cam = torch.stack([x, y, torch.ones_like(x)], dim=-1)
    c2w = rigid_inverse(viewmats)
    d_world = torch.einsum("cij,chwj->chwi", c2w[:, :3, :3], d_cam)
    if normalize:
        d_world = torch.nn.functional.normalize(d_world, dim=-1)
    origins = c2w[:, None, None, :3, 3].expand_as(d_world)
    return origins, d_world


def rays_at_pixels(
    viewmats: Tensor,  # [C, 4, 4] world-to-camera (differentiable: pose refinement optimises it)
    Ks: Tensor,  # [C, 3, 3]
    pixels: Tensor,  # [C, R, 2] continuous (column, row); a pixel's centre is (j + 0.5, i + 0.5)
) -> tuple[Tensor, Tensor]:  # origins [C, R, 3], unit directions [C, R, 3] in world space
    """Rays through arbitrary image points (a random patch, a held-out view), the sparse twin of
    :func:`pixel_rays`: ``d = R^T K^-1 (u, v, 1)``, origin the camera centre ``-R^T t``."""
    uv1 = torch.cat([pixels, torch.ones_like(pixels[..., :1])], dim=-1)  # [C, R, 3]
    d_cam = torch.linalg.solve(Ks, uv1.transpose(1, 2)).transpose(1, 2)  # K^-1 (u, v, 1)
    rot_t = viewmats[:, :3, :3].transpose(1, 2)  # camera-to-world rotation
    d_world = torch.nn.functional.normalize(d_cam @ rot_t.transpose(1, 2), dim=-1)
    centre = -(rot_t @ viewmats[:, :3, 3:4])[..., 0]  # [C, 3]
    return centre[:, None].expand_as(d_world), d_world


def project_points(
    points: Tensor,  # [N, 3] world
    viewmats: Tensor,  # [C, 4, 4]
    Ks: Tensor,  # [C, 3, 3]
) -> tuple[Tensor, Tensor]:  # pixels [C, N, 2] (x = column, y = row, continuous), depth [C, N]
    """Pinhole projection of world points; depth is camera-space z."""
    p_cam = torch.einsum("cij,nj->cni", viewmats[:, :3, :3], points) + viewmats[:, None, :3, 3]
    z = p_cam[..., 2]
    uv = torch.einsum("cij,cnj->cni", Ks, p_cam)[..., :2] / z[..., None]
    return uv, z


def equirect_directions(
    width: int,
    height: int,
    dtype: torch.dtype = torch.float32,
) -> Tensor:  # [H, W, 3] unit world directions through pixel centres
    """Directions of an equirectangular (longitude/latitude) image seen from its centre.

    Column u has longitude ``lon = 2*pi*(u + 0.5)/W - pi`` (0 at the centre column, looking along +x, positive to
    the right, i.e. towards -y); row v has latitude ``lat = pi/2 - pi*(v + 0.5)/H`` (+z at the top).
    """
    lon = 2.0 * math.pi * (torch.arange(width, dtype=dtype) + 0.5) / width - math.pi
    lat = 0.5 * math.pi - math.pi * (torch.arange(height, dtype=dtype) + 0.5) / height
    lat, lon = torch.meshgrid(lat, lon, indexing="ij")
    return lonlat_to_direction(lon, lat)


def lonlat_to_direction(
    lon: Tensor,  # [...] radians, positive to the right of +x (towards -y)
    lat: Tensor,  # [...] radians, positive up
) -> Tensor:  # [..., 3]
    """Unit direction for an equirectangular longitude/latitude (see :func:`equirect_directions`)."""
    cl = torch.cos(lat)
    return torch.stack([cl * torch.cos(lon), -cl * torch.sin(lon), torch.sin(lat)], dim=-1)


def direction_to_equirect(
    dirs: Tensor,  # [..., 3] any non-zero length
    width: int,
    height: int,
) -> Tensor:  # [..., 2] continuous pixel coordinates (x = column, y = row); pixel centres at +0.5
    """Inverse of :func:`equirect_directions`: where a direction lands in a ``width`` x ``height`` panorama."""
    d = torch.nn.functional.normalize(dirs, dim=-1)
    lon = torch.atan2(-d[..., 1], d[..., 0])
    lat = torch.asin(d[..., 2].clamp(-1.0, 1.0))
    x = (lon + math.pi) / (2.0 * math.pi) * width
    y = (0.5 * math.pi - lat) / math.pi * height
    return torch.stack([x, y], dim=-1)


def opengl_to_opencv(
    c2w: Tensor,  # [..., 4, 4] camera-to-world, OpenGL camera axes (+y up, +z backward)
) -> Tensor:  # [..., 4, 4] camera-to-world, OpenCV camera axes
    """Flip the camera's y and z axes (NeRF-blender, nerfstudio and three.js cameras use OpenGL axes)."""
    flip = torch.tensor([*_OPENGL_FLIP, 1.0], dtype=c2w.dtype, device=c2w.device)
    return c2w * flip  # scales columns 0..3 of the rotation part: right, up->down, back->forward


def opencv_to_opengl(c2w: Tensor) -> Tensor:  # [..., 4, 4] -> [..., 4, 4]
    """Inverse of :func:`opengl_to_opencv` (the flip is its own inverse)."""
    return opengl_to_opencv(c2w)


def viewmats_from_nerfstudio(
    transform_matrix: Tensor,  # [N, 4, 4] or [N, 3, 4] camera-to-world "transform_matrix" of transforms.json
) -> Tensor:  # [N, 4, 4] world-to-camera, OpenCV
    """Viewmats from nerfstudio / NeRF-blender ``transforms.json`` frames (OpenGL camera-to-world)."""
    T = torch.as_tensor(transform_matrix, dtype=torch.float32)
    if T.shape[-2] == 3:
        bottom = torch.tensor([0.0, 0.0, 0.0, 1.0]).expand(*T.shape[:-2], 1, 4)
        T = torch.cat([T, bottom], dim=-2)
    return rigid_inverse(opengl_to_opencv(T))


def nerfstudio_from_viewmats(viewmats: Tensor) -> Tensor:  # [N, 4, 4] -> [N, 4, 4] OpenGL camera-to-world
    """Inverse of :func:`viewmats_from_nerfstudio`, for writing ``transforms.json``."""
    return opencv_to_opengl(rigid_inverse(viewmats))


def viewmats_from_inria(
    R: Tensor,  # [..., 3, 3] INRIA/3DGS ``Camera.R``: the transpose of COLMAP's world-to-camera rotation
    T: Tensor,  # [..., 3] INRIA/3DGS ``Camera.T``: COLMAP's world-to-camera translation
) -> Tensor:  # [..., 4, 4] world-to-camera, OpenCV
    """INRIA's 3DGS code stores ``R = qvec2rotmat(qvec).T`` (camera-to-world rotation) and ``T = tvec``."""
    R = torch.as_tensor(R, dtype=torch.float32)
    T = torch.as_tensor(T, dtype=R.dtype)
    out = torch.zeros(*R.shape[:-2], 4, 4, dtype=R.dtype)
    out[..., :3, :3] = R.transpose(-1, -2)
    out[..., :3, 3] = T
    out[..., 3, 3] = 1.0
    return out
