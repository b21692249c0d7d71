"""Multi-view object datasets on disk (many objects, posed views + foreground masks each), the training data of
3DVADER (AutoDecoding Latent 3D Diffusion Models, arXiv 2307.05445, Sec. 3 / supplement B: posed views and masks per
object): :class:`ObjectViews`, its writers (one object folder each) and the readers of the folders users bring.
latent3d's own rendered sets are made by :mod:`latent3d.data.procedural.object_sets`.

Layouts, detected per object folder (``DIR/<object_id>/``):

**SRN / pixelNeRF** (ShapeNet-SRN cars and chairs, SSDNeRF's ABO tables)::

    DIR/<id>/rgb/NNNNNN.png     RGB (or RGBA), white background
    DIR/<id>/pose/NNNNNN.txt    16 numbers, row-major 4x4 camera-to-world, OpenCV camera axes (x right, y down, z fwd)
    DIR/<id>/intrinsics.txt     "f cx cy 0" / grid barycentre "x y z" / scale / "H W" (SRN's parse_intrinsics)
    DIR/<id>/mask/NNNNNN.png    latent3d extension, optional: 8-bit, > 127 = foreground
    DIR/<id>/caption.txt        latent3d extension, optional: one caption for the object ("a red chair")

The intrinsics are for an H x W image; a png of another size scales f, cx, cy by png_width / W and png_height / H
(the principal point of SRN data is the image centre, i.e. pixel centres at +0.5, latent3d's convention). SRN's
optional fifth line (``world2cam`` flag) is honoured: ``1`` means the pose files hold world-to-camera matrices.
Without mask files the mask is the image alpha when the png has one (> 0.5), else "not white": a pixel is
background when all three 8-bit channels are >= :data:`WHITE_LEVEL` (250 of 255: tolerates a few levels of
compression noise and the faintest anti-aliased fringe).

**transforms.json** (latent3d's own layout, :mod:`latent3d.data.formats.transforms_json`):
``DIR/<id>/transforms.json``; the object's caption is the frames' (first) caption.

Every problem of a folder is one :class:`~latent3d.errors.UserError` line naming the file; symbolic links that lead
out of the dataset folder are refused.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from latent3d.errors import UserError

Format = Literal["srn", "transforms"]  # SRN / pixelNeRF folders, or NeRF-synthetic transforms.json
WHITE_LEVEL = 250  # 8-bit: a pixel with every channel >= this is white background (SRN data has no masks)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_EXPECTED = ("expected an SRN/pixelNeRF object folder (rgb/NNNNNN.png, pose/NNNNNN.txt, intrinsics.txt) or a "
             "folder with a transforms.json")


@dataclass
class ObjectViews:
    """Posed views of one object (OpenCV cameras, see :mod:`latent3d.render.camera`)."""

    object_id: str
    images: Tensor  # [V, H, W, 3] float32 in [0, 1]
    masks: Tensor  # [V, H, W] bool foreground
    viewmats: Tensor  # [V, 4, 4] float32 world-to-camera (OpenCV)
    Ks: Tensor  # [V, 3, 3] float32 pixels, pixel centres at +0.5
    view_names: list[str]  # image file names, sorted ("000005.png"); the views are in this order
    caption: str | None = None

    def __len__(self) -> int:
        return self.images.shape[0]


# ------------------------------------------------------------------------------------------------------ writing
def _check_id(object_id: str) -> None:
    if not object_id or object_id.startswith(".") or "/" in object_id or "\\" in object_id or "\x00" in object_id:
        raise ValueError(f"object id {object_id!r} is not a plain folder name")


def write_srn_object(root: str | os.PathLike, ov: ObjectViews) -> Path:
    """Write ``ov`` to ``root/<object_id>/`` in the SRN layout plus latent3d's ``mask/`` and ``caption.txt``;
    the folder is built aside and renamed into place (atomic). Returns the object folder."""
    from latent3d.io.atomic import atomic_dir, write_text
    from latent3d.io.image import save_image
    from latent3d.render.camera import rigid_inverse
    from latent3d.render.camera_checks import check_K, check_pose

    _check_id(ov.object_id)
    V, H, W = ov.images.shape[:3]
    K = ov.Ks[0].double()
    if not bool((ov.Ks == ov.Ks[:1]).all()) or float(K[0, 0]) != float(K[1, 1]):
        raise ValueError("the SRN layout holds one intrinsics with square pixels per object; these views differ")
    stems = [Path(n).stem for n in ov.view_names]
    if len(set(stems)) != V or len(stems) != V:
        raise ValueError(f"need {V} distinct view names, got {ov.view_names}")
    c2w = rigid_inverse(ov.viewmats.detach().cpu().double())
    folder = Path(root) / ov.object_id
    for i, stem in enumerate(stems):  # refuse cameras the reader would refuse, before writing anything
        check_pose(c2w[i].numpy(), str(folder / "pose" / f"{stem}.txt"))
    check_K(K.numpy(), W, H, str(folder / "intrinsics.txt"))
    with atomic_dir(folder) as tmp:
        for i, stem in enumerate(stems):
            save_image(tmp / "rgb" / f"{stem}.png", ov.images[i].detach().cpu())
            save_image(tmp / "mask" / f"{stem}.png", ov.masks[i].detach().cpu().bool())
            rows = [" ".join(repr(float(v)) for v in row) for row in c2w[i].tolist()]
            write_text(tmp / "pose" / f"{stem}.txt", "\n".join(rows) + "\n")
        f, cx, cy = (repr(float(v)) for v in (K[0, 0], K[0, 2], K[1, 2]))
        write_text(tmp / "intrinsics.txt", f"{f} {cx} {cy} 0.\n0. 0. 0.\n1.\n{H} {W}\n")
        if ov.caption is not None:
            write_text(tmp / "caption.txt", ov.caption + "\n")
    return folder


def write_transforms_object(root: str | os.PathLike, ov: ObjectViews) -> Path:
    """Write ``ov`` to ``root/<object_id>/`` in latent3d's transforms.json layout (atomic); returns the folder."""
    from latent3d.data.formats.transforms_json import write_transforms_dataset
    from latent3d.io.atomic import atomic_dir

    _check_id(ov.object_id)
    caps = None if ov.caption is None else [ov.caption] * len(ov)
    folder = Path(root) / ov.object_id
    with atomic_dir(folder) as tmp:
        write_transforms_dataset(tmp, ov.images, ov.viewmats, ov.Ks, masks=ov.masks, captions=caps,
                                 meta={"object_id": ov.object_id})
    return folder


