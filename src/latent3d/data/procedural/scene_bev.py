"""The exact bird's-eye-view semantic map of a procedural scene (:mod:`.scenes`): NF-LDM's BEV conditioning input
(Kim et al. 2023, Sec. 4.3) for latent3d's own episodes, in the format of :mod:`latent3d.data.formats.bev`.

Each pixel is classed by the first primitive a vertical ray from high above meets (the scene's own ray caster,
:func:`.primitives.cast`; a room's ceiling is skipped): a placed object's primitive gives the object's name (its
footprint seen from above: a tree's crown, a house's roof), a background primitive its ground ("floor", "sea",
"road marking" or the place's ground, e.g. "sand"); a room's walls, vertical quads no vertical ray meets, are drawn
from their footprints as "wall"; where nothing lies below, "void" (behind a room's walls). Objects, walls and the
void are solid."""

from __future__ import annotations

import numpy as np
import torch

from latent3d.data.formats.bev import BevRaster
from latent3d.data.procedural.scenes import Scene

BEV_HALF = 12.0  # metres around the trajectory's centre the map covers (the scene box is +-7 m by default)
BEV_MPP = 0.125  # metres per map pixel
GROUND_NAMES = {"outdoor": "grass", "forest": "forest ground", "beach": "sand", "desert": "desert sand",
                "snow": "snow", "street": "road"}  # fmt: skip
_SKIP = ("ceiling",)


def scene_bev(scene: Scene, centre: tuple[float, float], half: float = BEV_HALF, mpp: float = BEV_MPP) -> BevRaster:
    """The BEV map of ``scene`` over the square ``centre +- half`` (metres) at ``mpp`` metres per pixel."""
    from latent3d.data.procedural.primitives import cast

    n = int(round(2 * half / mpp))
    lo, hi = (centre[0] - half, centre[1] - half), (centre[0] + half, centre[1] + half)
    xs = lo[0] + (np.arange(n) + 0.5) * mpp
    ys = hi[1] - (np.arange(n) + 0.5) * mpp  # row 0 at +y
    gx, gy = np.meshgrid(xs, ys)  # [n, n] (rows y, columns x)
    keep = [i for i, p in enumerate(scene.primitives) if p.label not in _SKIP]
    origins = torch.tensor(np.stack([gx.ravel(), gy.ravel(), np.full(n * n, 100.0)], 1), dtype=torch.float64)
    dirs = torch.tensor([[0.0, 0.0, -1.0]], dtype=torch.float64).expand(n * n, 3)
    hit = cast([scene.primitives[i] for i in keep], origins, dirs).index.numpy()
    owner = _part_names(scene)
    names = [owner.get(keep[h], _ground(scene, scene.primitives[keep[h]].label)) if h >= 0 else "void" for h in
             range(-1, len(keep))]  # fmt: skip  # names[h + 1]: the class of hit h (-1: nothing below)
    per_pixel = np.array(names, dtype=object)[hit + 1].reshape(n, n)
    walls = [p for p in scene.primitives if p.label == "wall"]
    for p in walls:
        a, b = (t.numpy() for t in p.aabb())
        on = (gx >= a[0] - mpp / 2) & (gx <= b[0] + mpp / 2) & (gy >= a[1] - mpp / 2) & (gy <= b[1] + mpp / 2)
        per_pixel[on] = "wall"
    classes = sorted(set(per_pixel.ravel()))
    index = np.searchsorted(np.array(classes), per_pixel).astype(np.uint8) + 1
    solid = sorted({o["name"] for o in scene.objects} | {"wall", "void"})
    return BevRaster(index, lo, hi, classes, [c for c in solid if c in classes])


def _part_names(scene: Scene) -> dict[int, str]:
    """Primitive index -> the name of the placed object it belongs to."""
    return {i: o["name"] for o in scene.objects for i in range(*o["parts"])}


def _ground(scene: Scene, label: str) -> str:
    return GROUND_NAMES.get(scene.kind, label) if label == "ground" else label
