"""Settings of 3DVADER's autodecoder (``latent3d train autodecoder``); importing this module loads no torch, so the
command line reads its defaults and help from here. Paper values (Ntavelis et al. 2023, supplement B) are given
where ours differ: the defaults are sized for a 2-core CPU and 64^2 views."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Literal

from latent3d.ranges import SEED_MAX, check_config, within
from latent3d.weights import OBJECT_MODEL


@dataclass
class AutodecoderConfig:
    """The autodecoder: per-object embedding -> G1 -> latent volume -> G2 -> radiance grid, rendered by ray marching."""

    embedding: Literal["dense", "hash"] = "dense"
    """Per-object embedding: dense (one learnable row per object) or hash (sub-vectors from shared codebooks, B.3)."""
    embedding_dim: int = within(1, 8192, 256)
    """Embedding size (paper: 1024)."""
    hash_codebooks: int = within(1, 64, 8)
    """Hash embedding: number of codebooks (the embedding concatenates one row of each)."""
    hash_bits: int = within(1, 24, 10)
    """Hash embedding: each codebook has 2^bits rows."""
    base_channels: int = within(1, 2048, 128)
    """Channels of G1's first 4^3 volume (paper: 512)."""
    latent_channels: int = within(1, 1024, 64)
    """Channels C of the 8^3 x C latent volume, the diffusion latent of stage 2 (paper: 256)."""
    widths: tuple[int, ...] = within(1, 1024, (32,), count=(0, 4))
    """Channels of G2's volumes above 8^3, comma-separated: one entry per doubling (16^3, 32^3, ...; paper: 128, 64,
    32); empty: the head works on the 8^3 latent."""
    shuffle: int = within(1, 8, 2)
    """The head's voxel shuffle factor: the radiance grid is shuffle x the last volume's size (32^3 by default)."""
    blocks: int = within(1, 8, 1)
    """Residual up-blocks per resolution (paper: 1-4)."""
    attention: tuple[int, ...] = within(8, 128, (8,), count=(0, 5))
    """Resolutions with 3D self-attention, comma-separated (paper: 8,16); empty: none."""
    norm: Literal["batch", "group"] = "group"
    """Normalisation in the decoder: batch (paper) or group (steadier with a few objects per step)."""
    samples: int = within(2, 1024, 64)
    """Samples per ray (paper: 128)."""
    patch: int = within(1, 512, 24)
    """Side of the square patch of pixels rendered per view per step (centred on the object's mask half the time),
    so that the pyramidal loss sees whole neighbourhoods."""
    objects_per_step: int = within(1, 4096, 4)
    """Objects per step."""
    views_per_object: int = within(1, 1024, 4)
    """Views of each object per step: the paper's multi-frame batches (4); 1 turns them off."""
    icnr: bool = False
    """Initialise the voxel-shuffle head so that the s^3 sub-voxels of a voxel start equal (ICNR, Aitken et al.
    2017): no checkerboard at initialisation."""
    tv_weight: float = within(0, 1e6, 0.0)
    """Weight of a total-variation penalty on the decoded colour grid (mean absolute difference of neighbouring
    voxels): smooths colour noise on voxels that no view constrains well; 0 = none."""
    box: float = within(0, 1e3, 1.0, open_lo=True)
    """Half-size of the cube the radiance grid fills, in world units (objects must fit inside)."""
    fg_weight: float = within(0, 1e6, 10.0)
    """Weight of the foreground loss, L1 between rendered occupancy and mask (paper: 10)."""
    pyramid: int = within(1, 8, 3)
    """Scales of the pyramidal reconstruction loss: 1, 1/2, 1/4 (3) ... (1 = plain L1)."""
    vgg: str | None = None
    """Local VGG-19 weights (safetensors, torchvision's key names) for the pyramidal perceptual term (weight 10 per
    layer, 5 layers, as UVA); default: the pyramidal L1 term only."""
    refine_cameras: bool = False
    """Learn a pose correction per training view (se(3), initialised at zero)."""
    cameras: Literal["given", "learn"] = "given"
    """given: the data's poses (corrected with --refine-cameras); learn: find every view's camera from scratch, on an
    upright orbit around the object, jointly with the object (the data's poses, when it has them, only score the
    result; each object is found in a frame of its own)."""
    camera_radius: float = within(0, 1e4, 3.0, open_lo=True)
    """--cameras learn: distance of the cameras from the object centre at the start, in world units (it sets the
    scale of the reconstruction; the object must fit in the radiance grid's cube, half-size 1)."""
    search_azimuths: int = within(4, 360, 24)
    """--cameras learn: azimuths of the pose hypotheses (evenly spaced)."""
    search_elevations: tuple[float, ...] = within(-89, 89, (0.0, 20.0, 40.0, 55.0), count=(1, 16))
    """--cameras learn: elevations of the pose hypotheses in degrees, comma-separated."""
    search: float = within(0, 0.9, 0.4)
    """--cameras learn: fraction of the steps spent searching poses with the annealed soft minimum over hypotheses
    before each view takes its best one and is refined by gradient."""
    fov_y: float = within(0.01, 3.0, 0.7)
    """--cameras learn: vertical field of view in radians of object folders that are views without poses
    (numbered 00000.png ... with optional masks/; 0.7 is `latent3d data objects`' default)."""
    search_size: int = within(4, 64, 16)
    """--cameras learn: side in pixels the views are compared at during the pose search."""
    steps: int = within(1, 10**8, 2000)
    """Optimisation steps."""
    lr: float = within(0, 1, 5e-4, open_lo=True)
    """Adam learning rate (paper: 5e-4, betas 0.5, 0.999)."""
    holdout: int = within(2, 10**6, 0, also=(0,))
    """Hold out the views with index i % K == K - 1 of every object (views sorted by file name); 0: none."""
    seed: int = within(0, SEED_MAX, 0)

    def __post_init__(self) -> None:
        check_config(self)

    def relations(self) -> Iterator[str]:
        """What the settings must satisfy together (:func:`latent3d.ranges.check_config`)."""
        sides = [8 * 2**k for k in range(len(self.widths) + 1)]
        if any(r not in sides for r in self.attention):
            yield f"--attention {','.join(map(str, self.attention))}: each entry must be a volume side of this decoder " \
                  f"({', '.join(map(str, sides))})"
        if sides[-1] * self.shuffle > 256:
            yield f"the radiance grid would be {sides[-1] * self.shuffle}^3 (8 x 2^len(--widths) x --shuffle); at most 256^3"


