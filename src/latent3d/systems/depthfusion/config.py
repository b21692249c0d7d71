"""Settings of a DepthFusion world (``latent3d immersive``); importing this module loads no torch, so the command
line reads its defaults and help from here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from latent3d.ranges import check_config, within
from latent3d.render.depth_modes import DepthMode


@dataclass
class WorldConfig:
    """Settings of :func:`build_world` (each field's docstring is its meaning)."""

    depth_mode: DepthMode = "disparity"
    """How the depth panorama is read: "disparity" (in [0, 1], bright = near, 1/r linear in it; LDM3D/DPT output),
    "linear" (DepthFusion's displacement linear in depth - 0.5) or "metric" (distance along the ray)."""
    strength: float = within(0, 1, 0.5, open_hi=True)
    """Displacement strength in [0, 1): depth 1 moves a vertex to radius/(1+strength), 0 to radius/(1-strength)."""
    radius: float = within(0, 1e4, 4.0, open_lo=True)
    """Radius in metres where depth 0.5 sits (ignored in metric mode)."""
    far: float | None = within(0, 1e6, None, open_lo=True)
    """Metric mode: distance given to sky / missing depth (default: twice the farthest finite point)."""
    sphere_lon: int = within(4, 4096, 256)
    """Sphere segments around (longitude); the mesh has sphere_lon x sphere_lat quads."""
    sphere_lat: int = within(2, 2048, 128)
    """Sphere segments from pole to pole (latitude)."""
    ipd: float = within(0, 1, 0.064)
    """Interpupillary distance in metres for the omnidirectional stereo (the eyes' circle has radius ipd/2)."""
    stereo_width: int = within(4, 16384, 1024)
    """Width of the stereo panorama; each eye is stereo_width x stereo_width/2, so stereo_tb.png is square."""
    view_size: int = within(8, 4096, 256)
    """Side of the square perspective views (parallax.png) and tour frames."""
    fov_deg: float = within(1, 179, 90.0, open_hi=True)
    """Vertical field of view of the perspective views and the tour, degrees."""
    tour_seconds: float = within(0, 600, 2.4, open_lo=True)
    """Length of tour.mp4 in seconds."""
    tour_fps: float = within(0, 240, 15.0, open_lo=True)
    """Frame rate of tour.mp4."""
    tour_reach: float = within(0, 1, 0.5, open_hi=True)
    """How far the tour and the parallax views move from the centre, as a fraction of the nearest surface distance."""

    def __post_init__(self) -> None:
        check_config(self)

    def relations(self) -> Iterator[str]:
        if self.sphere_lon % 2 or self.stereo_width % 2:
            yield f"--resolution and --stereo-width must be even, got {self.sphere_lon} and {self.stereo_width}"
        if 0.5 * self.ipd >= self.radius / (1.0 + self.strength):
            yield (f"--ipd {self.ipd} is wider than the nearest point of the world (radius/(1+strength)); lower --ipd "
                   "or --strength")
