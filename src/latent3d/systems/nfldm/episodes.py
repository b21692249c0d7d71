"""The posed RGB-D episodes NF-LDM trains on (Kim et al. 2023, Sec. 4: one scene per trajectory), read from a folder
of ``transforms.json`` episodes (``latent3d data scenes``, ``latent3d data vizdoom``, or any transforms.json folders
with depth) or from GSN's published VizDoom / Replica episodes (the data NF-LDM trains on;
:mod:`latent3d.data.formats.gsn`), each with its held-out frames and the world box its voxel grid fills."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from latent3d.errors import UserError
from latent3d.systems.nfldm.config import SceneAEConfig


@dataclass
class Episode:
    """One trajectory: its frames, which of them train and which are held out, and its grid's box."""

    name: str  # the episode folder's name
    images: Tensor  # [N, 3, H, W] in [0, 1]
    depths: Tensor  # [N, H, W] z-depth in metres, inf where none
    viewmats: Tensor  # [N, 4, 4] world-to-camera (OpenCV)
    Ks: Tensor  # [N, 3, 3]
    files: list[str]  # each frame's image file name
    train: list[int]  # frame indices encoded and rendered in training
    held: list[int]  # held-out frame indices (i % K == K - 1)
    bbox_min: Tensor  # [3]
    bbox_max: Tensor  # [3]


def episode_folders(data: Path) -> list[Path]:
    """The episode folders under ``data``, sorted: ``data`` itself if it is one, its sub-folders holding a
    transforms.json, else GSN's episodes there (:func:`latent3d.data.formats.gsn.gsn_episode_folders`: one episode,
    a split folder, or GSN's data folder with ``train/``)."""
    from latent3d.data.formats.gsn import gsn_episode_folders

    if (data / "transforms.json").is_file():
        return [data]
    found = sorted(p.parent for p in data.glob("*/transforms.json")) or gsn_episode_folders(data)
    if not found:
        raise UserError(f"--data {data}: no episode folders (DIR/*/transforms.json, or GSN's DIR/train/NN/"
                        "cameras.json); make them with `latent3d data scenes --out DIR` or `latent3d data vizdoom "
                        "--out DIR`")
    return found


def read_episode(folder: Path, data: Path):  # -> TransformsDataset
    """One episode folder: a transforms.json folder, or a GSN episode (``cameras.json``; files kept inside
    ``data``)."""
    from latent3d.data.formats.gsn import read_gsn_episode
    from latent3d.data.formats.transforms_json import read_transforms_dataset

    if not (folder / "transforms.json").is_file() and (folder / "cameras.json").is_file():
        return read_gsn_episode(folder, root=data)
    return read_transforms_dataset(folder)


def scene_box(viewmats: Tensor, cfg: SceneAEConfig) -> tuple[Tensor, Tensor]:  # [N, 4, 4] -> bbox_min, bbox_max [3]
    """The grid's box: ``cfg.box`` (half-size in x and y, then below and above) around the mean camera centre."""
    from latent3d.render.camera import camera_centers

    c = camera_centers(viewmats.double()).mean(0)
    half, below, above = cfg.box
    lo = torch.tensor([c[0] - half, c[1] - half, c[2] - below])
    hi = torch.tensor([c[0] + half, c[1] + half, c[2] + above])
    return lo.float(), hi.float()


def read_episodes(data: str | Path, cfg: SceneAEConfig) -> list[Episode]:
    """Every episode under ``data`` (:func:`episode_folders`) with depth, of one image size, with its frames split by
    ``cfg.holdout``."""
    out = []
    for folder in episode_folders(Path(data)):
        ds = read_episode(folder, Path(data))
        if ds.depths is None:
            raise UserError(f"{folder}: no depth images; the scene auto-encoder trains on RGB-D episodes")
        n = len(ds)
        held = [i for i in range(n) if cfg.holdout and i % cfg.holdout == cfg.holdout - 1]
        train = [i for i in range(n) if i not in held]
        if not train:
            raise UserError(f"{folder}: {n} frame(s), none left to train on with --holdout {cfg.holdout}")
        lo, hi = scene_box(ds.viewmats, cfg)
        out.append(Episode(folder.name, ds.images.permute(0, 3, 1, 2).contiguous(), ds.depths, ds.viewmats, ds.Ks,
                           [p.name for p in ds.image_paths], train, held, lo, hi))  # fmt: skip
    sizes = {tuple(e.images.shape[-2:]) for e in out}
    if len(sizes) > 1:
        raise UserError(f"--data {data}: episodes of several image sizes {sorted(sizes)}; give one size")
    H, W = sizes.pop()
    if H % cfg.downsample or W % cfg.downsample or min(H, W) // cfg.downsample < 4:
        raise UserError(f"--downsample {cfg.downsample} does not divide the {W}x{H} frames into at least 4x4")
    return out


def pooled_depth(depths: Tensor, factor: int) -> Tensor:  # [V, H, W] -> [V, H / f, W / f]
    """Depth at the rendered resolution: the mean of each ``factor x factor`` block where all of it has depth, else
    inf (no target)."""
    if factor == 1:
        return depths
    ok = torch.isfinite(depths) & (depths > 0)
    mean = torch.nn.functional.avg_pool2d(torch.where(ok, depths, 0)[:, None], factor)[:, 0]
    full = torch.nn.functional.avg_pool2d(ok.float()[:, None], factor)[:, 0] == 1
    return torch.where(full, mean, torch.full_like(mean, float("inf")))


def episode_frames(data: str | Path) -> tuple[Tensor, Tensor]:  # -> images [N, 3, H, W] in [0, 1], episode [N]
    """Every frame of every episode under ``data`` and the index of its episode (the classes of
    :func:`latent3d.metrics.scene_features.train_scene_features`)."""
    data = Path(data)
    imgs, labels = [], []
    for k, folder in enumerate(episode_folders(data)):
        ep = read_episode(folder, data)
        imgs.append(ep.images.permute(0, 3, 1, 2))
        labels.append(torch.full((len(ep.images),), k))
    return torch.cat(imgs), torch.cat(labels)