# ------------------------------------------------------------------------------------------------------ reading
def _numbers(line: str, n: int, path: Path, what: str) -> list[float]:
    try:
        vals = [float(t) for t in line.split()]
    except ValueError:
        vals = []
    if len(vals) != n or not all(math.isfinite(v) for v in vals):
        raise UserError(f"{path}: {what} must be {n} finite numbers, got {line.strip()[:80]!r}; SRN's intrinsics.txt "
                        "is 'f cx cy 0' / 'x y z' / 'scale' / 'H W'")
    return vals


def _read_text(path: Path, what: str) -> str:
    from latent3d.io.files import read_regular_bytes

    data = read_regular_bytes(path, what, _EXPECTED)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not a readable {what} ({type(e).__name__}: {e})".replace("\n", " ")) from None


def _read_intrinsics(path: Path) -> tuple[float, float, float, int, int, bool]:  # f, cx, cy, H, W, world2cam
    """SRN's intrinsics file; the camera itself is checked against the images' size in :func:`_read_srn`."""
    from latent3d.render.camera_checks import check_image_size

    lines = [ln for ln in _read_text(path, "intrinsics file").splitlines() if ln.strip()]
    if len(lines) not in (4, 5):
        raise UserError(f"{path}: {len(lines)} lines, expected 4 ('f cx cy 0' / barycentre 'x y z' / scale / 'H W', "
                        "and optionally SRN's world2cam flag)")
    f, cx, cy, _ = _numbers(lines[0], 4, path, "line 1 (f cx cy 0)")
    _numbers(lines[1], 3, path, "line 2 (grid barycentre x y z)")
    _numbers(lines[2], 1, path, "line 3 (scale)")
    h, w = _numbers(lines[3], 2, path, "line 4 (H W)")
    w, h = check_image_size(w, h, f"{path} line 4 (H W)")
    w2c = False
    if len(lines) == 5:
        if lines[4].strip() not in ("0", "1"):
            raise UserError(f"{path}: line 5 (SRN's world2cam flag) must be 0 or 1, got {lines[4].strip()[:40]!r}")
        w2c = lines[4].strip() == "1"
    return f, cx, cy, h, w, w2c


def _read_pose(path: Path, world2cam: bool) -> np.ndarray:  # -> [4, 4] float64 world-to-camera
    from latent3d.render.camera_checks import check_pose

    text = _read_text(path, "pose file")
    try:
        vals = [float(t) for t in text.split()]
    except ValueError:
        vals = []
    if len(vals) != 16:
        raise UserError(f"{path}: a pose file holds 16 numbers (row-major 4x4 camera-to-world), got "
                        f"{text.strip()[:80]!r}")
    m = check_pose(np.asarray(vals, dtype=np.float64).reshape(4, 4), str(path))
    return m if world2cam else np.linalg.inv(m)


