"""Settings of ``latent3d dream`` (LucidDreamer); importing this module loads no torch, so the command line reads
its defaults and help from here."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from latent3d.ranges import SEED_MAX, check_config, within
from latent3d.weights import OBJECT_MODEL

LUCID_NEGATIVE = ("unrealistic, blurry, low quality, out of focus, ugly, low contrast, dull, low-resolution, "
                  "oversaturation.")  # fmt: skip
"""The negative prompt of LucidDreamer's shipped configs (``configs/*.yaml``, ``GuidanceParams.negative``)."""

if TYPE_CHECKING:
    from latent3d.distill import ISMSettings, SDSSettings


@dataclass
class DreamConfig:
    """Settings of ``latent3d dream`` (None = chosen from the prior's size: bundled-prior or LucidDreamer defaults)."""

    prompt: str
    negative: str | None = None
    """Negative prompt: the unconditional branch of the guidance, as in LucidDreamer (default: its configs' negative
    prompt for SD-size priors, none for small priors, whose vocabulary lacks those words)."""
    lora: str | None = None
    """A diffusers LoRA (.safetensors file, or the folder save_lora_weights wrote) merged into the prior's UNet and
    text encoder: a personalised prior (e.g. DreamBooth-LoRA of your object)."""
    method: Literal["ism", "sds"] = "ism"
    """ism (LucidDreamer's Interval Score Matching) or sds (DreamFusion)."""
    recipe: Literal["auto", "lucid", "bundled"] = "auto"
    """Schedules, augmentations and loss weights: lucid (the official LucidDreamer configs), bundled (tuned for the
    bundled 64^2 prior on a CPU) or auto (bundled for priors of <= 128 px, lucid above); the table is in
    latent3d/systems/lucid_dreamer/recipe.py. Fields below left unset come from it."""
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
    init_points: int | None = within(1, 10**7, None)
    """Gaussians at the start (default: 2048 bundled prior, 100k SD-size as LucidDreamer)."""
    init_extent: float | None = within(0, 100, None, open_lo=True)
    """Radius of the initial sphere / box (default: 0.7 bundled prior, 0.5 SD-size)."""
    bg_aug: float | None = within(0, 1, None)
    """Probability of a random (or, in the lucid recipe, half the time black) background instead of white
    (LucidDreamer's bg augmentation, 0.66)."""
    guidance_scale: float | None = within(0, 1000, None)
    """CFG scale (default: the prior's recommendation, `_latent3d_defaults` in its model_index.json; else 7.5 ISM
    as LucidDreamer, 100 SDS as DreamFusion)."""
    densify_from: float | None = within(0, 1, None)
    """Start of densification as a fraction of the run (default: 0.1 bundled, 100/5000 SD-size)."""
    densify_until: float | None = within(0, 1, None)
    """End of densification as a fraction of the run (default: 0.6)."""
    densify_every: int | None = within(1, 10**6, None)
    """Steps between densifications (default: 50 bundled, 100 SD-size)."""
    grad_threshold: float | None = within(0, 1e3, None)
    """Densification threshold on the average view-space gradient of each view's own loss (NDC units; default: 8e-4
    small priors, LucidDreamer's 7.5e-4 SD-size)."""
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
