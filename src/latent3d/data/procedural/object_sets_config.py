"""Settings of a rendered multi-view object set (``latent3d data objects``); importing this module loads no torch, so
the command line reads its defaults and help from here, and :mod:`latent3d.data.procedural.object_sets` its keyword
defaults. :data:`OBJECT_FOV_Y` is the field of view of every object render."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from latent3d.ranges import check_config, within

OBJECT_FOV_Y = 0.7  # radians: the vertical field of view of latent3d's object renders (orbit cameras)


@dataclass
class MultiviewConfig:
    """Which objects are rendered, how many views of each, and where the cameras stand."""

    categories: tuple[str, ...] = ("chair", "table")
    """Names of latent3d's procedural objects (chair, table, car, ...), round-robin over the objects."""
    n_objects: int = within(1, 10**6, 16)
    """Objects in all, round-robin over the categories (ids chair_0000, table_0000, chair_0001, ...)."""
    views: int = within(1, 10**5, 24)
    """Views per object (azimuth stratified, elevation uniform)."""
    size: int = within(8, 4096, 64)
    """Image height = width in pixels."""
    radius: float | tuple[float, float] = within(1, 1e4, 3.0, open_lo=True, count=(1, 2))
    """Camera distance from the object centre: R, or LO,HI drawn uniformly per view (objects fit in the unit sphere)."""
    elevation_range_deg: tuple[float, float] = within(-90, 90, (-10.0, 60.0), count=(2, 2))
    """Camera elevation range LO,HI in degrees above the ground plane."""
    fov_y: float = within(0.01, 3.0, OBJECT_FOV_Y)
    """Vertical field of view in radians (0.57 to 172 degrees)."""
    variation: float = within(0, 2, 1.0)
    """Shape variation within a category (0 = one fixed shape per category; above 2 parts would shrink to
    nothing)."""
    colors: tuple[str, ...] = ()
    """Palette colours the objects are painted in, one drawn per object (red, green, blue, ...); empty: the whole
    palette."""

    def __post_init__(self) -> None:
        check_config(self)

    def relations(self) -> Iterator[str]:
        r = (self.radius,) * 2 if isinstance(self.radius, (int, float)) else self.radius
        if r[0] > r[-1]:
            yield f"--radius {r[0]:g},{r[-1]:g}: LO must not exceed HI"
        if self.elevation_range_deg[0] > self.elevation_range_deg[1]:
            yield f"--elevation {self.elevation_range_deg[0]:g},{self.elevation_range_deg[1]:g}: LO must not exceed HI"


@dataclass
class ArticulatedVideosConfig:
    """Monocular videos of articulated objects (``latent3d data articulated``)."""

    n_videos: int = within(1, 10**5, 8)
    """Videos in all, round-robin over the kinds (video_000, video_001, ...)."""
    frames: int = within(2, 10**4, 24)
    """Frames per video."""
    size: int = within(8, 2048, 64)
    """Frame height = width in pixels."""
    kinds: tuple[str, ...] = ("hinge_box", "desk_lamp", "robot_arm", "walker")
    """Articulated objects (hinge_box, desk_lamp, robot_arm, walker), round-robin over the videos."""
    camera_drift_deg: float = within(0, 360, 40.0)
    """How far the camera's azimuth turns over a video at most (degrees; its elevation sways by 5 degrees)."""

    def __post_init__(self) -> None:
        check_config(self)
