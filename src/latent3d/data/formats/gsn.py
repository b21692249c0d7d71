"""GSN's published VizDoom and Replica episodes (apple/ml-gsn, DeVries et al., ICCV 2021; the data NeuralField-LDM,
arXiv 2304.09787, trains on), read as latent3d posed RGB-D datasets.

Layout (``datasets/vizdoom.py``, ``datasets/replica.py`` of apple/ml-gsn)::

    ROOT/<split>/<NN>/cameras.json     a list, one entry per frame: {"Rt": 4x4, "K": 3x3 or 4x4}
    ROOT/<split>/<NN>/000_rgb.png      frame i is str(i).zfill(3) + "_rgb.png"
    ROOT/<split>/<NN>/000_depth.png    VizDoom: the engine's depth buffer
    ROOT/<split>/<NN>/000_depth.tiff   Replica: float depth

What GSN's loaders do, and this reader with them:

- ``Rt`` is world-to-camera with OpenGL camera axes (the camera looks down -z, y up; GSN's ray bundle uses
  ``(x, y, -1)`` directions through ``Rt.inverse()``, ``models/nerf_utils.py``; "Forward is -z",
  ``utils/camera_trajectory.py``). GSN's world is **y-up**: its scene latents are a 2D grid over world x and z
  ("no y dimension", ``models/generator.py``) and its rotation augmentation turns about y
  (``datasets/dataset_utils.py``). :func:`gsn_viewmat` is the one conversion to latent3d's OpenCV viewmats in a
  z-up world (``(x, y, z)_GSN -> (x, -z, y)``, :data:`GSN_TO_WORLD`; as ``latent3d data scenes`` / ``vizdoom``).
- ``K``: only ``K[0, 0]`` and ``K[1, 1]`` are used, as magnitudes (GSN's ray bundle takes ``fy = -fx`` by default,
  "opposing polarity": a sign there says y is up, which ``Rt``'s OpenGL axes already say); GSN's rays put the
  principal point at the image centre. VizDoom
  focal lengths are given for 480 pixels and scaled by ``img_res / 480``; Replica's are in half image widths
  (scaled by ``256 / tan(45 deg)`` for 512 pixels, then by ``img_res / 512``). ``img_res`` is the image's shorter
  side (torchvision ``Resize(img_res)``): ``f_px = K * min(H, W) / k_size`` with ``k_size`` 480 (VizDoom) or 2
  (Replica); principal point ``(W / 2, H / 2)`` in latent3d's convention (pixel centres at +0.5).
- Depth: VizDoom ``depth / 14 * 100`` ("game engine units to real world units": map units, the unit of ``Rt``'s
  translation; ViZDoom issue #192: "100 in game units is approximately 14 depth buffer"); Replica ``depth * 1000``
  (GSN's code multiplies, it does not divide). The units follow from GSN's configs
  (``configs/models/gsn_*_config.yaml``): VizDoom ``voxel_size: 50``, ``far: 800`` (map units), Replica
  ``voxel_size: 0.6``, ``far: 8`` (metres). Both are then scaled to metres by ``metres_per_unit``: VizDoom 1/32
  (latent3d's VizDoom recorder scale, 56-unit player = 1.75 m), Replica 1. Translations are scaled by the same
  factor, so poses and depths agree. Depth 0, the 8-bit maximum 255 (the engine's sky / out of range) and
  non-finite values are ``inf`` (no depth).

Every file stays inside ``ROOT`` (a symbolic link out of it is refused); every bad byte, bad JSON value or
mismatched size is one :class:`~latent3d.errors.UserError` line.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from latent3d.data.formats.transforms_json import TransformsDataset
from latent3d.errors import UserError

GSNKindName = Literal["auto", "vizdoom", "replica"]
_FIX = "pass GSN's data folder (ROOT/<split>/<NN>/cameras.json with NNN_rgb.png and NNN_depth.png or .tiff)"


@dataclass(frozen=True)
class GSNKind:
    """How one of GSN's datasets stores intrinsics and depth (module docstring)."""

    k_size: float  # the image side (pixels) the stored focal lengths are for
    depth_suffix: str  # "_depth.png" or "_depth.tiff"
    depth_to_units: float  # GSN's factor from the stored depth value to the unit of Rt's translation
    metres_per_unit: float  # latent3d metres per unit of Rt's translation


KINDS = {
    "vizdoom": GSNKind(480.0, "_depth.png", 100.0 / 14.0, 1.0 / 32.0),
    "replica": GSNKind(2.0, "_depth.tiff", 1000.0, 1.0),
}
# GSN's y-up world -> latent3d's z-up world (a rotation about x by +90 degrees): p_latent3d = GSN_TO_WORLD @ p_GSN
GSN_TO_WORLD = np.array([[1.0, 0, 0, 0], [0, 0, -1.0, 0], [0, 1.0, 0, 0], [0, 0, 0, 1.0]])


