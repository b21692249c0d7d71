"""The bird's-eye-view semantic map of a VizDoom episode from the map geometry the engine exposes (its sectors and
their lines, ``game.set_sectors_info_enabled``): NF-LDM's BEV conditioning input (Kim et al. 2023, Sec. 4.3) for
latent3d's VizDoom data, in the format of :mod:`latent3d.data.formats.bev`.

Each pixel lies in the sector whose lines enclose it (even-odd rule over the sector's lines; a sector's holes are
its inner lines): "floor" where the player fits under the sector's ceiling, "wall" where not (closed doors,
pillars, raised blocks), and "void" outside every sector; the blocking lines (one-sided walls, impassable railings)
are drawn over it as "wall", at least a pixel wide. "wall" and "void" are solid."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from latent3d.data.formats.bev import BevRaster

PLAYER_HEIGHT = 56.0  # map units (the player fits where ceiling - floor >= this)
CLASSES = ["floor", "wall", "void"]


@dataclass
class Sector:
    """One sector of the map, in map units."""

    floor: float
    ceiling: float
    lines: np.ndarray  # [L, 4] x1, y1, x2, y2
    blocking: np.ndarray  # [L] bool


def read_sectors(sectors: Any) -> list[Sector]:
    """The engine's sector objects (``state.sectors``) as plain arrays."""
    out = []
    for sec in sectors:
        lines = np.array([(ln.x1, ln.y1, ln.x2, ln.y2) for ln in sec.lines], dtype=np.float64).reshape(-1, 4)
        blocking = np.array([bool(ln.is_blocking) for ln in sec.lines], dtype=bool)
        out.append(Sector(float(sec.floor_height), float(sec.ceiling_height), lines, blocking))
    return out


def inside(x: np.ndarray, y: np.ndarray, lines: np.ndarray) -> np.ndarray:  # [N], [N], [L, 4] -> [N] bool
    """Whether each point lies inside the region the segments ``lines`` bound (even-odd rule: a ray towards +x
    crosses them an odd number of times)."""
    x1, y1, x2, y2 = (lines[:, k][None] for k in range(4))
    x, y = x[:, None], y[:, None]
    cross = ((y1 > y) != (y2 > y)) & (x < x1 + (y - y1) * (x2 - x1) / np.where(y2 != y1, y2 - y1, 1.0))
    return cross.sum(1) % 2 == 1


def distance_to_segments(x: np.ndarray, y: np.ndarray, segs: np.ndarray) -> np.ndarray:  # [N], [N], [L, 4] -> [N, L]
    """The distance of each point to each segment."""
    p, d = segs[None, :, :2], segs[None, :, 2:] - segs[None, :, :2]
    q = np.stack([x, y], -1)[:, None]
    t = np.clip(((q - p) * d).sum(-1) / np.maximum((d ** 2).sum(-1), 1e-12), 0.0, 1.0)
    return np.linalg.norm(p + t[..., None] * d - q, axis=-1)


def sectors_bev(sectors: list[Sector], centre: tuple[float, float], half: float, mpp: float,
                metres_per_unit: float) -> BevRaster:  # fmt: skip
    """The BEV map of the square ``centre +- half`` (metres, latent3d's world: map units times ``metres_per_unit``)
    at ``mpp`` metres per pixel (module docstring)."""
    n = int(round(2 * half / mpp))
    lo, hi = (centre[0] - half, centre[1] - half), (centre[0] + half, centre[1] + half)
    gx, gy = np.meshgrid(lo[0] + (np.arange(n) + 0.5) * mpp, hi[1] - (np.arange(n) + 0.5) * mpp)  # row 0 at +y
    ux, uy = gx.ravel() / metres_per_unit, gy.ravel() / metres_per_unit
    cls = np.full(n * n, 3, dtype=np.uint8)  # void
    for sec in sectors:
        box_lo, box_hi = sec.lines.reshape(-1, 2).min(0), sec.lines.reshape(-1, 2).max(0)
        near = (ux >= box_lo[0]) & (ux <= box_hi[0]) & (uy >= box_lo[1]) & (uy <= box_hi[1])
        if len(sec.lines) and near.any():
            sel = np.flatnonzero(near)
            ins = sel[inside(ux[sel], uy[sel], sec.lines)]
            cls[ins] = 1 if sec.ceiling - sec.floor >= PLAYER_HEIGHT else 2
    walls = np.concatenate([s.lines[s.blocking] for s in sectors] or [np.zeros((0, 4))])
    if len(walls):
        reach = 0.75 * mpp / metres_per_unit  # a blocking line covers the pixels within 3/4 of a pixel of it
        for chunk in np.array_split(np.arange(n * n), max(1, n * n * len(walls) // 2_000_000)):
            near_wall = (distance_to_segments(ux[chunk], uy[chunk], walls) < reach).any(1)
            cls[chunk[near_wall]] = 2
    return BevRaster(cls.reshape(n, n), lo, hi, list(CLASSES), ["wall", "void"])
