"""Bird's-eye-view semantic maps of posed episodes: the input of NF-LDM's BEV-conditioned scene synthesis (Kim et al.
2023, Sec. 4.3 applications: psi_c and psi_f attend to a BEV segmentation map).

An episode folder (a transforms.json folder, :mod:`latent3d.data.formats.transforms_json`) may hold ``bev.png``, an
8-bit palette PNG whose pixel values index classes listed in transforms.json under ``latent3d.bev``::

    "bev": {"file": "bev.png", "min": [x0, y0], "max": [x1, y1], "classes": ["floor", "wall", ...],
            "solid": ["wall", ...]}

The raster covers the world rectangle ``min .. max`` (metres, the z-up world of the episode's cameras) with row 0 at
``max`` y (north up) and column 0 at ``min`` x, the orientation of every top-down image latent3d writes; value 0 is
*unknown*, value ``k`` is ``classes[k - 1]``; ``solid`` lists the classes a camera cannot stand in (objects, walls).
``latent3d data scenes`` writes the exact footprints of its procedural scenes, ``latent3d data vizdoom`` the map's
sectors and walls; the palette only serves viewing (:func:`class_color`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from latent3d.errors import UserError

BEV_FILE = "bev.png"
MAX_CLASSES = 255
_NAMED = {"unknown": (0, 0, 0), "floor": (200, 190, 160), "wall": (60, 60, 70), "void": (20, 20, 110),
          "ground": (120, 170, 80), "sea": (40, 100, 200), "road marking": (240, 240, 230), "tree": (30, 110, 40),
          "house": (190, 90, 60), "car": (220, 30, 30), "rock": (120, 120, 120)}  # fmt: skip


def class_color(name: str) -> tuple[int, int, int]:
    """The display colour of a class: a fixed colour for common names, else a shade of the colour of its last word
    (or of grey) derived from the name's hash."""
    if name in _NAMED:
        return _NAMED[name]
    return _shade(_NAMED.get(name.split(" ")[-1], (128, 128, 128)), name)


def _shade(rgb: tuple[int, int, int], name: str) -> tuple[int, int, int]:
    h = hashlib.sha256(name.encode()).digest()
    return tuple(int(np.clip(c + (b - 128) * 0.8, 16, 250)) for c, b in zip(rgb, h[:3]))  # type: ignore[return-value]


def grid_to_image(a: np.ndarray) -> np.ndarray:  # [..., X, Y] -> [..., Y, X], row 0 at +y
    """A grid indexed (x, y) as a top-down image: rows from +y down, columns from -x."""
    return np.flip(np.swapaxes(a, -1, -2), -2)


def image_to_grid(a: np.ndarray) -> np.ndarray:  # [..., Y, X] row 0 at +y -> [..., X, Y]
    """The inverse of :func:`grid_to_image`."""
    return np.swapaxes(np.flip(a, -2), -1, -2)


@dataclass
class BevRaster:
    """One episode's BEV map (module docstring)."""

    index: np.ndarray  # [H, W] uint8: 0 unknown, k = classes[k - 1]; row 0 at max y
    lo: tuple[float, float]  # x, y of the raster's left and bottom edges (metres)
    hi: tuple[float, float]  # x, y of its right and top edges
    classes: list[str]
    solid: list[str]

    def meta(self) -> dict[str, Any]:
        return {"file": BEV_FILE, "min": [float(v) for v in self.lo], "max": [float(v) for v in self.hi],
                "classes": list(self.classes), "solid": list(self.solid)}  # fmt: skip

    def fractions(self, lo: tuple[float, float], hi: tuple[float, float], X: int, Y: int, vocab: list[str],
                  sub: int = 4) -> np.ndarray:  # fmt: skip  # -> [K, X, Y] float32
        """The share of each class of ``vocab`` in each cell of an ``X x Y`` grid over the rectangle ``lo .. hi``
        (cell ``(i, j)``: x index i, y index j), from ``sub x sub`` nearest samples of the raster per cell; unknown
        pixels, pixels outside the raster and classes not in ``vocab`` count for no class (an all-zero column)."""
        H, W = self.index.shape
        xs = lo[0] + (np.arange(X * sub) + 0.5) / (X * sub) * (hi[0] - lo[0])
        ys = lo[1] + (np.arange(Y * sub) + 0.5) / (Y * sub) * (hi[1] - lo[1])
        col = np.floor((xs - self.lo[0]) / (self.hi[0] - self.lo[0]) * W).astype(np.int64)
        row = np.floor((self.hi[1] - ys) / (self.hi[1] - self.lo[1]) * H).astype(np.int64)
        inside = (col >= 0)[:, None] & (col < W)[:, None] & (row >= 0)[None] & (row < H)[None]
        idx = self.index[row.clip(0, H - 1)[None, :], col.clip(0, W - 1)[:, None]]  # [X sub, Y sub]
        idx = np.where(inside, idx, 0)
        lut = np.array([-1] + [vocab.index(c) if c in vocab else -1 for c in self.classes])
        k = lut[idx]  # [X sub, Y sub] vocab index or -1
        onehot = (k[None] == np.arange(len(vocab))[:, None, None]).astype(np.float32)
        return onehot.reshape(len(vocab), X, sub, Y, sub).mean(axis=(2, 4))