def _read_rgb(path: Path) -> tuple[np.ndarray, np.ndarray | None]:  # -> [H, W, 3] uint8 on white, mask [H, W] | None
    from latent3d.io.image import read_pil_array

    rgba, mode = read_pil_array(path, "RGBA", "image")
    has_alpha = mode in ("RGBA", "LA", "PA") or (mode == "P" and bool((rgba[..., 3] < 255).any()))
    if not has_alpha:
        return rgba[..., :3], None
    a = rgba[..., 3:4].astype(np.float32) / 255.0
    rgb = rgba[..., :3].astype(np.float32) * a + 255.0 * (1.0 - a)
    return rgb.round().astype(np.uint8), a[..., 0] > 0.5


def white_mask(rgb8: np.ndarray) -> np.ndarray:  # [..., 3] uint8 -> [...] bool foreground
    """Foreground = not white: some channel below :data:`WHITE_LEVEL` (SRN's white-background convention)."""
    return (rgb8 < WHITE_LEVEL).any(axis=-1)


def _read_caption(path: Path) -> str | None:
    if not path.exists():
        return None
    text = " ".join(_read_text(path, "caption file").split())
    return text or None


def _read_srn(folder: Path) -> ObjectViews:
    from latent3d.io.image import read_pil_array
    from latent3d.render.camera_checks import check_intrinsics

    rgb_dir, pose_dir = folder / "rgb", folder / "pose"
    if not rgb_dir.is_dir():
        raise UserError(f"{rgb_dir}: no such folder; {_EXPECTED}")
    names = sorted(p.name for p in rgb_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.name[0] != ".")
    if not names:
        raise UserError(f"{rgb_dir}: no images (.png/.jpg) inside; {_EXPECTED}")
    f, cx, cy, H, W, w2c = _read_intrinsics(folder / "intrinsics.txt")
    if not pose_dir.is_dir():
        raise UserError(f"{pose_dir}: no such folder; every rgb/NNNNNN.png needs a pose/NNNNNN.txt")
    for n in names:
        if not (pose_dir / f"{Path(n).stem}.txt").exists():  # a FIFO or folder there: _read_text says so
            raise UserError(f"{pose_dir / (Path(n).stem + '.txt')}: missing; every rgb/NNNNNN.png needs a "
                            "pose/NNNNNN.txt of the same number")
    n_poses = sum(1 for p in pose_dir.iterdir() if p.suffix == ".txt" and p.name[0] != ".")
    if n_poses != len(names):
        raise UserError(f"{pose_dir}: {n_poses} pose files for {len(names)} images in rgb/; each image needs exactly "
                        "one pose of the same number")
    imgs, masks, poses = [], [], []
    for n in names:
        rgb, alpha = _read_rgb(rgb_dir / n)
        if imgs and rgb.shape != imgs[0].shape:
            raise UserError(f"{rgb_dir / n}: {rgb.shape[1]}x{rgb.shape[0]} pixels, the first image "
                            f"{imgs[0].shape[1]}x{imgs[0].shape[0]}; all views of an object need one size")
        mpath = folder / "mask" / f"{Path(n).stem}.png"
        if mpath.exists():
            mask = read_pil_array(mpath, "L", "mask image")[0] > 127
            if mask.shape != rgb.shape[:2]:
                raise UserError(f"{mpath}: {mask.shape[1]}x{mask.shape[0]} pixels, its image "
                                f"{rgb.shape[1]}x{rgb.shape[0]}")
        else:
            mask = alpha if alpha is not None else white_mask(rgb)
        imgs.append(rgb)
        masks.append(mask)
        poses.append(_read_pose(pose_dir / f"{Path(n).stem}.txt", w2c))
    h, w = imgs[0].shape[:2]
    sx, sy = w / W, h / H  # intrinsics are for an H x W image
    check_intrinsics(f * sx, f * sy, cx * sx, cy * sy, w, h, f"{folder / 'intrinsics.txt'} (scaled to the {w}x{h} "
                     "images)")
    K = torch.tensor([[f * sx, 0.0, cx * sx], [0.0, f * sy, cy * sy], [0.0, 0.0, 1.0]], dtype=torch.float32)
    return ObjectViews(
        object_id=folder.name,
        images=torch.from_numpy(np.stack(imgs)).float() / 255.0,
        masks=torch.from_numpy(np.stack(masks)),
        viewmats=torch.from_numpy(np.stack(poses)).float(),
        Ks=K.expand(len(names), 3, 3).clone(),
        view_names=names,
        caption=_read_caption(folder / "caption.txt"),
    )


