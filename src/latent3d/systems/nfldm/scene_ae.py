"""NF-LDM's scene auto-encoder (Kim et al. 2023, arXiv 2304.09787, Sec. 3.1): posed RGB images of one scene -> one
explicit voxel grid of density and features -> any camera's image and depth.

Encoding: a per-image 2-D CNN (a small UNet, its input the image and each pixel's camera-space ray direction, so
that it can read depth off the ray's angle) predicts an ``H' x W' x (D + C)`` tensor: D densities at fixed depth
bins and C features. The bins' occupancy weights ``O`` turn them into frustum cells ``[O phi, sigma]``
(:func:`latent3d.render.lift.lift`), and every voxel of the scene grid takes the mean of the cells that fall into it
(:func:`latent3d.render.lift.splat_to_voxels`). Decoding: volume rendering of the grid's features along a camera's
rays (:func:`latent3d.render.volume.render_volume`, trilinear, ``t`` = camera z so that the expected depth is z-depth)
and a 2-D CNN decoder from the rendered features (with the occupancy and the ray's elevation) to RGB at the input
size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from latent3d.nets.norm import group_norm
from latent3d.render.camera import pixel_rays
from latent3d.render.lift import depth_bins, frustum_points, lift, splat_to_voxels
from latent3d.render.volume import ray_box_intersect, render_volume
from latent3d.systems.nfldm.config import SceneAEConfig


class _Res(nn.Module):
    """Pre-activation residual block (GroupNorm, SiLU, 3x3 conv, twice)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.n1, self.c1 = group_norm(cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.n2, self.c2 = group_norm(cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:  # [B, cin, H, W] -> [B, cout, H, W]
        h = self.c1(F.silu(self.n1(x)))
        return self.skip(x) + self.c2(F.silu(self.n2(h)))


class ImageEncoder(nn.Module):
    """``(image [V, 3, H, W], rays [V, 2, H, W]) -> [V, D + C, H / ds, W / ds]``: a stem at the input size, strided
    convolutions down to the output size, a two-level UNet there (its lowest level a quarter of the output size),
    a 1x1 head."""

    def __init__(self, cfg: SceneAEConfig):
        super().__init__()
        w = cfg.width
        self.stem = nn.Conv2d(5, w, 3, padding=1)
        self.down_in = nn.ModuleList(nn.Conv2d(w, w, 3, stride=2, padding=1) for _ in range(_log2(cfg.downsample)))
        self.enc0, self.enc1, self.enc2 = _Res(w, w), _Res(w, 2 * w), _Res(2 * w, 2 * w)
        self.pool1, self.pool2 = nn.Conv2d(w, w, 3, stride=2, padding=1), nn.Conv2d(2 * w, 2 * w, 3, stride=2, padding=1)
        self.dec1, self.dec0 = _Res(4 * w, 2 * w), _Res(3 * w, w)
        self.norm, self.head = group_norm(w), nn.Conv2d(w, cfg.depth_bins + cfg.features, 1)

    def forward(self, image: Tensor, rays: Tensor) -> Tensor:
        h = self.stem(torch.cat([image, rays], dim=1))
        for down in self.down_in:
            h = down(F.silu(h))
        e0 = self.enc0(h)
        e1 = self.enc1(self.pool1(e0))
        e2 = self.enc2(self.pool2(e1))
        d1 = self.dec1(torch.cat([e1, F.interpolate(e2, size=e1.shape[-2:], mode="nearest")], dim=1))
        d0 = self.dec0(torch.cat([e0, F.interpolate(d1, size=e0.shape[-2:], mode="nearest")], dim=1))
        return self.head(F.silu(self.norm(d0)))


class FeatureDecoder(nn.Module):
    """``rendered [V, C + 2, H / ds, W / ds] -> rgb [V, 3, H, W]`` in [0, 1]: residual blocks, nearest upsampling and
    a convolution per factor 2, a sigmoid output."""

    def __init__(self, cfg: SceneAEConfig):
        super().__init__()
        w = cfg.width
        self.inp = nn.Conv2d(cfg.features + 2, w, 3, padding=1)
        self.blocks = nn.ModuleList([_Res(w, w), _Res(w, w)])
        self.up = nn.ModuleList(nn.Conv2d(w, w, 3, padding=1) for _ in range(_log2(cfg.downsample)))
        self.last = _Res(w, w)
        self.norm, self.out = group_norm(w), nn.Conv2d(w, 3, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.inp(x)
        for blk in self.blocks:
            h = blk(h)
        for conv in self.up:
            h = conv(F.interpolate(F.silu(h), scale_factor=2.0, mode="nearest"))
        return torch.sigmoid(self.out(F.silu(self.norm(self.last(h)))))


def _log2(n: int) -> int:
    k = n.bit_length() - 1
    if n < 1 or 1 << k != n:
        raise ValueError(f"downsample must be a power of two, got {n}")
    return k


@dataclass
class SceneRender:
    rgb: Tensor  # [V, 3, H, W] in [0, 1]
    depth: Tensor  # [V, H / ds, W / ds] expected z-depth (0 where the rays leave the box empty)
    occupancy: Tensor  # [V, H / ds, W / ds] in [0, 1]
    exit: Tensor  # [V, H / ds, W / ds] z-depth where each ray leaves the box (0 where it misses it)


class SceneAutoencoder(nn.Module):
    """The scene auto-encoder of NF-LDM Sec. 3.1 (module docstring): :meth:`encode` posed images into a grid,
    :meth:`render` a grid from any cameras."""

    def __init__(self, cfg: SceneAEConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder, self.decoder = ImageEncoder(cfg), FeatureDecoder(cfg)
        centres, deltas = depth_bins(cfg.near, cfg.far, cfg.depth_bins)
        self.register_buffer("bin_centres", centres, persistent=False)
        self.register_buffer("bin_widths", deltas, persistent=False)

    def _scaled(self, Ks: Tensor) -> Tensor:  # [V, 3, 3] -> intrinsics of the image downsampled by cfg.downsample
        s = torch.tensor([1 / self.cfg.downsample, 1 / self.cfg.downsample, 1.0], dtype=Ks.dtype, device=Ks.device)
        return Ks * s[:, None]

    def encode(
        self,
        images: Tensor,  # [V, 3, H, W] in [0, 1]
        viewmats: Tensor,  # [V, 4, 4] world-to-camera (OpenCV)
        Ks: Tensor,  # [V, 3, 3]
        bbox_min: Tensor,  # [3] the grid's box
        bbox_max: Tensor,  # [3]
    ) -> Tensor:  # [C + 1, X, Y, Z]: mean occupancy-weighted features, then mean density
        V, _, H, W = images.shape
        cfg = self.cfg
        _, dirs = pixel_rays(viewmats, Ks, W, H, normalize=False)  # [V, H, W, 3]; camera-space (x/z, y/z) below
        cam = torch.einsum("vij,vhwj->vihw", viewmats[:, :3, :3], dirs)[:, :2]
        out = self.encoder(images * 2 - 1, cam)  # [V, D + C, h, w]
        sigma = F.softplus(out[:, : cfg.depth_bins] - 2.0)  # starts nearly transparent
        cells = lift(out[:, cfg.depth_bins:], sigma, self.bin_widths)  # [V, C + 1, D, h, w]
        h, w = out.shape[-2:]
        pts = frustum_points(self._scaled(Ks), viewmats, self.bin_centres, h, w)  # [V, D, h, w, 3]
        vals = cells.permute(0, 2, 3, 4, 1).reshape(-1, cells.shape[1])
        grid, _ = splat_to_voxels(pts.reshape(-1, 3), vals, bbox_min, bbox_max, cfg.grid)
        return grid

    def render(
        self,
        grid: Tensor,  # [C + 1, X, Y, Z]
        bbox_min: Tensor,  # [3]
        bbox_max: Tensor,  # [3]
        viewmats: Tensor,  # [V, 4, 4]
        Ks: Tensor,  # [V, 3, 3] of the full-size image
        height: int,
        width: int,
        generator: torch.Generator | None = None,  # stratified ray samples when given (training)
    ) -> SceneRender:
        cfg = self.cfg
        h, w = height // cfg.downsample, width // cfg.downsample
        origins, dirs = pixel_rays(viewmats, self._scaled(Ks), w, h, normalize=False)  # t along dirs = z-depth
        V = viewmats.shape[0]
        r = render_volume(grid[None, cfg.features:], grid[None, : cfg.features], bbox_min, bbox_max,
                          origins.reshape(1, -1, 3), dirs.reshape(1, -1, 3), n_samples=cfg.samples,
                          generator=generator)  # fmt: skip
        feats = r.rgb.reshape(V, h, w, cfg.features).permute(0, 3, 1, 2)
        occ = r.occupancy.reshape(V, 1, h, w)
        elevation = (dirs[..., 2] / dirs.norm(dim=-1)).reshape(V, 1, h, w)  # sin of the ray's angle above horizon
        rgb = self.decoder(torch.cat([feats, occ, elevation.to(feats.dtype)], dim=1))
        _, exit_t, _ = ray_box_intersect(origins, dirs, bbox_min.to(dirs.dtype), bbox_max.to(dirs.dtype))
        return SceneRender(rgb, r.depth.reshape(V, h, w), occ[:, 0], exit_t)