@dataclass
class ArticulatedConfig:
    """3DVADER stage 3 (``train autodecoder --articulated``): each monocular video fitted as a canonical grid with
    skinning weights over rigid parts and every frame's part poses, seen by one fixed camera."""

    parts: int = within(2, 10, 2)
    """Rigid parts P of each object (paper: 10); a hinged box has 2."""
    steps: int = within(1, 10**8, 900)
    """Optimisation steps per video."""
    grid: int = within(8, 96, 24)
    """Side of the canonical grid (N^3 voxels)."""
    holdout: int = within(2, 10**6, 4, also=(0,))
    """Leave out the frames with index i % K == K - 1, rendered from their neighbours' poses; 0: none."""
    fov_y: float = within(0.01, 3.0, 0.7)
    """Vertical field of view of the videos in radians."""
    camera_radius: float = within(0, 1e4, 3.0, open_lo=True)
    """Distance of the fixed camera from the object centre (sets the scale of the fit)."""
    camera_elevation: float = within(-89, 89, 20.0)
    """Elevation of the fixed camera in degrees."""
    root_smoothness: float = within(0, 1e6, 1.0)
    """Weight of the smoothness of the root part's motion from frame to frame (the camera's motion, which is slow):
    without it the root takes over the other parts' motion (measured: 19-38 degrees of hinge error instead of 3-16)."""
    decoder_steps: int = within(0, 10**8, 1500)
    """Steps of the one decoder for all videos (per-video latents -> canonical volume + skinning weights), trained
    after the per-video fits on their frames and tracked poses; 0: the per-video fits only (no generator can learn
    from the run)."""
    pose_steps: int = within(0, 10**8, 1500)
    """Steps of the pose network (a CNN from a video's first frame and frame t to frame t's part transforms), trained
    on the tracked poses after the decoder; it lets `object --animate --motion-video DIR` read a new video's motion.
    0: none."""
    seed: int = within(0, SEED_MAX, 0)

    def __post_init__(self) -> None:
        check_config(self)