def _read_transforms(folder: Path) -> ObjectViews:
    from latent3d.data.formats.transforms_json import read_transforms_dataset

    ds = read_transforms_dataset(folder)
    order = sorted(range(len(ds)), key=lambda i: ds.image_paths[i].relative_to(folder).as_posix())
    idx = torch.tensor(order)
    images = ds.images[idx]
    masks = ds.masks[idx] if ds.masks is not None else torch.from_numpy(
        white_mask((images * 255.0).round().to(torch.uint8).numpy()))
    caption = next((c for c in ds.captions if c), None) if ds.captions is not None else None
    return ObjectViews(folder.name, images, masks, ds.viewmats[idx], ds.Ks[idx],
                       [ds.image_paths[i].name for i in order], caption)


def read_object_folder(folder: str | os.PathLike, root: str | os.PathLike | None = None,
                       unposed_fov_y: float | None = None) -> ObjectViews:  # fmt: skip
    """One object folder, SRN/pixelNeRF or transforms.json (detected; see the module docstring), or, given
    ``unposed_fov_y``, views without poses (:func:`read_unposed_object`). Symbolic links that lead out of ``root``
    (default: the folder itself) are refused before anything behind them is listed."""
    from latent3d.data.formats.video_frames import frame_names
    from latent3d.io.files import walk_inside

    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: no such folder; {_EXPECTED}")
    walk_inside(folder, root if root is not None else folder)
    if (folder / "transforms.json").exists():
        return _read_transforms(folder)
    if any((folder / n).exists() for n in ("rgb", "pose", "intrinsics.txt")):
        return _read_srn(folder)
    if frame_names(folder):
        if unposed_fov_y is None:
            raise UserError(f"{folder}: numbered views without poses; train on them with --cameras learn, which "
                            "finds the cameras")  # fmt: skip
        return read_unposed_object(folder, unposed_fov_y, root)
    raise UserError(f"{folder}: neither an SRN nor a transforms.json object folder; {_EXPECTED}")


def read_unposed_object(folder: str | os.PathLike, fov_y: float, root: str | os.PathLike | None = None) -> ObjectViews:
    """Views of one object without poses, in the folder-of-frames layout (:mod:`.video_frames`: ``00000.png, ...``,
    optional ``masks/`` and ``caption.txt``): square-pixel cameras of vertical field of view ``fov_y`` (radians)
    centred on the image, world-to-camera matrices unknown (NaN); without masks the object is what is not white."""
    from latent3d.data.formats.video_frames import read_video_folder
    from latent3d.render.camera import intrinsics_from_fov

    folder = Path(folder)
    _check_id(folder.name)
    vf = read_video_folder(folder, root)
    V, H, W = vf.frames.shape[:3]
    masks = vf.masks if vf.masks is not None else white_mask(vf.frames)
    K = intrinsics_from_fov(fov_y, W, H).reshape(1, 3, 3).expand(V, 3, 3).float()
    return ObjectViews(folder.name, torch.from_numpy(vf.frames).float() / 255.0, torch.from_numpy(masks),
                       torch.full((V, 4, 4), float("nan")), K.clone(), vf.names, vf.caption)  # fmt: skip


def list_object_folders(root: str | os.PathLike) -> list[Path]:
    """The object folders of a dataset (every non-hidden sub-folder of ``root``), sorted by id; for readers that
    load objects one at a time (:func:`read_object_folder` with ``root=root``)."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root}: no such folder; pass a folder of object folders (DIR/<object_id>/...)")
    from latent3d.data.formats.video_frames import frame_names

    if (root / "transforms.json").is_file() or (root / "rgb").is_dir() or frame_names(root):
        raise UserError(f"{root} is a single object folder; pass the folder that holds the object folders")
    folders = sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name)
    if not folders:
        raise UserError(f"{root}: no object folders inside; a dataset is DIR/<object_id>/ folders, each an SRN "
                        "object folder (rgb/, pose/, intrinsics.txt) or one with a transforms.json")
    return folders


def read_multiview_dataset(root: str | os.PathLike, unposed_fov_y: float | None = None) -> list[ObjectViews]:
    """Every object folder of ``root``, sorted by id (all views in memory; see :func:`list_object_folders`);
    folders of views without poses too when ``unposed_fov_y`` is given (:func:`read_unposed_object`)."""
    return [read_object_folder(p, root=root, unposed_fov_y=unposed_fov_y) for p in list_object_folders(root)]
