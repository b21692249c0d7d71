"""Settings of a rendered multi-view object set (``latent3d data objects``); importing this module loads no torch, so
the command line reads its defaults and help from here, and :mod:`latent3d.data.multiview` its keyword defaults."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class MultiviewConfig:
    """Which objects are rendered, how many views of each, and where the cameras stand."""

    categories: tuple[str, ...] = ("chair", "table")
    """Names of latent3d's procedural objects (chair, table, car, ...), round-robin over the objects."""
    n_objects: int = 16
    """Objects in all, round-robin over the categories (ids chair_0000, table_0000, chair_0001, ...)."""
    views: int = 24
    """Views per object (azimuth stratified, elevation uniform)."""
    size: int = 64
    """Image height = width in pixels."""
    radius: float | tuple[float, float] = 3.0
    """Camera distance from the object centre: R, or LO,HI drawn uniformly per view (objects fit in the unit sphere)."""
    elevation_range_deg: tuple[float, float] = (-10.0, 60.0)
    """Camera elevation range LO,HI in degrees above the ground plane."""
    fov_y: float = 0.7
    """Vertical field of view in radians."""
    variation: float = 1.0
    """Shape variation within a category (0 = one fixed shape per category)."""
    colors: tuple[str, ...] = ()
    """Palette colours the objects are painted in, one drawn per object (red, green, blue, ...); empty: the whole
    palette."""
