"""NF-LDM's BEV-conditioned synthesis (Kim et al. 2023, Sec. 4.3 applications; design.md: "BEV-map conditioning by
cross-attention"): psi_c and psi_f attend to tokens of a bird's-eye-view semantic map of the scene box.

A map enters the denoisers as class fractions ``bev [K, X, Y]`` over the scene grid's X x Y columns (cell ``(i,
j)``: x index i, y index j; each column sums to 1 where the map is known and to 0 where it is not: the empty map,
all zeros, is the unconditional input the models also train on). Training maps come from the episodes' ``bev.png``
(:mod:`latent3d.data.formats.bev`) resampled into each episode's scene box; a user's map is a PNG in the model's
class colours covering the box (row 0 at +y, column 0 at -x: the orientation of ``bev.png`` and of every sample's
``bev_map.png``, which reads back as the same map), or an episode folder. :class:`BevEncoder` turns the fractions
into tokens; :func:`bev_agreement` measures whether a scene follows its map.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from latent3d.errors import UserError
from latent3d.systems.nfldm.config import SceneAEConfig

MAP_PIXELS_PER_CELL = 8  # bev_map.png: pixels per grid column on each side
COLOR_TOLERANCE = 20  # a map pixel within this (max over R, G, B) of a class colour is that class
UNSEEN = ("void",)  # map classes no camera sees (bev_agreement leaves them out)
SOLID_SHARE = 0.25  # a cell is solid where solid classes cover more than this share of it (thin walls count)
SOLID_BAND = (-1.0, 0.5)  # metres around the eye height whose density makes a column solid (bev_agreement)


@dataclass
class BevVocabulary:
    """The classes a model's maps are made of (index k of ``bev``'s first axis) and which of them are solid."""

    classes: list[str]
    solid: list[str]

    def colors(self) -> np.ndarray:  # -> [K, 3] uint8, distinct, none black
        """Each class's map colour (:func:`latent3d.data.formats.bev.class_color`), nudged until all differ from each
        other and from black (unknown) by more than twice :data:`COLOR_TOLERANCE`."""
        from latent3d.data.formats.bev import class_color

        out: list[np.ndarray] = [np.zeros(3, dtype=np.int64)]
        for name in self.classes:
            c, k = np.array(class_color(name), dtype=np.int64), 0
            while any(np.abs(c - o).max() <= 2 * COLOR_TOLERANCE for o in out):
                k += 1
                if k > 10_000:
                    raise ValueError(f"no free map colour for class {name!r} among {len(self.classes)} classes")
                c = np.array(class_color(f"{name}#{k}"), dtype=np.int64)
            out.append(c)
        return np.stack(out[1:]).astype(np.uint8)

    def solid_mask(self) -> Tensor:  # [K] bool
        return torch.tensor([c in self.solid for c in self.classes], dtype=torch.bool)

    def legend(self) -> str:
        return ", ".join(f"{n} #{''.join(f'{v:02x}' for v in c)}" for n, c in zip(self.classes, self.colors()))


def dataset_bevs(data: Path, names: list[str], sae: SceneAEConfig, X: int, Y: int) -> tuple[Tensor, BevVocabulary]:
    """The maps of the named episodes under ``data`` in their scene boxes (``[N, K, X, Y]``) and their vocabulary
    (every class of any episode, sorted); an episode without a map is one UserError line."""
    from latent3d.data.formats.bev import read_episode_bev
    from latent3d.systems.nfldm.episodes import episode_folders, read_episode, scene_box

    folders = {f.name: f for f in episode_folders(data)}
    rasters, boxes = [], []
    for name in names:
        if name not in folders:
            raise UserError(f"{data}: episode {name!r} of the latents is missing; put it back")
        raster = read_episode_bev(folders[name])
        if raster is None:
            raise UserError(f"{folders[name]}: no BEV map (bev.png); --bev trains on episodes written by `latent3d "
                            "data scenes` or `latent3d data vizdoom`")  # fmt: skip
        rasters.append(raster)
        boxes.append(scene_box(read_episode(folders[name], data).viewmats, sae))
    vocab = BevVocabulary(sorted({c for r in rasters for c in r.classes}),
                          sorted({c for r in rasters for c in r.solid}))
    maps = [r.fractions(tuple(lo[:2].tolist()), tuple(hi[:2].tolist()), X, Y, vocab.classes)
            for r, (lo, hi) in zip(rasters, boxes)]  # fmt: skip
    return torch.from_numpy(np.stack(maps)), vocab


def read_bev(source: Path, vocab: BevVocabulary, sae: SceneAEConfig, X: int, Y: int) -> Tensor:  # -> [K, X, Y]
    """A map for ``latent3d scene --bev``: an episode folder (its bev.png in its scene box) or a PNG in the classes'
    colours covering the model's box (module docstring); a pixel of no class colour is one UserError line listing
    the legend."""
    from latent3d.data.formats.bev import BevRaster, read_episode_bev
    from latent3d.io.image import read_pil_array
    from latent3d.systems.nfldm.episodes import read_episode, scene_box

    if source.is_dir():
        if not (source / "transforms.json").is_file():
            raise UserError(f"--bev {source}: not an episode folder (no transforms.json); give a PNG map or an "
                            "episode folder")  # fmt: skip
        raster = read_episode_bev(source)
        if raster is None:
            raise UserError(f"--bev {source}: the episode has no BEV map (bev.png in its transforms.json)")
        lo, hi = scene_box(read_episode(source, source.parent).viewmats, sae)
        return torch.from_numpy(raster.fractions(tuple(lo[:2].tolist()), tuple(hi[:2].tolist()), X, Y, vocab.classes))
    rgb = read_pil_array(source, "RGB", what="BEV map")[0].astype(np.int64)  # [H, W, 3]
    palette = np.concatenate([np.zeros((1, 3), np.int64), vocab.colors().astype(np.int64)])  # 0: unknown (black)
    dist = np.abs(rgb[:, :, None] - palette[None, None]).max(-1)  # [H, W, K + 1]
    index, near = dist.argmin(-1), dist.min(-1) <= COLOR_TOLERANCE
    if not near.all():
        y, x = np.argwhere(~near)[0]
        raise UserError(f"--bev {source}: pixel ({x}, {y}) has colour {tuple(rgb[y, x].tolist())}, no class of this "
                        f"model; paint with black (unknown) or: {vocab.legend()}")  # fmt: skip
    raster = BevRaster(index.astype(np.uint8), (0.0, 0.0), (1.0, 1.0), vocab.classes, vocab.solid)
    return torch.from_numpy(raster.fractions((0.0, 0.0), (1.0, 1.0), X, Y, vocab.classes))


def bev_map_image(bev: Tensor, vocab: BevVocabulary) -> np.ndarray:  # [K, X, Y] -> [Y s, X s, 3] uint8
    """A map as the PNG ``latent3d scene --bev`` reads: each column's majority class colour (black where unknown),
    :data:`MAP_PIXELS_PER_CELL` pixels a side, row 0 at +y."""
    from latent3d.data.formats.bev import grid_to_image

    colors = np.concatenate([np.zeros((1, 3), np.uint8), vocab.colors()])
    known = bev.sum(0) > 0.5
    idx = torch.where(known, bev.argmax(0) + 1, 0).numpy()  # [X, Y]
    img = colors[grid_to_image(idx)]
    s = MAP_PIXELS_PER_CELL
    return np.ascontiguousarray(img.repeat(s, axis=0).repeat(s, axis=1))


def _positions(side: int, dim: int) -> Tensor:  # -> [side * side, dim]
    """Fixed 2-D sinusoidal positions of a ``side x side`` token grid (row-major over x then y): half the channels
    encode the x index, half the y index (:func:`latent3d.nets.unet3d.noise_features`)."""
    from latent3d.nets.unet3d import noise_features

    f = noise_features(torch.arange(side, dtype=torch.float32), dim // 2, max_period=100.0)  # [side, dim / 2]
    return torch.cat([f[:, None].expand(side, side, -1), f[None].expand(side, side, -1)], -1).reshape(side * side, -1)


class BevEncoder(nn.Module):
    """A map's tokens for cross-attention (NF-LDM Sec. 4.3): ``bev [B, K, X, Y] -> [B, T * T, D]`` by a 3x3 conv,
    SiLU and a ``s x s`` conv of stride ``s = X / T`` (one token per ``s x s`` columns), plus each token's fixed 2-D
    position. The denoisers' inputs carry their own cells' coordinates (:func:`coordinates`), so that attention can
    match a cell to the tokens of its place."""

    def __init__(self, classes: int, width: int, size: int, tokens: int):
        super().__init__()
        s = max(1, size // tokens)
        self.conv1, self.conv2 = nn.Conv2d(classes, width, 3, padding=1), nn.Conv2d(width, width, s, stride=s)
        self.register_buffer("pos", _positions(size // s, width), persistent=False)

    def forward(self, bev: Tensor) -> Tensor:  # [B, K, X, Y] -> [B, L, D]
        h = self.conv2(F.silu(self.conv1(bev)))
        return h.flatten(2).transpose(1, 2) + self.pos.to(h.dtype)


def coordinates(x: Tensor) -> Tensor:  # [B, C, X, Y] -> [B, C + 2, X, Y]
    """``x`` with two channels more: each cell's x and y position in [-1, 1]."""
    B, _, X, Y = x.shape
    gx = torch.linspace(-1, 1, X, device=x.device, dtype=x.dtype)[:, None].expand(X, Y)
    gy = torch.linspace(-1, 1, Y, device=x.device, dtype=x.dtype)[None].expand(X, Y)
    return torch.cat([x, torch.stack([gx, gy])[None].expand(B, 2, X, Y)], dim=1)


