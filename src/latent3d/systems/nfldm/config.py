"""Settings of NeuralField-LDM (Kim et al. 2023, arXiv 2304.09787): the scene auto-encoder (Sec. 3.1). The field
docstrings are the command-line help; importing this module loads no torch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

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
    steps: int = within(1, 10**8, 3000)
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