@dataclass
class ObjectDiffusionConfig:
    """3DVADER stage 2 (Sec. 3.2, supplement B.2): an EDM diffusion model over the normalised 8^3 latent volumes,
    text-conditioned by cross-attention, trained with classifier-free guidance's caption dropout."""

    model_channels: int = within(1, 1024, 32)
    """Base width of the 3D UNet (paper: 128)."""
    channel_mult: tuple[int, ...] = within(1, 16, (1, 2), count=(1, 4))
    """Width multipliers per UNet level, comma-separated; each level halves the volume (paper: 3,4)."""
    blocks: int = within(1, 8, 1)
    """Residual blocks per UNet level (ADM: 2-3)."""
    attention: tuple[int, ...] = within(1, 8, (4,), count=(0, 4))
    """Volume sides with self- and cross-attention, comma-separated (paper: 8,4; the middle block always
    attends). Attention over the 512 voxels of 8^3 costs a CPU more than the rest of the network."""
    head_channels: int = within(1, 1024, 32)
    """Channels per attention head."""
    dropout: float = within(0, 1, 0.0, open_hi=True)
    """Dropout in the residual blocks."""
    normalization: Literal["channel", "global"] = "channel"
    """Robust latent normalisation (F - median) / (0.7413 IQR), statistics per channel or one for all values."""
    text_encoder: str | None = None
    """A local transformers text encoder folder (T5 / CLIP text model with its tokenizer), kept frozen; default: a
    small word-level encoder over the training captions, trained jointly."""
    text_dim: int = within(1, 4096, 64)
    """Word-level text encoder: width."""
    text_layers: int = within(1, 48, 2)
    """Word-level text encoder: transformer layers."""
    max_tokens: int = within(2, 512, 8)
    """Tokens per caption (padded or truncated), BOS and EOS included."""
    cond_drop: float = within(0, 1, 0.1, open_hi=True)
    """Fraction of captions replaced by the empty prompt in training (classifier-free guidance)."""
    sigma_data: float | None = within(0, 100, None, open_lo=True)
    """EDM's data standard deviation; default: measured on the normalised training latents (~1.4 on
    latent3d's autodecoders: the robust scale is ~1 for a Gaussian and more for heavy tails; EDM's images: 0.5)."""
    p_mean: float = within(-5, 5, 1.0)
    """EDM training noise levels: mean of ln(sigma). Rule: a real share of training (>= 10 %) above sigma 20,
    where the captions of 8^3 x 16 latents become indistinguishable (posterior of the true category of a noised
    training latent 1.00 up to sigma 12, 0.80 at 40, 0.42 at 80), and the median sigma (2.7) near 2 sigma_data for
    colour and detail. N(1.0, 1.6^2) draws 21 / 11 / 4.6 % above sigma 10 / 20 / 40; EDM's image setting
    N(-1.2, 1.2^2) draws 0.1 % above 12, and its samples follow the prompt's colour but not its object word
    (object accuracy 0.36; 0.995 with these defaults). `train object-diffusion` prints these shares and the measured posteriors."""
    p_std: float = within(0, 5, 1.6, open_lo=True)
    """EDM training noise levels: standard deviation of ln(sigma) (EDM images: 1.2)."""
    steps: int = within(1, 10**8, 4000)
    """Optimisation steps."""
    batch_size: int = within(1, 4096, 16)
    """Latent volumes per step."""
    lr: float = within(0, 1, 2e-4, open_lo=True)
    """Adam learning rate."""
    ema_decay: float = within(0, 1, 0.999, open_hi=True)
    """Decay of the exponential moving average of the weights (the exported model is the EMA)."""
    seed: int = within(0, SEED_MAX, 0)

    def __post_init__(self) -> None:
        check_config(self)

    def relations(self) -> Iterator[str]:
        """What the settings must satisfy together (:func:`latent3d.ranges.check_config`)."""
        sides = [8 >> k for k in range(len(self.channel_mult))]
        if any(r not in sides for r in self.attention):
            yield f"--attention {','.join(map(str, self.attention))}: each entry must be a side of the UNet's volumes " \
                  f"({', '.join(map(str, sides))} with this --channel-mult)"
        if self.model_channels % 2:
            yield f"--model-channels must be even (the noise level's sin / cos features take half each), got {self.model_channels}"
        if self.text_encoder is None and self.text_dim % 4:
            yield f"--text-dim must be a multiple of 4 (the word-level encoder's 4 attention heads), got {self.text_dim}"


@dataclass
class ObjectConfig:
    """``latent3d object``: sample latent volumes with the Heun sampler and classifier-free guidance, decode them
    to radiance grids, and write views, a turntable, the grid, a mesh and Gaussians per sample."""

    model: str = OBJECT_MODEL
    """A bundled object model's name or the model/ folder of `latent3d train object-diffusion`."""
    n: int = within(1, 256, 4)
    """Samples to draw."""
    steps: int = within(1, 1000, 32)
    """Heun steps (2 x steps - 1 network calls; paper: 16 / 32 / 64)."""
    guidance: float = within(0, 100, 3.0)
    """Classifier-free guidance scale (1 = none; paper: 3)."""
    sigma_min: float = within(0, 10, 0.002, open_lo=True)
    """Smallest noise level of the Karras schedule."""
    sigma_max: float = within(0, 1e4, 80.0, open_lo=True)
    """Largest noise level of the Karras schedule."""
    views: int = within(1, 360, 8)
    """Orbit views written per sample."""
    size: int = within(8, 2048, 128)
    """Side of the written views and turntable frames in pixels."""
    frames: int = within(2, 2000, 48)
    """Turntable frames (2 s at 24 fps)."""
    elevation: float = within(-90, 90, 20.0, open_lo=True, open_hi=True)
    """Camera elevation of the views in degrees."""
    radius: float = within(1, 1e3, 3.0, open_lo=True)
    """Camera distance from the object centre (objects fill the unit cube)."""
    animate: bool = False
    """Also write animation.mp4 per sample (--frames frames): the object moving its parts with a training video's
    part motion (articulated models only: `train autodecoder --articulated`, then `train object-diffusion`)."""
    motion: int = within(0, 10**6, 0)
    """--animate: which training video's motion drives the parts (0 = the first video of the autodecoder run)."""
    motion_video: str | None = None
    """--animate: a video folder (numbered frames, optional masks/, seen as the training videos were) whose motion
    the model's pose network reads and the sample follows, instead of a training motion."""

    def __post_init__(self) -> None:
        check_config(self)

    def relations(self) -> Iterator[str]:
        if self.sigma_min >= self.sigma_max:
            yield f"sigma_min ({self.sigma_min}) must be below sigma_max ({self.sigma_max})"