def solid_columns(density: Tensor, z0: float, z1: float, eye_z: float) -> Tensor:  # [X, Y, Z] -> [X, Y]
    """The opacity of each column of a grid spanning heights ``z0 .. z1`` within :data:`SOLID_BAND` of the eye
    height ``eye_z``: ``1 - exp(-sum sigma dz)`` over the band's voxels (what stands where a walker would be)."""
    Z = density.shape[-1]
    zc = z0 + (torch.arange(Z, dtype=torch.float32) + 0.5) * (z1 - z0) / Z
    band = (zc >= eye_z + SOLID_BAND[0]) & (zc <= eye_z + SOLID_BAND[1])
    return 1 - torch.exp(-(density.clamp_min(0) * band.to(density)).sum(-1) * (z1 - z0) / Z)


def bev_agreement(opacity: Tensor, bev: Tensor, vocab: BevVocabulary) -> float:
    """How well a scene's column opacity (``opacity [X, Y]``, :func:`solid_columns`) tells its map's solid cells
    (``bev [K, X, Y]``: solid classes over :data:`SOLID_SHARE` of the cell) from its free ones, over the cells the
    map knows: the area under the ROC curve, the probability that a solid cell's column is more opaque than a free
    cell's (ties count half; 0.5: no relation, 1: every solid cell more opaque). Cells of :data:`UNSEEN` classes
    (outside the map or behind a room's walls: no camera sees them, so no scene is held to anything there) are left
    out. NaN when the map has no solid or no free cell."""
    unseen = torch.tensor([c in UNSEEN for c in vocab.classes], dtype=torch.bool)
    known = (bev.sum(0) > 0.5) & ~(bev[unseen].sum(0) > 0.5)
    want = bev[vocab.solid_mask()].sum(0) > SOLID_SHARE
    pos, neg = opacity[known & want], opacity[known & ~want]
    if not len(pos) or not len(neg):
        return float("nan")
    diff = pos[:, None] - neg[None]
    return float(((diff > 0).float() + 0.5 * (diff == 0).float()).mean())


def trajectory_fit(trajectory: Tensor, bev: Tensor, solid: Tensor) -> Tensor:  # [M, K, 5], [M, K', X, Y], [K'] -> [M]
    """The share of each trajectory's poses (:func:`~latent3d.systems.nfldm.scene_diffusion.encode_poses` units: x, y
    in [-1, 1] across the box) that stand on a cell of its map that is known and not solid."""
    M, _, X, Y = bev.shape
    i = ((trajectory[..., 0] + 1) / 2 * X).floor().long().clamp(0, X - 1)  # [M, K]
    j = ((trajectory[..., 1] + 1) / 2 * Y).floor().long().clamp(0, Y - 1)
    free = (bev.sum(1) > 0.5) & (bev[:, solid.to(bev.device)].sum(1) < 0.5)  # [M, X, Y]
    return free[torch.arange(M, device=bev.device)[:, None], i, j].float().mean(1)