def list_gsn_episodes(root: str | os.PathLike, split: str = "train") -> list[Path]:
    """The episode folders of ``root/split`` (sub-folders holding a ``cameras.json``), in numeric-then-name order;
    a symbolic link leading out of ``root`` is refused."""
    root = Path(root)
    if not isinstance(split, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", split) or split in (".", ".."):
        raise UserError(f"split {split!r} must be a plain folder name (train, test, ...)")
    base = root / split
    if not base.is_dir():
        raise UserError(f"{base}: no such folder; {_FIX}")
    eps = _episodes_in(base, root)
    if not eps:
        raise UserError(f"{base}: no episode folder with a cameras.json inside; {_FIX}")
    return eps


def gsn_episode_folders(path: str | os.PathLike, split: str = "train") -> list[Path]:
    """The GSN episodes at ``path``: ``path`` itself when it holds a ``cameras.json`` (one episode), its sub-folders
    holding one (a split folder, ``ROOT/train``), else those of ``path/split`` (GSN's data folder); [] when ``path``
    is none of these. Nothing below ``path`` may link out of it."""
    path = Path(path)
    if (path / "cameras.json").is_file():
        return [path]
    found = _episodes_in(path, path) if path.is_dir() else []
    if found or not (path / split).is_dir():
        return found
    return list_gsn_episodes(path, split)


def _episodes_in(base: Path, root: Path) -> list[Path]:
    """Sub-folders of ``base`` holding a ``cameras.json``, in numeric-then-name order (links checked first)."""
    from latent3d.io.files import walk_inside

    walk_inside(base, root)
    eps = [p for p in base.iterdir() if p.is_dir() and (p / "cameras.json").is_file()]
    return sorted(eps, key=lambda p: (not p.name.isdigit(), int(p.name) if p.name.isdigit() else 0, p.name))


def read_gsn_episode(
    folder: str | os.PathLike,
    root: str | os.PathLike | None = None,
    kind: GSNKindName = "auto",
    first: int = 0,
    count: int | None = None,
    metres_per_unit: float | None = None,
) -> TransformsDataset:
    """One GSN episode as a :class:`~latent3d.data.formats.transforms_json.TransformsDataset` (OpenCV viewmats,
    K in pixels of the stored images, depth in metres; frames ``first .. first + count - 1``; GSN's VizDoom loader
    skips the first 50, in which the agent stands still). ``kind`` "auto" follows the depth files (``.png``:
    VizDoom, ``.tiff``: Replica); ``metres_per_unit`` overrides the kind's scale (module docstring). Files must
    resolve inside ``root`` (default: the folder's grandparent, GSN's data folder)."""
    from latent3d.io.manifest import read_json

    folder = Path(folder)
    root = Path(root) if root is not None else folder.parent.parent
    jpath = _inside(folder / "cameras.json", root)
    cams = read_json(jpath, _FIX)
    if not isinstance(cams, list) or not cams or not all(isinstance(c, dict) for c in cams):
        raise UserError(f"{jpath}: must be a non-empty list of per-frame objects with 'Rt' and 'K'; {_FIX}")
    stop = len(cams) if count is None else first + count
    if not (isinstance(first, int) and 0 <= first < stop <= len(cams)):
        raise UserError(f"{jpath}: frames {first}..{stop - 1} requested, the episode has {len(cams)} "
                        f"(0..{len(cams) - 1})")
    k = KINDS[_kind(folder, kind)]
    scale = k.metres_per_unit if metres_per_unit is None else float(metres_per_unit)
    if not (np.isfinite(scale) and scale > 0):
        raise UserError(f"metres_per_unit must be a positive number, got {metres_per_unit!r}")
    images, depths, viewmats, Ks, paths = [], [], [], [], []
    for i in range(first, stop):
        rgb, ip = _read_rgb(folder, i, root)
        h, w = rgb.shape[:2]
        if images and rgb.shape != images[0].shape:
            raise UserError(f"{ip}: image size {w}x{h} differs from frame {first}'s; GSN episodes have one size")
        images.append(rgb)
        paths.append(ip)
        depths.append(_read_depth(folder, i, root, k, scale, (h, w)))
        viewmats.append(gsn_viewmat(cams[i].get("Rt"), scale, f"{jpath} frame {i}"))
        Ks.append(_intrinsics(cams[i].get("K"), k.k_size, w, h, f"{jpath} frame {i}"))
    has_depth = any(d is not None for d in depths)
    full = [d if d is not None else np.full(images[0].shape[:2], np.inf, np.float32) for d in depths]
    return TransformsDataset(
        images=torch.from_numpy(np.stack(images)),
        depths=torch.from_numpy(np.stack(full)) if has_depth else None,
        masks=None,
        viewmats=torch.stack(viewmats),
        Ks=torch.stack(Ks),
        captions=None,
        image_paths=paths,
        root=folder,
    )


def _inside(path: Path, root: Path) -> Path:
    """``path`` if it resolves (links followed) inside ``root``, else one UserError."""
    from latent3d.io.files import is_inside

    if not is_inside(path, os.path.realpath(root)):
        raise UserError(f"{path}: resolves to {os.path.realpath(path)}, outside the dataset folder {root}; refused "
                        "(copy the files into the dataset instead)")
    return path


def _kind(folder: Path, kind: str) -> str:
    if kind in KINDS:
        return kind
    if kind != "auto":
        raise UserError(f"kind {kind!r} must be auto, vizdoom or replica")
    names = {p.name for p in folder.iterdir()} if folder.is_dir() else set()
    if any(n.endswith("_depth.tiff") for n in names):
        return "replica"
    return "vizdoom"  # _depth.png, or no depth at all (VizDoom's K convention then)


def _read_rgb(folder: Path, i: int, root: Path) -> tuple[np.ndarray, Path]:  # -> [H, W, 3] float32 in [0, 1]
    from latent3d.io.image import read_pil_array

    path = _inside(folder / f"{i:03d}_rgb.png", root)
    arr, _ = read_pil_array(path, "RGB", f"RGB image of frame {i}")
    return arr.astype(np.float32) / 255.0, path


def _read_depth(folder: Path, i: int, root: Path, k: GSNKind, scale: float,
                hw: tuple[int, int]) -> np.ndarray | None:  # -> [H, W] float32 metres, inf = none; None = no file
    from latent3d.io.image import read_pil_array

    path = folder / f"{i:03d}{k.depth_suffix}"
    if not os.path.lexists(path):
        return None
    arr, mode = read_pil_array(_inside(path, root), None, f"depth map of frame {i}")
    if arr.ndim != 2 or mode not in ("L", "I", "I;16", "I;16B", "I;16L", "F"):
        raise UserError(f"{path}: a depth map must be one greyscale channel (8/16/32-bit or float), got PIL mode "
                        f"{mode!r}")
    if arr.shape != hw:
        raise UserError(f"{path}: depth is {arr.shape[1]}x{arr.shape[0]}, its image {hw[1]}x{hw[0]}")
    raw = arr.astype(np.float64)
    bad = ~np.isfinite(raw) | (raw <= 0) | ((raw == 255) if mode == "L" else False)
    metres = np.where(bad, 0.0, raw) * (k.depth_to_units * scale)
    return np.where(bad, np.inf, metres).astype(np.float32)


def _matrix(value: Any, shapes: tuple[tuple[int, int], ...], what: str, name: str) -> np.ndarray:
    try:
        a = np.asarray(value, dtype=np.float64)
    except (ValueError, TypeError, OverflowError):
        a = np.zeros(0)
    if a.shape not in shapes:
        want = " or ".join(f"{r}x{c}" for r, c in shapes)
        raise UserError(f"{what}: '{name}' must be a {want} list of numbers, got {value!r:.80}")
    if not np.isfinite(a).all():
        raise UserError(f"{what}: '{name}' has non-finite entries")
    return a


def gsn_viewmat(Rt: Any, scale: float, what: str = "Rt") -> torch.Tensor:  # -> [4, 4] float32 world-to-camera
    """GSN's OpenGL world-to-camera ``Rt`` (4x4 or 3x4 nested lists, translation in GSN's units, y-up world) -> an
    OpenCV viewmat in metres (``scale`` metres per unit) in latent3d's z-up world: the one place where GSN's axes
    and units become latent3d's (module docstring). A bad matrix is one UserError naming ``what``."""
    from latent3d.render.camera import rigid_inverse, viewmats_from_nerfstudio
    from latent3d.render.camera_checks import check_pose

    a = _matrix(Rt, ((4, 4), (3, 4)), what, "Rt")
    if a.shape == (3, 4):
        a = np.concatenate([a, [[0.0, 0.0, 0.0, 1.0]]])
    a[:3, 3] *= scale
    a = check_pose(a, what)
    c2w = torch.from_numpy(GSN_TO_WORLD) @ rigid_inverse(torch.from_numpy(a))  # OpenGL camera-to-world, z up
    return viewmats_from_nerfstudio(c2w[None].float())[0]


def _intrinsics(K: Any, k_size: float, w: int, h: int, what: str) -> torch.Tensor:  # -> [3, 3] float32 pixels
    """GSN's rule: focal lengths ``|K[0,0]|, |K[1,1]|`` scaled by ``min(H, W) / k_size``; principal point at the
    image centre (module docstring)."""
    from latent3d.render.camera_checks import check_intrinsics

    a = _matrix(K, ((3, 3), (4, 4)), what, "K")
    s = min(w, h) / k_size
    fx, fy = abs(a[0, 0]) * s, abs(a[1, 1]) * s
    check_intrinsics(fx, fy, 0.5 * w, 0.5 * h, w, h, what)
    return torch.tensor([[fx, 0.0, 0.5 * w], [0.0, fy, 0.5 * h], [0.0, 0.0, 1.0]], dtype=torch.float32)
