"""Settings of the bundled object prior (``latent3d train prior``); importing this module loads no torch, so the
command line reads its defaults and help from here."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from latent3d.data.procedural.object_sets_config import OBJECT_FOV_Y
from latent3d.ranges import SEED_MAX, check_config, within

PRIOR_OBJECTS = ("snowman", "chair", "table", "mushroom", "lamp", "rocket", "tree", "house")
# settings latent3d uses with this prior unless told otherwise: this small pixel-space v model samples best unguided
# (prior_eval: guidance 1.25 already scores lower), while score distillation needs guidance
PRIOR_DEFAULTS = {"guidance_scale": 1.0, "ism_guidance_scale": 5.0, "sds_guidance_scale": 10.0}


@dataclass
class ObjectPriorConfig:
    """Data, network and optimisation settings of ``latent3d train prior``."""

    resolution: int = within(8, 1024, 32)
    """Image size (pixels); the prior works in pixel space."""
    objects: tuple[str, ...] = PRIOR_OBJECTS
    colors: tuple[str, ...] = field(default_factory=lambda: _all_colors())
    """Colour names (default: every colour of :data:`latent3d.data.procedural.shading.COLORS`, sorted)."""
    views: int = within(1, 10**5, 48)
    """Rendered views per (object, colour)."""
    elevation_range_deg: tuple[float, float] = (-10.0, 80.0)
    radius: float = within(1, 1e3, 3.0, open_lo=True)
    fov_y: float = within(0.01, 3.0, OBJECT_FOV_Y)
    supersample: int = within(1, 16, 4)
    block_out_channels: tuple[int, ...] = (32, 64, 64)
    attn_levels: int = within(0, 8, 1)
    """How many of the lowest-resolution UNet levels have text cross-attention (the mid block always has)."""
    text_dim: int = within(4, 4096, 64)
    text_layers: int = within(1, 48, 2)
    max_tokens: int = within(2, 512, 12)
    beta_schedule: str = "squaredcos_cap_v2"
    prediction_type: Literal["v_prediction", "epsilon"] = "v_prediction"
    """What the UNet predicts: v_prediction (v = sqrt(abar) eps - sqrt(1 - abar) x0, Salimans & Ho 2022, Sec. 4;
    weights the clean-image error at high noise, where colour and layout are decided) or epsilon (DDPM)."""
    cond_drop: float = within(0, 1, 0.1, open_hi=True)
    """Probability of training on the empty caption (enables classifier-free guidance)."""
    steps: int = within(1, 10**8, 1500)
    """Optimisation steps."""
    batch_size: int = within(1, 4096, 128)
    """Images per step."""
    lr: float = within(0, 1, 3e-4, open_lo=True)
    """Peak AdamW learning rate."""
    warmup_steps: int = within(0, 10**8, 500)
    """Linear learning-rate warm-up steps."""
    ema_decay: float = within(0, 1, 0.999, open_hi=True)
    """EMA decay of the exported weights."""
    seed: int = within(0, SEED_MAX, 0)
    init: str | None = None
    """Start from this exported prior folder (same vocabulary and network) instead of random weights (fine-tuning)."""
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_config(self)


def _all_colors() -> tuple[str, ...]:
    from latent3d.data.procedural.shading import COLORS

    return tuple(sorted(COLORS))
