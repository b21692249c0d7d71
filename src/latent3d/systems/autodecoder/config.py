"""Settings of 3DVADER's autodecoder (``latent3d train autodecoder``); importing this module loads no torch, so the
command line reads its defaults and help from here. Paper values (Ntavelis et al. 2023, supplement B) are given
where ours differ: the defaults are sized for a 2-core CPU and 64^2 views."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass
class AutodecoderConfig:
    """The autodecoder: per-object embedding -> G1 -> latent volume -> G2 -> radiance grid, rendered by ray marching."""

    embedding: Literal["dense", "hash"] = "dense"
    """Per-object embedding: dense (one learnable row per object) or hash (sub-vectors from shared codebooks, B.3)."""
    embedding_dim: int = 256
    """Embedding size (paper: 1024)."""
    hash_codebooks: int = 8
    """Hash embedding: number of codebooks (the embedding concatenates one row of each)."""
    hash_bits: int = 10
    """Hash embedding: each codebook has 2^bits rows."""
    base_channels: int = 128
    """Channels of G1's first 4^3 volume (paper: 512)."""
    latent_channels: int = 64
    """Channels C of the 8^3 x C latent volume, the diffusion latent of stage 2 (paper: 256)."""
    widths: tuple[int, ...] = (32,)
    """Channels of G2's volumes above 8^3, comma-separated: one entry per doubling (16^3, 32^3, ...; paper: 128, 64,
    32); empty: the head works on the 8^3 latent."""
    shuffle: int = 2
    """The head's voxel shuffle factor: the radiance grid is shuffle x the last volume's size (32^3 by default)."""
    blocks: int = 1
    """Residual up-blocks per resolution (paper: 1-4)."""
    attention: tuple[int, ...] = (8,)
    """Resolutions with 3D self-attention, comma-separated (paper: 8,16); empty: none."""
    norm: Literal["batch", "group"] = "group"
    """Normalisation in the decoder: batch (paper) or group (steadier with a few objects per step)."""
    samples: int = 64
    """Samples per ray (paper: 128)."""
    patch: int = 24
    """Side of the square patch of pixels rendered per view per step (centred on the object's mask half the time),
    so that the pyramidal loss sees whole neighbourhoods."""
    objects_per_step: int = 4
    """Objects per step."""
    views_per_object: int = 4
    """Views of each object per step: the paper's multi-frame batches (4); 1 turns them off."""
    box: float = 1.0
    """Half-size of the cube the radiance grid fills, in world units (objects must fit inside)."""
    fg_weight: float = 10.0
    """Weight of the foreground loss, L1 between rendered occupancy and mask (paper: 10)."""
    pyramid: int = 3
    """Scales of the pyramidal reconstruction loss: 1, 1/2, 1/4 (3) ... (1 = plain L1)."""
    vgg: str | None = None
    """Local VGG-19 weights (safetensors, torchvision's key names) for the pyramidal perceptual term (weight 10 per
    layer, 5 layers, as UVA); default: the pyramidal L1 term only."""
    refine_cameras: bool = False
    """Learn a pose correction per training view (se(3), initialised at zero)."""
    steps: int = 2000
    """Optimisation steps."""
    lr: float = 5e-4
    """Adam learning rate (paper: 5e-4, betas 0.5, 0.999)."""
    holdout: int = 0
    """Hold out the views with index i % K == K - 1 of every object (views sorted by file name); 0: none."""
    seed: int = 0
