"""Settings of NeuralField-LDM (Kim et al. 2023, arXiv 2304.09787): the scene auto-encoder (Sec. 3.1), the latent
voxel auto-encoder (Sec. 3.2) and the hierarchical latent diffusion (Sec. 3.3). The field docstrings are the
command-line help; importing this module loads no torch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Literal

from latent3d.ranges import check_config, within


@dataclass
class SceneAEConfig:
    """The scene auto-encoder (NF-LDM Sec. 3.1): a per-image CNN predicts densities at fixed depth bins and features,
    lifted and averaged into one voxel grid per scene, rendered by volume rendering and a 2-D CNN decoder."""

    grid: tuple[int, int, int] = within(2, 256, (32, 32, 8), count=(3, 3))
    """Voxel grid X,Y,Z of a scene (the paper's 128,128,32; a CPU default that trains in minutes)."""
    box: tuple[float, float, float] = within(0.1, 1e4, (7.0, 2.0, 2.0), count=(3, 3))
    """The grid's box in metres: half-size in x and y around the trajectory's centre, then how far below and above
    the mean eye height it reaches."""
    depth_bins: int = within(2, 256, 24)
    """Depth bins D per pixel, equally spaced from --near to --far."""
    near: float = within(0.01, 1e3, 0.2)
    """Nearest depth bin's start (metres, camera z)."""
    far: float = within(0.1, 1e4, 12.0)
    """Farthest depth bin's end (metres, camera z)."""
    features: int = within(1, 256, 16)
    """Feature channels C of the frustum cells and voxels."""
    width: int = within(4, 1024, 48)
    """Channels of the encoder and decoder CNNs."""
    downsample: int = within(1, 8, 2)
    """The encoder's output and the rendered feature maps are the image size divided by this."""
    samples: int = within(2, 1024, 48)
    """Ray samples per rendered pixel inside the box."""
    views_in: int = within(1, 10**4, 12)
    """Frames of an episode encoded into its grid at each training step."""
    views_out: int = within(1, 10**4, 4)
    """Frames of the same episode rendered and compared at each training step."""
    depth_weight: float = within(0, 1e4, 1.0)
    """Weight of the depth loss (MSE of the rendered depth, in units of --far) beside the image L1."""
    steps: int = within(1, 10**8, 2000)
    """Training steps."""
    lr: float = within(0, 1, 2e-3, open_lo=True)
    """AdamW learning rate (after a linear warm-up of 100 steps)."""
    holdout: int = within(2, 10**6, 0, also=(0,))
    """Hold out the frames with index i % K == K - 1 of every episode for evaluation (0: none)."""
    seed: int = within(0, 2**63 - 1, 0)
    """Random seed of initialisation and batches."""

    def __post_init__(self) -> None:
        check_config(self)

    def relations(self) -> Iterator[str]:
        if self.near >= self.far:
            yield f"--near {self.near:g} must be below --far {self.far:g}"
        if self.width % 8:
            yield f"--width {self.width}: give a multiple of 8 (group norms of 8 groups)"


@dataclass
class SceneLatentAEConfig:
    """The latent voxel auto-encoder (NF-LDM Sec. 3.2, supplement Table 8): a scene auto-encoder's grid, its vertical
    axis folded into channels, -> 2-D CNN -> a global vector g (KL), a coarse 3-D latent c and a fine bird's-eye-view
    latent f (both vector-quantised) -> a decoder conditioned on g by conditional group norm, f joined at the
    grid's X x Y -> the grid."""

    global_dim: int = within(1, 4096, 32)
    """Dimension of the global latent g (the paper's 128)."""
    coarse_channels: int = within(1, 256, 4)
    """Channels of each coarse latent vector c (the paper's 4)."""
    fine_channels: int = within(1, 256, 4)
    """Channels of each fine latent vector f (the paper's 4)."""
    downsample: int = within(1, 64, 4)
    """c's X and Y are the grid's divided by this (a power of two; the paper's 4, its best)."""
    downsample_z: int = within(1, 64, 2)
    """c's vertical size is the grid's Z divided by this (the paper's 32 -> 16: 2)."""
    codebook_coarse: int = within(2, 2**16, 256)
    """Codes of c's codebook (the paper's 1024; fewer for the few scenes of a CPU run)."""
    codebook_fine: int = within(2, 2**16, 128)
    """Codes of f's codebook (the paper's 128)."""
    width: int = within(8, 1024, 64)
    """Channels of the encoder and decoder CNNs."""
    blocks: int = within(1, 16, 1)
    """Residual blocks per resolution in the encoder and decoder."""
    beta: float = within(0, 100, 0.25)
    """Commitment weight of the vector quantisers (VQ-VAE eq. 3; 0.25 there)."""
    restart_after: int = within(1, 10**6, 50)
    """A code no vector chose in this many consecutive steps is restarted at a random encoder output."""
    kl_weight: float = within(0, 100, 1e-4)
    """Weight of KL(q(g) || N(0, I)) (summed over g's dimensions): the paper's "small KL penalty"."""
    density_weight: float = within(0, 1e4, 2.5)
    """Weight of the density MSE in the voxel loss, beside 1 for the features' (mean over their channels; the paper's
    2.5)."""
    image_weight: float = within(0, 1e4, 1.0)
    """Weight of the image L1 of decoded grids rendered by the frozen scene auto-encoder (0: voxel loss only)."""
    views: int = within(1, 10**4, 1)
    """Training frames of each scene rendered from its decoded grid per step for the image loss."""
    batch_size: int = within(1, 10**4, 4)
    """Scenes per step."""
    steps: int = within(1, 10**8, 2000)
    """Training steps."""
    lr: float = within(0, 1, 1e-3, open_lo=True)
    """AdamW learning rate (after a linear warm-up of 100 steps)."""
    seed: int = within(0, 2**63 - 1, 0)
    """Random seed of initialisation and batches."""

    def __post_init__(self) -> None:
        check_config(self)

    def relations(self) -> Iterator[str]:
        for name in ("downsample", "downsample_z"):
            v = getattr(self, name)
            if v & (v - 1):
                yield f"--{name.replace('_', '-')} {v}: give a power of two"
        if self.width % 8:
            yield f"--width {self.width}: give a multiple of 8 (group norms of 8 groups)"

    def check_grid(self, grid: tuple[int, int, int]) -> Iterator[str]:
        """What does not fit a scene grid of X, Y, Z voxels."""
        X, Y, Z = grid
        if X % self.downsample or Y % self.downsample:
            yield f"--downsample {self.downsample} does not divide the scene grid's X x Y {X}x{Y}"
        if Z % self.downsample_z:
            yield f"--downsample-z {self.downsample_z} does not divide the scene grid's Z {Z}"


@dataclass
class SceneDiffusionConfig:
    """NF-LDM's hierarchical latent diffusion (Sec. 3.3): p(g) p(c | g) p(f | g, c), three denoisers trained with the
    x0 objective E[w(lambda_t) ||x0 - psi(x_t, t, ...)||^2]: psi_g an MLP with skip connections over g and the
    scene's camera trajectory, psi_c and psi_f 2-D UNets (vertical axis folded into channels) conditioned on g by
    conditional group norm, psi_f on c by concatenation."""

    trajectory_poses: int = within(1, 4096, 16)
    """Camera poses K of a scene's trajectory concatenated to g (resampled evenly along its episode; each pose x, y, z
    relative to the scene box's centre in units of its half-size, and cos, sin of the yaw)."""
    beta_schedule: Literal["squaredcos_cap_v2", "linear", "scaled_linear"] = "squaredcos_cap_v2"
    """Noise schedule of the 1000 training timesteps (diffusers' names; squaredcos_cap_v2: the cosine schedule of
    Nichol & Dhariwal 2021)."""
    weighting: Literal["constant", "min_snr"] = "constant"
    """w(lambda_t) of the x0 objective: constant 1, or min(SNR_t, --snr-gamma) (Min-SNR, Hang et al. 2023), which
    weighs the high noise levels, where c and f are decided by g (and c), by SNR_t ~ 0: there psi_c then learns g's
    scene too little, and 2 of 48 samples of a two-scene run took the other scene's c."""
    snr_gamma: float = within(0, 1e4, 5.0, open_lo=True)
    """The gamma of min-SNR weighting (5 in Hang et al. 2023)."""
    mlp_width: int = within(8, 8192, 256)
    """Width of psi_g, the MLP over g and the trajectory."""
    mlp_blocks: int = within(1, 64, 4)
    """Residual blocks (skip connections) of psi_g."""
    width: int = within(8, 1024, 32)
    """Base channels of the UNets psi_c and psi_f."""
    channel_mult: tuple[int, ...] = within(1, 16, (1, 2), count=(1, 5))
    """psi_c's width multipliers per UNet level, comma-separated; each level halves c's X and Y."""
    channel_mult_fine: tuple[int, ...] = within(1, 16, (1, 2, 2), count=(1, 6))
    """psi_f's width multipliers per UNet level, comma-separated; each level halves f's X and Y."""
    blocks: int = within(1, 8, 1)
    """Residual blocks per UNet level."""
    steps: int = within(1, 10**8, 4000)
    """Training steps of each level."""
    batch_size: int = within(1, 4096, 16)
    """Scenes per step."""
    lr: float = within(0, 1, 5e-4, open_lo=True)
    """AdamW learning rate (after a linear warm-up of at most 100 steps)."""
    ema_decay: float = within(0, 1, 0.999, open_hi=True)
    """Decay of the exponential moving average of the weights (the exported model is the EMA)."""
    bev: bool = False
    """Condition psi_c and psi_f on each episode's bird's-eye-view semantic map (the bev.png of `latent3d data
    scenes` / `latent3d data vizdoom` episodes) through cross-attention to map tokens (NF-LDM's BEV-conditioned
    synthesis); `latent3d scene --bev MAP` then follows a map, and samples without one as before."""
    bev_dropout: float = within(0, 1, 0.15)
    """With --bev: the share of training scenes whose map is replaced by the empty map (every cell unknown), so
    that the same psi_c and psi_f also sample without a map."""
    bev_global_dropout: float = within(0, 1, 0.4)
    """With --bev: the share of training scenes (drawn independently of --bev-dropout) whose g psi_c and psi_f do
    not see (the training mean instead), so that a map alone decides c: `latent3d scene --bev` samples with the mean
    g. g summarises a whole scene; with it always there, the models learn to ignore the map."""
    bev_width: int = within(8, 1024, 64)
    """With --bev: the width of the map tokens psi_c and psi_f attend to."""
    sample_steps: int = within(1, 1000, 50)
    """DDIM steps (trailing spacing) when sampling scenes."""
    eta: float = within(0, 1, 0.0)
    """DDIM's eta when sampling: 0 deterministic DDIM, 1 the DDPM ancestral noise."""
    seed: int = within(0, 2**63 - 1, 0)
    """Random seed of initialisation and batches."""

    def __post_init__(self) -> None:
        check_config(self)

    def relations(self) -> Iterator[str]:
        for name in ("width", "mlp_width"):
            if getattr(self, name) % 8:
                yield f"--{name.replace('_', '-')} {getattr(self, name)}: give a multiple of 8 (group norms of 8 groups)"

    def check_latents(self, coarse_xy: tuple[int, int], fine_xy: tuple[int, int]) -> Iterator[str]:
        """What does not fit latents whose c is ``coarse_xy`` and whose f is ``fine_xy`` (X, Y) in size."""
        for name, mult, xy in (("channel_mult", self.channel_mult, coarse_xy),
                               ("channel_mult_fine", self.channel_mult_fine, fine_xy)):  # fmt: skip
            k = 2 ** (len(mult) - 1)
            if xy[0] % k or xy[1] % k:
                yield (f"--{name.replace('_', '-')} {','.join(map(str, mult))}: {len(mult)} UNet levels halve "
                       f"{xy[0]}x{xy[1]} {len(mult) - 1} times; give fewer levels")


@dataclass
class SceneConfig:
    """``latent3d scene``: scenes sampled by NF-LDM's hierarchy (Sec. 3.3) and rendered along their trajectories."""

    model: str = "scene-tiny"
    """Bundled scene model (scene-tiny: procedural places; vizdoom-tiny: VizDoom), a folder of `latent3d scene pack`,
    or the --out folder of `latent3d train scene-diffusion`."""
    n: int = within(1, 256, 1)
    """Scenes to sample."""
    frames: int = within(2, 2000, 48)
    """Frames of each fly-through along the sampled camera trajectory."""
    post_opt: int = within(0, 10**5, 0)
    """Post-optimisation steps (NF-LDM Sec. 3.4: score distillation on rendered views into the voxel grid, with
    negative guidance); 0: none."""
    alpha: float = within(0, 1000, 2.0)
    """Guidance alpha of post-optimisation: eps(y') + alpha (eps(y) - eps(y')) (2 lowers the bundled models' FID,
    7.5 raises it: y and y' lie 4-7 standard deviations apart, a large alpha extrapolates far past y)."""
    bev_scale: float = within(0, 100, 4.0)
    """With --bev: classifier-free guidance on the map, x0(empty map) + s (x0(map) - x0(empty map)); 1 = none (4:
    the bundled models' scenes follow their maps clearly more, benchmarks/scene_bev_eval.py)."""

    def __post_init__(self) -> None:
        check_config(self)


PRESETS = ("cpu", "paper")
# --preset paper: NF-LDM's scale (Kim et al. 2023, Sec. 3 and App.: a 128x128x32 grid, g of 128 dimensions, c of
# 32x32x16x4 and f of 128x128x4 with codebooks of 1024 and 128 codes); widths and steps sized for one GPU
PAPER_PRESET: dict[str, dict] = {
    "scene_ae": {"grid": (128, 128, 32), "depth_bins": 64, "features": 32, "width": 128, "samples": 128,
                 "views_in": 16, "views_out": 4, "steps": 100_000, "lr": 5e-4},
    "scene_latent_ae": {"global_dim": 128, "coarse_channels": 4, "fine_channels": 4, "downsample": 4,
                        "downsample_z": 2, "codebook_coarse": 1024, "codebook_fine": 128, "width": 128,
                        "batch_size": 8, "steps": 100_000, "lr": 2e-4},
    "scene_diffusion": {"mlp_width": 1024, "mlp_blocks": 6, "width": 128, "channel_mult": (1, 2, 4),
                        "channel_mult_fine": (1, 2, 2, 4), "blocks": 2, "batch_size": 32, "steps": 200_000,
                        "lr": 1e-4},
}


@dataclass
class ScenePriorConfig:
    """The in-domain 2-D prior of NF-LDM's post-optimisation (Sec. 3.4): a pixel-space diffusion UNet over scene
    frames conditioned (cross-attention, one token) on an image embedding from latent3d's own feature net, trained on
    the dataset's frames and on frames rendered from the scene model's own samples, so that ``y`` (clean data) and
    ``y'`` (the model's artefacts) are both conditions it knows."""

    resolution: int = within(8, 512, 32)
    """Frame size of the prior in pixels (frames are area-downsampled to it)."""
    channels: tuple[int, ...] = within(8, 1024, (16, 32, 32), count=(2, 5))
    """The UNet's channels per level (cross-attention in the two lowest), comma-separated."""
    samples: int = within(1, 10**5, 64)
    """Scenes sampled from the scene model and rendered for the artefact condition y'."""
    frames: int = within(2, 1000, 8)
    """Frames rendered along each sampled scene's trajectory."""
    feature_steps: int = within(1, 10**6, 600)
    """Training steps of the feature net (which tells the episodes apart)."""
    steps: int = within(1, 10**8, 2000)
    """Training steps of the UNet."""
    batch_size: int = within(1, 4096, 16)
    """Frames per UNet step."""
    lr: float = within(0, 1, 5e-4, open_lo=True)
    """AdamW learning rate of the UNet."""
    cond_drop: float = within(0, 1, 0.1)
    """Share of training frames whose embedding is replaced by the empty (zero) token (classifier-free guidance)."""
    seed: int = within(0, 2**63 - 1, 0)
    """Random seed of initialisation, batches and the sampled scenes."""

    def __post_init__(self) -> None:
        check_config(self)

    def relations(self) -> Iterator[str]:
        if self.resolution % 2 ** (len(self.channels) - 1):
            yield f"--resolution {self.resolution}: {len(self.channels)} UNet levels need a multiple of " \
                  f"{2 ** (len(self.channels) - 1)}"
        if any(c % 8 for c in self.channels):
            yield f"--channels {','.join(map(str, self.channels))}: give multiples of 8 (group norms of 8 groups)"
