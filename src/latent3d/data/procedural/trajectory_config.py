"""Settings of procedural scene episodes (``latent3d data scenes``): a walking agent's trajectory through latent3d's
procedural places, rendered per frame as RGB, z-depth and pose (NF-LDM's training data, Kim et al. 2023, Sec. 4,
after GSN's VizDoom / Replica episodes). Importing this module loads no torch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from latent3d.ranges import check_config, within

WALK_KINDS = ("room", "outdoor", "beach", "forest", "desert", "snow", "street")  # places one can walk through


@dataclass
class SceneEpisodesConfig:
    """How many episodes of how many frames, and how the agent walks."""

    episodes: int = within(1, 10**5, 8)
    """Episodes (trajectories), each in its own scene; the scene kinds take turns."""
    frames: int = within(2, 10**5, 48)
    """Frames per episode."""
    size: int = within(16, 1024, 64)
    """Image height = width in pixels."""
    kinds: tuple[str, ...] = WALK_KINDS
    """Scene kinds the episodes cycle through (room, outdoor, beach, forest, desert, snow, street)."""
    fov: float = within(20, 150, 90.0)
    """Field of view in degrees (square images: horizontal = vertical; VizDoom's is 90)."""
    speed: float = within(0.01, 1.0, 0.08)
    """Walking speed in metres per frame."""
    max_turn: float = within(0.5, 20, 4.0)
    """Largest turn in degrees per frame (consecutive frames overlap strongly at a few degrees)."""
    supersample: int = within(1, 4, 1)
    """Rays per pixel side (anti-aliasing: 2 renders 4 rays per pixel)."""

    def __post_init__(self) -> None:
        check_config(self)

    def relations(self) -> Iterator[str]:
        unknown = [k for k in self.kinds if k not in WALK_KINDS]
        if unknown or not self.kinds:
            said = ", ".join(unknown) or "(none given)"
            yield f"--kinds: unknown scene kind(s) {said}; choose from {', '.join(WALK_KINDS)}"
