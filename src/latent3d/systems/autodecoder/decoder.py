"""3DVADER's autodecoder network (Ntavelis et al. 2023, Sec. 3.1 and supplement B.1): a per-object embedding, G1
(embedding -> FC -> 4^3 x C0 -> residual up-block -> the **8^3 x C latent volume** that stage 2 diffuses) and G2
(residual up-blocks 16^3 -> 32^3 ... with 3D self-attention -> norm + 1x1x1 conv -> 1 density + 3 RGB).

The top resolution dominates the cost on a CPU (a 3x3x3 convolution at 32^3 is 8x one at 16^3), so G2 can end with a
*voxel shuffle* (the 3D version of sub-pixel convolution, Shi et al. 2016): the 1x1x1 head at resolution n predicts
s^3 x 4 channels that are rearranged into an (s n)^3 x 4 grid. ``widths=(32,), shuffle=2`` gives a 32^3 radiance grid
at the price of 16^3 convolutions; ``widths=(128, 64, 32), shuffle=1`` is the paper's 64^3 decoder.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from latent3d.nets.blocks3d import SelfAttention3D, UpBlock3D, norm3d
from latent3d.nets.embeddings import make_embedding
from latent3d.systems.autodecoder.config import AutodecoderConfig


DENSITY_SCALE = 10.0  # densities of opaque surfaces (hundreds per world unit) stay within reach of the head's output


def voxel_shuffle(x: Tensor, s: int) -> Tensor:  # [B, C s^3, D, H, W] -> [B, C, s D, s H, s W]
    """Rearrange channel blocks into s x s x s sub-voxels (3D ``pixel_shuffle``)."""
    if s == 1:
        return x
    B, Cs, D, H, W = x.shape
    C = Cs // s**3
    x = x.reshape(B, C, s, s, s, D, H, W).permute(0, 1, 5, 2, 6, 3, 7, 4)
    return x.reshape(B, C, D * s, H * s, W * s)


def _stage(cin: int, cout: int, res: int, cfg: AutodecoderConfig) -> nn.Sequential:
    """``cfg.blocks`` residual blocks (the first doubles the resolution to ``res``) and attention at ``res`` if asked."""
    layers: list[nn.Module] = [UpBlock3D(cin, cout, upsample=True, norm=cfg.norm)]
    layers += [UpBlock3D(cout, cout, upsample=False, norm=cfg.norm) for _ in range(cfg.blocks - 1)]
    if res in cfg.attention:
        layers.append(SelfAttention3D(cout, heads=max(1, cout // 32), norm=cfg.norm))
    return nn.Sequential(*layers)


class Autodecoder(nn.Module):
    """``latent(ids [B]) -> [B, C, 8, 8, 8]``, ``decode(latent) -> (density [B, 1, N, N, N] >= 0, rgb [B, 3, N, N, N]
    in (0, 1))`` with N = 8 * 2^len(widths) * shuffle; density = DENSITY_SCALE * softplus(g - 2) per world unit (about
    1.3 at initialisation: a half-transparent box), colours through a sigmoid."""

    def __init__(self, num_objects: int, cfg: AutodecoderConfig):
        super().__init__()
        self.cfg = cfg
        if cfg.embedding == "hash":
            self.embedding = make_embedding("hash", num_objects, cfg.embedding_dim, codebook_bits=cfg.hash_bits,
                                            num_codebooks=cfg.hash_codebooks)  # fmt: skip
        else:
            self.embedding = make_embedding("dense", num_objects, cfg.embedding_dim)
        c0 = cfg.base_channels
        self.fc = nn.Linear(cfg.embedding_dim, c0 * 4**3)
        self.g1 = _stage(c0, cfg.latent_channels, 8, cfg)  # 4^3 -> 8^3: the latent volume
        chans, stages, res = cfg.latent_channels, [], 8
        for w in cfg.widths:
            res *= 2
            stages.append(_stage(chans, w, res, cfg))
            chans = w
        self.g2 = nn.Sequential(*stages)
        self.head_norm = norm3d(cfg.norm, chans)
        self.head = nn.Conv3d(chans, 4 * cfg.shuffle**3, 1)
        self.grid_size = res * cfg.shuffle

    def latent(self, ids: Tensor) -> Tensor:  # ids [B] long -> [B, C, 8, 8, 8]
        """G1 (supp. B.1): the object's latent volume, what stage 2 learns to generate."""
        z = self.fc(self.embedding(ids)).view(len(ids), self.cfg.base_channels, 4, 4, 4)
        return self.g1(z)

    def decode(self, latent: Tensor) -> tuple[Tensor, Tensor]:  # [B, C, 8, 8, 8] -> density, rgb [B, 1|3, N, N, N]
        """G2 (supp. B.1): the radiance grid of a latent volume."""
        h = self.head(F.relu(self.head_norm(self.g2(latent))))
        g = voxel_shuffle(h, self.cfg.shuffle)
        return DENSITY_SCALE * F.softplus(g[:, :1] - 2.0), torch.sigmoid(g[:, 1:])
