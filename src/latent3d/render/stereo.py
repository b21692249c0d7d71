"""Views of a displaced sphere: omnidirectional stereo (ODS), off-centre panoramas and perspective cameras.

**ODS** (Peleg, Ben-Ezra & Pritch, "Omnistereo: panoramic stereo imaging", IEEE TPAMI 2001; Google, "Rendering
Omni-directional Stereo Content", 2015): each eye's equirect pixel ``(lon, lat)`` is the ray with direction
``d(lon, lat)`` whose origin lies on the horizontal viewing circle of radius ``ipd / 2``, tangent to it: the
origin is ``-/+ (ipd / 2) * right(lon)`` for the left/right eye, where ``right(lon)`` is the horizontal unit
vector to the right of the viewing direction. The eyes thus turn around the head centre as the viewer looks
around, which is what makes a 360° stereo panorama correct in every horizontal direction (LDM3D Sec. 5: the
DepthFusion world "in stereo"). The result is packed top-bottom (left eye on top), the layout VR photo viewers
play, and as a red-cyan anaglyph.

Closed form used by the tests: for a sphere of constant radius ``r`` and an eye offset ``b = ipd / 2``, the ray
of pixel ``(lon, lat)`` hits at ``t = sqrt(r^2 - b^2)`` (origin and direction are orthogonal), so the two eyes
see the equator with an angular disparity of ``2 * asin(b / r)``.

All renderers ray-cast the sphere's height field with :func:`latent3d.render.sphere.trace_sphere`; the camera
conventions are those of :mod:`latent3d.render.camera` (OpenCV cameras, z-up world, equirect layout of
:func:`~latent3d.render.camera.equirect_directions`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal, get_args

import torch
from torch import Tensor

from latent3d.render.camera import equirect_directions, look_at, pixel_rays
from latent3d.render.sphere import DisplacedSphere, trace_sphere

Eye = Literal["left", "right"]


def ods_rays(
    width: int,
    height: int,
    ipd: float,  # metres between the eyes (latent3d immersive: WorldConfig.ipd)
    eye: Eye = "left",
    center: Sequence[float] = (0.0, 0.0, 0.0),
) -> tuple[Tensor, Tensor]:  # origins [H, W, 3], directions [H, W, 3]
    """ODS rays of one eye (Peleg et al. 2001; Google's ODS note): origins on the circle of radius ``ipd / 2``
    around ``center`` in the horizontal plane, each ray tangent to the circle."""
    if eye not in get_args(Eye):
        raise ValueError(f"eye must be 'left' or 'right', got {eye!r}")
    dirs = equirect_directions(width, height)  # [H, W, 3]
    lon = 2.0 * math.pi * (torch.arange(width, dtype=torch.float32) + 0.5) / width - math.pi  # [W]
    right = torch.stack([-torch.sin(lon), -torch.cos(lon), torch.zeros_like(lon)], dim=-1)  # [W, 3] = d x z_up
    sign = -1.0 if eye == "left" else 1.0
    origins = torch.tensor(center, dtype=torch.float32) + sign * 0.5 * ipd * right
    return origins[None].expand(height, width, 3).contiguous(), dirs


def render_ods(
    sphere: DisplacedSphere,
    width: int,
    height: int,
    ipd: float,  # metres between the eyes
    return_hits: bool = False,
) -> tuple[Tensor, ...]:  # left [H, W, 3], right [H, W, 3] (+ hit directions [2, H, W, 3] when return_hits)
    """Both eyes of an omnidirectional-stereo panorama of the displaced sphere (see the module docstring)."""
    if ipd < 0:
        raise ValueError(f"ipd must be >= 0, got {ipd}")
    if 0.5 * ipd >= sphere.r_min:
        raise ValueError(f"ipd/2 = {0.5 * ipd:.4g} reaches the nearest surface point ({sphere.r_min:.4g}); "
                         "use a smaller ipd or a weaker displacement")
    images, hits = [], []
    for eye in get_args(Eye):
        o, d = ods_rays(width, height, ipd, eye)  # type: ignore[arg-type]
        rgb, _, hit = trace_sphere(sphere, o.reshape(-1, 3), d.reshape(-1, 3))
        images.append(rgb.reshape(height, width, 3))
        hits.append(hit.reshape(height, width, 3))
    return (images[0], images[1], torch.stack(hits)) if return_hits else (images[0], images[1])


def render_equirect_at(
    sphere: DisplacedSphere,
    center: Sequence[float] | Tensor = (0.0, 0.0, 0.0),  # [3]
    width: int = 512,
    height: int = 256,
) -> tuple[Tensor, Tensor]:  # rgb [H, W, 3], hit directions from the sphere centre [H, W, 3]
    """Monoscopic 360° panorama seen from ``center``. From the origin it is the input panorama (DepthFusion's
    invariance); anywhere else nearer surface points move more than farther ones (parallax)."""
    d = equirect_directions(width, height).reshape(-1, 3)
    o = torch.as_tensor(center, dtype=torch.float32).reshape(1, 3).expand_as(d)
    rgb, _, hit = trace_sphere(sphere, o, d)
    return rgb.reshape(height, width, 3), hit.reshape(height, width, 3)


def render_perspective(
    sphere: DisplacedSphere,
    viewmats: Tensor,  # [C, 4, 4] world-to-camera (OpenCV); camera centres inside the surface
    Ks: Tensor,  # [C, 3, 3]
    width: int,
    height: int,
) -> tuple[Tensor, Tensor]:  # rgb [C, H, W, 3], distance along each ray [C, H, W]
    """Pinhole views of the displaced sphere from anywhere inside it."""
    viewmats = torch.as_tensor(viewmats, dtype=torch.float32).reshape(-1, 4, 4)
    Ks = torch.as_tensor(Ks, dtype=torch.float32).reshape(-1, 3, 3)
    o, d = pixel_rays(viewmats, Ks, width, height, normalize=True)  # [C, H, W, 3]
    C = viewmats.shape[0]
    rgb, t, _ = trace_sphere(sphere, o.reshape(-1, 3), d.reshape(-1, 3))
    return rgb.reshape(C, height, width, 3), t.reshape(C, height, width)


def camera_looking(
    position: Sequence[float] | Tensor,  # [3] or [C, 3]
    yaw_deg: float | Tensor,  # [C] or scalar: equirect longitude of the viewing direction (0 = +x, + = right)
    pitch_deg: float | Tensor = 0.0,  # [C] or scalar: up is positive
) -> Tensor:  # [C, 4, 4] world-to-camera
    """Viewmats of cameras at ``position`` looking along a (yaw, pitch) direction, z up."""
    pos = torch.as_tensor(position, dtype=torch.float32).reshape(-1, 3)
    yaw = torch.deg2rad(torch.as_tensor(yaw_deg, dtype=torch.float32)).reshape(-1)
    pitch = torch.deg2rad(torch.as_tensor(pitch_deg, dtype=torch.float32)).reshape(-1)
    pos, yaw, pitch = torch.broadcast_tensors(pos, yaw[:, None], pitch[:, None])
    yaw, pitch = yaw[:, 0], pitch[:, 0]
    fwd = torch.stack([pitch.cos() * yaw.cos(), -pitch.cos() * yaw.sin(), pitch.sin()], dim=-1)
    return look_at(pos, pos + fwd)


def top_bottom(
    left: Tensor,  # [H, W, 3]
    right: Tensor,  # [H, W, 3]
) -> Tensor:  # [2H, W, 3]
    """Top-bottom stereo packing, left eye on top (the over-under layout of VR photo viewers)."""
    if left.shape != right.shape:
        raise ValueError(f"top_bottom: eye images differ in shape, {tuple(left.shape)} vs {tuple(right.shape)}")
    return torch.cat([left, right], dim=0)


def anaglyph(
    left: Tensor,  # [H, W, 3] float in [0, 1]
    right: Tensor,  # [H, W, 3]
    kind: Literal["color", "half-color"] = "half-color",
) -> Tensor:  # [H, W, 3]
    """Red-cyan anaglyph: red from the left eye, green and blue from the right one. ``"half-color"`` puts the
    left eye's luminance (Rec. 601) in the red channel, which reduces retinal rivalry on saturated reds."""
    if left.shape != right.shape:
        raise ValueError(f"anaglyph: eye images differ in shape, {tuple(left.shape)} vs {tuple(right.shape)}")
    if kind == "color":
        red = left[..., 0]
    elif kind == "half-color":
        red = 0.299 * left[..., 0] + 0.587 * left[..., 1] + 0.114 * left[..., 2]
    else:
        raise ValueError(f"anaglyph kind must be 'color' or 'half-color', got {kind!r}")
    return torch.stack([red, right[..., 1], right[..., 2]], dim=-1)
