"""NF-LDM's latent voxel auto-encoder (Kim et al. 2023, arXiv 2304.09787, Sec. 3.2, supplement Table 8): a scene
auto-encoder's grid ``[C + 1, X, Y, Z]`` (C features, then density) -> three latents -> the grid again.

- Input: the grid's channels normalised (:meth:`SceneLatentAutoencoder.normalise`): density as
  ``log1p(sigma / sigma_ref)`` with ``sigma_ref`` the mean density of the training grids' non-empty voxels (linear
  where densities are small against it, logarithmic for the large densities of opaque surfaces, whose differences
  no render shows), then every channel shifted and scaled by its mean and std over the training grids (all stored
  with the weights: a scene auto-encoder's features and densities have no fixed scale, e.g. a mean density of 3e-4
  per metre after a short CPU training whose renders normalise depth by occupancy). The vertical axis is folded
  into channels (:func:`fold_z`: ``[B, (C + 1) Z, X, Y]``), so that the networks are 2-D CNNs on the X x Y plane,
  as the paper's.
- Encoder: residual blocks at X x Y -> the fine latent ``f`` ``[B, F, X, Y]`` (a bird's-eye view at the grid's
  resolution); strided convolutions down by ``downsample`` -> the coarse latent ``c`` ``[B, Cc, X/ds, Y/ds, Z/dz]``
  (3-D: its channels unfolded back into a vertical axis); the same features pooled -> mean and log-variance of the
  global latent ``g`` ``[B, G]``. ``c`` and ``f`` are vector-quantised (:class:`latent3d.nets.vq.VectorQuantizer`,
  one codebook each), ``g`` is a diagonal Gaussian with a small KL penalty (sampled in training, its mean otherwise).
- Decoder: ``c`` with its vertical axis folded into channels ("concatenated along z"), residual blocks whose
  second group norm takes its scale and shift from ``g`` (conditional group norm, ADM's adaptive group norm:
  :class:`latent3d.nets.unet3d.ResBlock3D` in 2-D), nearest upsampling to X x Y, ``f`` concatenated there ("joined
  at 128^2" in the paper), more such blocks, a convolution to ``(C + 1) Z`` channels unfolded into the grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from latent3d.nets.norm import group_norm
from latent3d.nets.standardize import Standardizer
from latent3d.nets.unet3d import ResBlock3D
from latent3d.nets.vq import VectorQuantizer
from latent3d.systems.nfldm.config import SceneLatentAEConfig
from latent3d.systems.nfldm.scene_ae import _log2, _Res


def fold_z(grid: Tensor) -> Tensor:  # [B, K, X, Y, Z] -> [B, K * Z, X, Y], channel k * Z + z
    """The vertical axis folded into channels (NF-LDM Sec. 3.2: "we fold the vertical axis into channels")."""
    B, K, X, Y, Z = grid.shape
    return grid.permute(0, 1, 4, 2, 3).reshape(B, K * Z, X, Y)


def unfold_z(x: Tensor, depth: int) -> Tensor:  # [B, K * Z, X, Y] -> [B, K, X, Y, Z] with Z = depth
    """The inverse of :func:`fold_z`."""
    B, KZ, X, Y = x.shape
    return x.reshape(B, KZ // depth, depth, X, Y).permute(0, 1, 3, 4, 2)


class LatentEncoder(nn.Module):
    """``x [B, K Z, X, Y] -> (f [B, F, X, Y], c [B, Cc Zc, X/ds, Y/ds], g_stats [B, 2 G])`` before quantisation
    (module docstring)."""

    def __init__(self, cfg: SceneLatentAEConfig, in_channels: int, coarse_z: int):
        super().__init__()
        w = cfg.width
        self.inp = nn.Conv2d(in_channels, w, 3, padding=1)
        self.full = nn.Sequential(*(_Res(w, w) for _ in range(cfg.blocks)))
        self.f_head = nn.Sequential(group_norm(w), nn.SiLU(), nn.Conv2d(w, cfg.fine_channels, 1))
        self.down = nn.ModuleList(nn.Sequential(nn.Conv2d(w, w, 3, stride=2, padding=1),
                                                *(_Res(w, w) for _ in range(cfg.blocks)))
                                  for _ in range(_log2(cfg.downsample)))  # fmt: skip
        self.low_norm = nn.Sequential(group_norm(w), nn.SiLU())
        self.c_head = nn.Conv2d(w, cfg.coarse_channels * coarse_z, 1)
        self.g_head = nn.Linear(w, 2 * cfg.global_dim)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        h = self.full(self.inp(x))
        f = self.f_head(h)
        for down in self.down:
            h = down(h)
        h = self.low_norm(h)
        return f, self.c_head(h), self.g_head(h.mean(dim=(2, 3)))


class LatentDecoder(nn.Module):
    """``(g [B, G], c [B, Cc Zc, X/ds, Y/ds], f [B, F, X, Y]) -> [B, K Z, X, Y]``: conditional-group-norm residual
    blocks on ``g`` at every resolution, ``f`` joined at X x Y (module docstring, paper Table 8)."""

    def __init__(self, cfg: SceneLatentAEConfig, out_channels: int, coarse_z: int):
        super().__init__()
        w, G = cfg.width, cfg.global_dim

        def blocks() -> nn.ModuleList:
            return nn.ModuleList(ResBlock3D(w, w, G, dims=2) for _ in range(cfg.blocks))

        self.c_in = nn.Conv2d(cfg.coarse_channels * coarse_z, w, 3, padding=1)
        self.low = blocks()
        self.up = nn.ModuleList(nn.Conv2d(w, w, 3, padding=1) for _ in range(_log2(cfg.downsample)))
        self.up_blocks = nn.ModuleList(blocks() for _ in range(_log2(cfg.downsample)))
        self.join = nn.Conv2d(w + cfg.fine_channels, w, 3, padding=1)
        self.high = blocks()
        self.out = nn.Sequential(group_norm(w), nn.SiLU(), nn.Conv2d(w, out_channels, 3, padding=1))

    def forward(self, g: Tensor, c: Tensor, f: Tensor) -> Tensor:
        h = self.c_in(c)
        for blk in self.low:
            h = blk(h, g)
        for conv, level in zip(self.up, self.up_blocks):
            h = conv(F.interpolate(h, scale_factor=2.0, mode="nearest"))
            for blk in level:
                h = blk(h, g)
        h = self.join(torch.cat([h, f], dim=1))
        for blk in self.high:
            h = blk(h, g)
        return self.out(h)


@dataclass
class SceneLatents:
    """The three latents of a batch of scenes (NF-LDM Sec. 3.2) and what training needs of them."""

    g: Tensor  # [B, G] the global latent (a sample of q(g) in training, its mean otherwise)
    g_mean: Tensor  # [B, G]
    g_logvar: Tensor  # [B, G]
    c: Tensor  # [B, Cc, X / ds, Y / ds, Z / dz] quantised coarse latent (straight-through gradient)
    c_indices: Tensor  # [B, X / ds, Y / ds, Z / dz] int64
    f: Tensor  # [B, F, X, Y] quantised bird's-eye-view latent
    f_indices: Tensor  # [B, X, Y] int64
    vq_loss: Tensor  # [] codebook + commitment losses of c and f

    def kl(self) -> Tensor:  # [] KL(q(g) || N(0, I)), summed over g's dimensions, mean over the batch
        return 0.5 * (self.g_mean.pow(2) + self.g_logvar.exp() - 1 - self.g_logvar).sum(1).mean()


class SceneLatentAutoencoder(nn.Module):
    """The latent voxel auto-encoder of NF-LDM Sec. 3.2 (module docstring) for scene grids of ``channels`` (C + 1)
    x ``grid`` voxels. ``forward(x [B, C + 1, X, Y, Z] normalised, generator=None) -> (reconstruction normalised,
    grid in the scene auto-encoder's units, SceneLatents)``."""

    def __init__(self, cfg: SceneLatentAEConfig, channels: int, grid: tuple[int, int, int]):
        super().__init__()
        bad = list(cfg.check_grid(grid))
        if bad:
            raise ValueError(bad[0])
        self.cfg, self.channels, self.grid = cfg, channels, tuple(grid)
        self.coarse_z = grid[2] // cfg.downsample_z
        self.encoder = LatentEncoder(cfg, channels * grid[2], self.coarse_z)
        self.decoder = LatentDecoder(cfg, channels * grid[2], self.coarse_z)
        self.vq_c = VectorQuantizer(cfg.codebook_coarse, cfg.coarse_channels, cfg.beta, cfg.restart_after)
        self.vq_f = VectorQuantizer(cfg.codebook_fine, cfg.fine_channels, cfg.beta, cfg.restart_after)
        self.register_buffer("density_ref", torch.ones(()))  # sigma_ref: densities are log1p(sigma / sigma_ref)
        self.stats = Standardizer(channels, correction=1, min_std=1e-12)  # per channel, of the transformed grid

    @torch.no_grad()
    def set_statistics(self, grids: Tensor) -> None:  # [N, C + 1, X, Y, Z] scene grids
        """The normalisation measured on ``grids``: the density unit ``sigma_ref`` (the mean density of the voxels
        with any), then the mean and std of every channel (density as ``log1p(sigma / sigma_ref)``)."""
        d = grids[:, -1]
        self.density_ref.fill_(float(d[d > 0].double().mean()) if bool((d > 0).any()) else 1.0)
        self.stats.fit(self._transformed(grids))

    def _transformed(self, grid: Tensor) -> Tensor:  # [B, C + 1, X, Y, Z]: density -> log1p(density / sigma_ref)
        return torch.cat([grid[:, :-1], torch.log1p(grid[:, -1:].clamp_min(0) / self.density_ref)], dim=1)

    def normalise(self, grid: Tensor) -> Tensor:  # [B, C + 1, X, Y, Z] -> [B, C + 1, X, Y, Z]
        """The scene auto-encoder's grid in the units the networks see (module docstring)."""
        return self.stats(self._transformed(grid))

    def denormalise(self, x: Tensor) -> Tensor:  # [B, C + 1, X, Y, Z] -> [B, C + 1, X, Y, Z]
        """The inverse of :meth:`normalise` (densities below 0 clamped to 0)."""
        t = self.stats.inverse(x)
        return torch.cat([t[:, :-1], torch.expm1(t[:, -1:]).clamp_min(0) * self.density_ref], dim=1)

    def encode(self, x: Tensor, generator: torch.Generator | None = None) -> SceneLatents:  # x [B, C + 1, X, Y, Z]
        """The latents of normalised grids ``x``; in training mode ``g`` is sampled (with ``generator``) and the
        quantisers restart their dead codes."""
        f_e, c_e, g_stats = self.encoder(fold_z(x))
        mean, logvar = g_stats.chunk(2, dim=1)
        logvar = logvar.clamp(-30, 20)
        g = mean
        if self.training:
            noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype).to(mean.device)
            g = mean + (0.5 * logvar).exp() * noise
        qc = self.vq_c(unfold_z(c_e, self.coarse_z), generator)
        qf = self.vq_f(f_e, generator)
        return SceneLatents(g, mean, logvar, qc.z_q, qc.indices, qf.z_q, qf.indices, qc.loss + qf.loss)

    def decode(
        self,
        g: Tensor,  # [B, G]
        c: Tensor,  # [B, Cc, X / ds, Y / ds, Z / dz]
        f: Tensor,  # [B, F, X, Y]
    ) -> Tensor:  # [B, C + 1, X, Y, Z] normalised
        """The normalised grid of latents (paper Table 8's decoder)."""
        return unfold_z(self.decoder(g, fold_z(c), f), self.grid[2])

    def decode_indices(
        self,
        g: Tensor,  # [B, G]
        c_indices: Tensor,  # [B, X / ds, Y / ds, Z / dz] int64
        f_indices: Tensor,  # [B, X, Y] int64
    ) -> Tensor:  # [B, C + 1, X, Y, Z] normalised
        """:meth:`decode` of code indices (what ``latents.safetensors`` stores beside the vectors)."""
        return self.decode(g, self.vq_c.lookup(c_indices), self.vq_f.lookup(f_indices))

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, SceneLatents]:
        z = self.encode(x, generator)
        rec = self.decode(z.g, z.c, z.f)
        return rec, self.denormalise(rec), z
