"""Settings of LDM3D's two training stages (``latent3d train rgbd-vae``, ``latent3d train rgbd``); importing this
module loads no torch, so the command line reads its defaults and help from here."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from latent3d.ranges import SEED_MAX, check_config, within

if TYPE_CHECKING:
    from latent3d.nets.rgbd_vae import AELossConfig


@dataclass
class RGBDDataConfig:
    """Which RGBD images to train on (field docstrings are the CLI help)."""

    pano: bool = False
    """Train on 2:1 equirectangular panoramas of places (LDM3D-pano) instead of perspective views of objects."""
    height: int = within(8, 4096, 64)
    """Image height in pixels (width = height, or 2 x height with --pano)."""
    width: int | None = within(8, 8192, None)
    """Image width (default: height, or 2 * height for panoramas)."""
    n_images: int = within(1, 10**7, 3000)
    """Rendered training images (ignored with --data)."""
    kinds: tuple[str, ...] | None = None
    """Scene kinds to render (default: floor/room/outdoor, or the panorama places)."""
    data: str | None = None
    """RGBD folder to train on instead of rendering (written by `latent3d data rgbd-pairs` or write_rgbd_set)."""
    seed: int = within(0, SEED_MAX, 0)

    def __post_init__(self) -> None:
        check_config(self)

    @property
    def size(self) -> tuple[int, int]:  # (H, W)
        return self.height, self.width or (2 * self.height if self.pano else self.height)


@dataclass
class RGBDVAEConfig(RGBDDataConfig):
    """``latent3d train rgbd-vae``: the RGBD KL-autoencoder (LDM3D Sec. 3.1)."""

    variant: Literal["6c", "4c"] = "6c"
    """6c: RGB + 16-bit depth packed RGB-like (Intel/ldm3d); 4c: RGB + 1 depth channel (Intel/ldm3d-4c, -pano)."""
    rgb_vae: str | None = None
    """RGB AutoencoderKL folder to widen (e.g. SD's vae/, or a pipeline folder); default: a fresh small one."""
    block_out_channels: tuple[int, ...] = (32, 64, 64)
    latent_channels: int = within(1, 64, 4)
    steps: int = within(1, 10**8, 6000)
    """Optimisation steps."""
    batch_size: int = within(1, 4096, 16)
    """Images per step."""
    lr: float = within(0, 1, 2e-4, open_lo=True)
    """AdamW learning rate (paper: 1e-5 when fine-tuning SD's VAE, batch 8)."""
    betas: tuple[float, float] = (0.5, 0.9)
    loss: AELossConfig = field(default_factory=lambda: make_ae_loss(disc_start=2000))


@dataclass
class RGBDLDMConfig(RGBDDataConfig):
    """``latent3d train rgbd``: the text-conditioned latent diffusion model (LDM3D Sec. 3.2)."""

    vae: str | None = None
    """Stage-1 folder: the --out of `latent3d train rgbd-vae` (or a 6/4-channel AutoencoderKL folder)."""
    block_out_channels: tuple[int, ...] = (32, 64, 64)
    attention_levels: tuple[bool, ...] = (False, True, True)
    text_dim: int = within(4, 4096, 64)
    text_layers: int = within(1, 48, 2)
    max_tokens: int = within(2, 512, 32)
    beta_schedule: str = "scaled_linear"
    cond_drop: float = within(0, 1, 0.1, open_hi=True)
    """Probability of training on the empty caption (classifier-free guidance)."""
    steps: int = within(1, 10**8, 20000)
    """Optimisation steps."""
    batch_size: int = within(1, 4096, 64)
    """Images per step."""
    lr: float = within(0, 1, 2e-4, open_lo=True)
    """Peak AdamW learning rate (the paper fine-tunes SD with 1e-5, batch 32)."""
    warmup_steps: int = within(0, 10**8, 500)
    ema_decay: float = within(0, 1, 0.999, open_hi=True)


def make_ae_loss(**kw) -> AELossConfig:
    from latent3d.nets.rgbd_vae import AELossConfig

    return AELossConfig(**kw)
