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
    icnr: bool = False
    """Initialise the voxel-shuffle head so that the s^3 sub-voxels of a voxel start equal (ICNR, Aitken et al.
    2017): no checkerboard at initialisation."""
    tv_weight: float = 0.0
    """Weight of a total-variation penalty on the decoded colour grid (mean absolute difference of neighbouring
    voxels): smooths colour noise on voxels that no view constrains well; 0 = none."""
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


@dataclass
class ObjectDiffusionConfig:
    """3DVADER stage 2 (Sec. 3.2, supplement B.2): an EDM diffusion model over the normalised 8^3 latent volumes,
    text-conditioned by cross-attention, trained with classifier-free guidance's caption dropout."""

    model_channels: int = 32
    """Base width of the 3D UNet (paper: 128)."""
    channel_mult: tuple[int, ...] = (1, 2)
    """Width multipliers per UNet level, comma-separated; each level halves the volume (paper: 3,4)."""
    blocks: int = 1
    """Residual blocks per UNet level (ADM: 2-3)."""
    attention: tuple[int, ...] = (4,)
    """Volume sides with self- and cross-attention, comma-separated (paper: 8,4; the middle block always
    attends). Attention over the 512 voxels of 8^3 costs a CPU more than the rest of the network."""
    head_channels: int = 32
    """Channels per attention head."""
    dropout: float = 0.0
    """Dropout in the residual blocks."""
    normalization: Literal["channel", "global"] = "channel"
    """Robust latent normalisation (F - median) / (0.7413 IQR), statistics per channel or one for all values."""
    text_encoder: str | None = None
    """A local transformers text encoder folder (T5 / CLIP text model with its tokenizer), kept frozen; default: a
    small word-level encoder over the training captions, trained jointly."""
    text_dim: int = 64
    """Word-level text encoder: width."""
    text_layers: int = 2
    """Word-level text encoder: transformer layers."""
    max_tokens: int = 8
    """Tokens per caption (padded or truncated), BOS and EOS included."""
    cond_drop: float = 0.1
    """Fraction of captions replaced by the empty prompt in training (classifier-free guidance)."""
    sigma_data: float | None = None
    """EDM's data standard deviation; default: measured on the normalised training latents (~1.4 on
    latent3d's autodecoders: the robust scale is ~1 for a Gaussian and more for heavy tails; EDM's images: 0.5)."""
    p_mean: float = 1.0
    """EDM training noise levels: mean of ln(sigma). Rule: a real share of training (>= 10 %) above sigma 20,
    where the captions of 8^3 x 16 latents become indistinguishable (posterior of the true category of a noised
    training latent 1.00 up to sigma 12, 0.80 at 40, 0.42 at 80), and the median sigma (2.7) near 2 sigma_data for
    colour and detail. N(1.0, 1.6^2) draws 21 / 11 / 4.6 % above sigma 10 / 20 / 40; EDM's image setting
    N(-1.2, 1.2^2) draws 0.1 % above 12, and its samples follow the prompt's colour but not its object word
    (object accuracy 0.36; 0.995 with these defaults). `train object-diffusion` prints these shares and the measured posteriors."""
    p_std: float = 1.6
    """EDM training noise levels: standard deviation of ln(sigma) (EDM images: 1.2)."""
    steps: int = 4000
    """Optimisation steps."""
    batch_size: int = 16
    """Latent volumes per step."""
    lr: float = 2e-4
    """Adam learning rate."""
    ema_decay: float = 0.999
    """Decay of the exponential moving average of the weights (the exported model is the EMA)."""
    seed: int = 0


@dataclass
class ObjectConfig:
    """``latent3d object``: sample latent volumes with the Heun sampler and classifier-free guidance, decode them
    to radiance grids, and write views, a turntable, the grid, a mesh and Gaussians per sample."""

    model: str = "object3d-tiny"
    """A bundled object model's name or the model/ folder of `latent3d train object-diffusion`."""
    n: int = 4
    """Samples to draw."""
    steps: int = 32
    """Heun steps (2 x steps - 1 network calls; paper: 16 / 32 / 64)."""
    guidance: float = 3.0
    """Classifier-free guidance scale (1 = none; paper: 3)."""
    sigma_min: float = 0.002
    """Smallest noise level of the Karras schedule."""
    sigma_max: float = 80.0
    """Largest noise level of the Karras schedule."""
    views: int = 8
    """Orbit views written per sample."""
    size: int = 128
    """Side of the written views and turntable frames in pixels."""
    frames: int = 48
    """Turntable frames (2 s at 24 fps)."""
    elevation: float = 20.0
    """Camera elevation of the views in degrees."""
    radius: float = 3.0
    """Camera distance from the object centre."""
