"""Settings of the bundled object prior (``latent3d train prior``); importing this module loads no torch, so the
command line reads its defaults and help from here."""

from __future__ import annotations

from dataclasses import dataclass, field

PRIOR_OBJECTS = ("snowman", "chair", "table", "mushroom", "lamp", "rocket", "tree", "house")
# settings latent3d uses with this prior unless told otherwise: this small pixel-space v model samples best unguided
# (prior_eval: guidance 1.25 already scores lower), while score distillation needs guidance
PRIOR_DEFAULTS = {"guidance_scale": 1.0, "ism_guidance_scale": 5.0, "sds_guidance_scale": 10.0}


@dataclass
class ObjectPriorConfig:
    """Data, network and optimisation settings of ``latent3d train prior``."""

    resolution: int = 32
    """Image size (pixels); the prior works in pixel space."""
    objects: tuple[str, ...] = PRIOR_OBJECTS
    colors: tuple[str, ...] = field(default_factory=lambda: _all_colors())
    """Colour names (default: every colour of :data:`latent3d.data.shading.COLORS`, sorted)."""
    views: int = 48
    """Rendered views per (object, colour)."""
    elevation_range_deg: tuple[float, float] = (-10.0, 80.0)
    radius: float = 3.0
    fov_y: float = 0.7
    supersample: int = 4
    block_out_channels: tuple[int, ...] = (32, 64, 64)
    attn_levels: int = 1
    """How many of the lowest-resolution UNet levels have text cross-attention (the mid block always has)."""
    text_dim: int = 64
    text_layers: int = 2
    max_tokens: int = 12
    beta_schedule: str = "squaredcos_cap_v2"
    prediction_type: str = "v_prediction"
    """What the UNet predicts: v_prediction (v = sqrt(abar) eps - sqrt(1 - abar) x0, Salimans & Ho 2022, Sec. 4;
    weights the clean-image error at high noise, where colour and layout are decided) or epsilon (DDPM)."""
    cond_drop: float = 0.1
    """Probability of training on the empty caption (enables classifier-free guidance)."""
    steps: int = 1500
    """Optimisation steps."""
    batch_size: int = 128
    """Images per step."""
    lr: float = 3e-4
    """Peak AdamW learning rate."""
    warmup_steps: int = 500
    """Linear learning-rate warm-up steps."""
    ema_decay: float = 0.999
    """EMA decay of the exported weights."""
    seed: int = 0
    init: str | None = None
    """Start from this exported prior folder (same vocabulary and network) instead of random weights (fine-tuning)."""
    extra: dict = field(default_factory=dict)


def _all_colors() -> tuple[str, ...]:
    from latent3d.data.shading import COLORS

    return tuple(sorted(COLORS))
