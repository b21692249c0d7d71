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


MAX_PARTS = 10  # rigid parts of an articulated decoder (the paper's 10)
DENSITY_SCALE = 10.0  # densities of opaque surfaces (hundreds per world unit) stay within reach of the head's output


def voxel_shuffle(x: Tensor, s: int) -> Tensor:  # [B, C s^3, D, H, W] -> [B, C, s D, s H, s W]
    """Rearrange channel blocks into s x s x s sub-voxels (3D ``pixel_shuffle``)."""
    if s == 1:
        return x
    B, Cs, D, H, W = x.shape
    C = Cs // s**3
    x = x.reshape(B, C, s, s, s, D, H, W).permute(0, 1, 5, 2, 6, 3, 7, 4)
    return x.reshape(B, C, D * s, H * s, W * s)


@torch.no_grad()
def icnr_(head: nn.Conv3d, s: int) -> None:
    """ICNR initialisation (Aitken et al. 2017, "Checkerboard artifact free sub-pixel convolution", Sec. 3, in 3D):
    every output channel c of the shuffled grid gets the same weights and bias in all of its s^3 sub-voxel slots,
    so that :func:`voxel_shuffle` of the head's output starts as a nearest-neighbour upsampling."""
    c_out = head.out_channels // s**3
    w = head.weight.view(c_out, s**3, *head.weight.shape[1:])
    w.copy_(w[:, :1].expand_as(w).clone())
    if head.bias is not None:
        b = head.bias.view(c_out, s**3)
        b.copy_(b[:, :1].expand_as(b).clone())


def saved_parts(saved) -> int:
    """``config.json["parts"]`` of a saved decoder or generator (:class:`latent3d.io.model_folder.ModelFolder`): the
    skinning channels of its head, 0 (rigid) when absent; anything but 0..MAX_PARTS is one UserError line."""
    from latent3d.errors import UserError

    parts = saved.get("parts", int, default=0)
    if not 0 <= parts <= MAX_PARTS or isinstance(parts, bool):
        raise UserError(f"{saved.config_path}: 'parts' must be an integer in 0..{MAX_PARTS}, got {parts!r}; "
                        f"{saved.fix}")
    return parts


def _stage(cin: int, cout: int, res: int, cfg: AutodecoderConfig) -> nn.Sequential:
    """``cfg.blocks`` residual blocks (the first doubles the resolution to ``res``) and attention at ``res`` if asked."""
    layers: list[nn.Module] = [UpBlock3D(cin, cout, upsample=True, norm=cfg.norm)]
    layers += [UpBlock3D(cout, cout, upsample=False, norm=cfg.norm) for _ in range(cfg.blocks - 1)]
    if res in cfg.attention:
        layers.append(SelfAttention3D(cout, heads=max(1, cout // 32), norm=cfg.norm))
    return nn.Sequential(*layers)


class VolumeDecoder(nn.Module):
    """G2 alone (supp. B.1): ``forward(latent [B, C, 8, 8, 8]) -> (density [B, 1, N, N, N] >= 0, rgb [B, 3, N, N, N]
    in (0, 1))`` with N = 8 * 2^len(widths) * shuffle; density = DENSITY_SCALE * softplus(g - 2) per world unit (about
    1.3 at initialisation: a half-transparent box), colours through a sigmoid. What a generator needs to turn sampled
    latents into radiance grids (its parameters are the ``g2.``, ``head_norm.``, ``head.`` entries of an
    :class:`Autodecoder`'s state dict). With ``parts`` P > 0 (stage 3, articulated objects) the head also predicts
    per-voxel skinning logits over P rigid parts (:meth:`decode_skinned`; :mod:`..stage3.skinning`)."""

    def __init__(self, cfg: AutodecoderConfig, parts: int = 0):
        super().__init__()
        self.cfg, self.parts = cfg, parts
        self._build_g2()

    def _build_g2(self) -> None:
        cfg = self.cfg
        chans, stages, res = cfg.latent_channels, [], 8
        for w in cfg.widths:
            res *= 2
            stages.append(_stage(chans, w, res, cfg))
            chans = w
        self.g2 = nn.Sequential(*stages)
        self.head_norm = norm3d(cfg.norm, chans)
        self.head = nn.Conv3d(chans, (4 + self.parts) * cfg.shuffle**3, 1)
        if cfg.icnr:
            icnr_(self.head, cfg.shuffle)
        self.grid_size = res * cfg.shuffle

    def decode_skinned(self, latent: Tensor) -> tuple[Tensor, Tensor, Tensor]:  # [B, C, 8, 8, 8] ->
        """G2 (supp. B.1): the radiance grid of a latent volume, density [B, 1, N, N, N], rgb [B, 3, N, N, N] and
        skinning logits [B, P, N, N, N] (P = 0 channels for a rigid decoder)."""
        h = self.head(F.relu(self.head_norm(self.g2(latent))))
        g = voxel_shuffle(h, self.cfg.shuffle)
        return DENSITY_SCALE * F.softplus(g[:, :1] - 2.0), torch.sigmoid(g[:, 1:4]), g[:, 4:]

    def decode(self, latent: Tensor) -> tuple[Tensor, Tensor]:  # [B, C, 8, 8, 8] -> density, rgb [B, 1|3, N, N, N]
        """G2 (supp. B.1): the radiance grid of a latent volume."""
        return self.decode_skinned(latent)[:2]

    def forward(self, latent: Tensor) -> tuple[Tensor, Tensor]:
        return self.decode(latent)


class Autodecoder(VolumeDecoder):
    """G1 + G2: ``latent(ids [B]) -> [B, C, 8, 8, 8]`` (the embedding, FC, up-block to 8^3) and ``decode(latent)`` of
    :class:`VolumeDecoder`."""

    def __init__(self, num_objects: int, cfg: AutodecoderConfig, parts: int = 0):
        nn.Module.__init__(self)  # G1 is built before G2 (the order the parameters draw from the RNG)
        self.cfg, self.parts = cfg, parts
        if cfg.embedding == "hash":
            self.embedding = make_embedding("hash", num_objects, cfg.embedding_dim, codebook_bits=cfg.hash_bits,
                                            num_codebooks=cfg.hash_codebooks)  # fmt: skip
        else:
            self.embedding = make_embedding("dense", num_objects, cfg.embedding_dim)
        c0 = cfg.base_channels
        self.fc = nn.Linear(cfg.embedding_dim, c0 * 4**3)
        self.g1 = _stage(c0, cfg.latent_channels, 8, cfg)  # 4^3 -> 8^3: the latent volume
        self._build_g2()

    def latent(self, ids: Tensor) -> Tensor:  # ids [B] long -> [B, C, 8, 8, 8]
        """G1 (supp. B.1): the object's latent volume, what stage 2 learns to generate."""
        z = self.fc(self.embedding(ids)).view(len(ids), self.cfg.base_channels, 4, 4, 4)
        return self.g1(z)