def write_bev_png(path: str | Path, index: np.ndarray, classes: list[str]) -> Path:  # index [H, W] uint8
    """An index map as an 8-bit palette PNG (value k drawn in ``classes[k - 1]``'s colour, 0 black), atomically."""
    from PIL import Image

    from latent3d.io.atomic import atomic_path

    if len(classes) > MAX_CLASSES:
        raise ValueError(f"{len(classes)} classes: a BEV map holds at most {MAX_CLASSES}")
    pal = [0, 0, 0] + [c for name in classes for c in class_color(name)]
    img = Image.fromarray(np.ascontiguousarray(index, dtype=np.uint8), mode="P")
    img.putpalette(pal + [0] * (768 - len(pal)))
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")
    return Path(path)


def read_episode_bev(folder: str | Path) -> BevRaster | None:
    """The BEV map of an episode folder (None when its transforms.json names none); a damaged entry or file is one
    UserError line, and the file must lie inside the folder."""
    from latent3d.io.image import read_pil_array
    from latent3d.io.manifest import number, read_json, resolve_inside

    folder = Path(folder)
    path = folder / "transforms.json"
    fix = "rewrite the episode with `latent3d data scenes` / `latent3d data vizdoom`"
    doc = read_json(path, fix)
    meta = doc.get("latent3d", {}).get("bev") if isinstance(doc, dict) and isinstance(doc.get("latent3d"), dict) \
        else None  # fmt: skip
    if meta is None:
        return None
    if not isinstance(meta, dict):
        raise UserError(f"{path}: latent3d.bev must be an object; {fix}")
    box = []
    for key in ("min", "max"):
        v = meta.get(key)
        if not isinstance(v, list) or len(v) != 2:
            raise UserError(f"{path}: latent3d.bev.{key} must be two numbers (x, y); {fix}")
        box.append(tuple(number(x, f"latent3d.bev.{key}", path) for x in v))
    lo, hi = box
    if not (hi[0] > lo[0] and hi[1] > lo[1]):
        raise UserError(f"{path}: latent3d.bev.max {list(hi)} must exceed min {list(lo)} in x and y; {fix}")
    classes, solid = meta.get("classes"), meta.get("solid", [])
    for name, v in (("classes", classes), ("solid", solid)):
        if not isinstance(v, list) or not all(isinstance(c, str) and c for c in v) or len(v) > MAX_CLASSES:
            raise UserError(f"{path}: latent3d.bev.{name} must be a list of at most {MAX_CLASSES} class names; {fix}")
    arr, mode = read_pil_array(resolve_inside(folder, meta.get("file"), "BEV map", path), what="BEV map")
    if mode not in ("P", "L") or arr.ndim != 2:
        raise UserError(f"{path}: the BEV map must be an 8-bit palette or grey PNG of class indices, got mode {mode}")
    if int(arr.max()) > len(classes):
        raise UserError(f"{path}: the BEV map holds class index {int(arr.max())}, but only {len(classes)} classes "
                        f"are listed; {fix}")
    return BevRaster(arr.astype(np.uint8), lo, hi, list(classes), [c for c in solid if c in classes])
