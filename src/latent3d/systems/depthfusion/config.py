"""Settings of a DepthFusion world (``latent3d immersive``); importing this module loads no torch, so the command
line reads its defaults and help from here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from latent3d.render.sphere import DepthMode


@dataclass
class WorldConfig:
    """Settings of :func:`build_world` (each field's docstring is its meaning)."""

    depth_mode: DepthMode = "disparity"
    """How the depth panorama is read: "disparity" (in [0, 1], bright = near, 1/r linear in it; LDM3D/DPT output),
    "linear" (DepthFusion's displacement linear in depth - 0.5) or "metric" (distance along the ray)."""
    strength: float = 0.5
    """Displacement strength in [0, 1): depth 1 moves a vertex to radius/(1+strength), 0 to radius/(1-strength)."""
    radius: float = 4.0
    """Radius in metres where depth 0.5 sits (ignored in metric mode)."""
    far: float | None = None
    """Metric mode: distance given to sky / missing depth (default: twice the farthest finite point)."""
    sphere_lon: int = 256
    """Sphere segments around (longitude); the mesh has sphere_lon x sphere_lat quads."""
    sphere_lat: int = 128
    """Sphere segments from pole to pole (latitude)."""
    ipd: float = 0.064
    """Interpupillary distance in metres for the omnidirectional stereo (the eyes' circle has radius ipd/2)."""
    stereo_width: int = 1024
    """Width of the stereo panorama; each eye is stereo_width x stereo_width/2, so stereo_tb.png is square."""
    view_size: int = 256
    """Side of the square perspective views (parallax.png) and tour frames."""
    fov_deg: float = 90.0
    """Vertical field of view of the perspective views and the tour, degrees."""
    tour_seconds: float = 2.4
    """Length of tour.mp4 in seconds."""
    tour_fps: float = 15.0
    """Frame rate of tour.mp4."""
    tour_reach: float = 0.5
    """How far the tour and the parallax views move from the centre, as a fraction of the nearest surface distance."""
