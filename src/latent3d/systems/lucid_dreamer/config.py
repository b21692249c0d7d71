"""Settings of ``latent3d dream`` (LucidDreamer); importing this module loads no torch, so the command line reads
its defaults and help from here."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from latent3d.ranges import SEED_MAX, check_config, within
from latent3d.weights import OBJECT_MODEL

if TYPE_CHECKING:
    from latent3d.distill import ISMSettings, SDSSettings


@dataclass
class DreamConfig:
    """Settings of ``latent3d dream`` (None = chosen from the prior's size: bundled-prior or LucidDreamer defaults)."""

    prompt: str
    method: Literal["ism", "sds"] = "ism"
    """ism (LucidDreamer's Interval Score Matching) or sds (DreamFusion)."""
    iters: int | None = within(1, 10**6, None)
    """Optimisation steps (default: 300 bundled prior, 5000 SD-size as LucidDreamer)."""
    views: int = within(1, 64, 4)
    """Views rendered per step (LucidDreamer: 4)."""
    resolution: int | None = within(8, 4096, None)
    """Render size (default: the prior's native image size)."""
    radius_range: tuple[float, float] | None = None
    elevation_range_deg: tuple[float, float] | None = None
    fov_range: tuple[float, float] | None = None
    init: str = "sphere"
    """sphere, box, object (a `latent3d object` sample of the same prompt), or a PLY (3DGS or point cloud) to start
    from."""
    init_model: str = OBJECT_MODEL
    """The object generator of --init object (bundled name or a `latent3d train object-diffusion` model/ folder)."""
    init_points: int = within(1, 10**7, 2048)
    init_extent: float = within(0, 100, 0.7, open_lo=True)
    bg_aug: float = within(0, 1, 0.66)
    """Probability of a random background colour instead of white (LucidDreamer's bg augmentation)."""
    guidance_scale: float | None = within(0, 1000, None)
    """CFG scale (default: the prior's recommendation, `_latent3d_defaults` in its model_index.json; else 7.5 ISM
    as LucidDreamer, 100 SDS as DreamFusion)."""
    densify_from: float = within(0, 1, 0.1)
    densify_until: float = within(0, 1, 0.6)
    densify_every: int = within(1, 10**6, 50)
    grad_threshold: float = within(0, 1e3, 2e-4)
    scale_reg: float = within(0, 1e6, 0.0)
    """Weight of a penalty on the largest Gaussian scales (keeps splats compact)."""
    seed: int = within(0, SEED_MAX, 0)
    ism: ISMSettings = field(default_factory=lambda: _ism_settings())
    sds: SDSSettings = field(default_factory=lambda: _sds_settings())

    def __post_init__(self) -> None:
        check_config(self)


def _ism_settings() -> ISMSettings:
    from latent3d.distill import ISMSettings

    return ISMSettings()


def _sds_settings() -> SDSSettings:
    from latent3d.distill import SDSSettings

    return SDSSettings()
