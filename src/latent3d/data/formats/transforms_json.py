"""Posed-image datasets on disk in the nerfstudio ``transforms.json`` layout: writer and reader.

Written layout (``write_transforms_dataset``)::

    DIR/transforms.json
    DIR/images/00000.png   RGB 8-bit
    DIR/depth/00000.png    16-bit greyscale, camera z-depth in metres = value * depth_unit_scale_factor; 0 = no hit
    DIR/masks/00000.png    8-bit, 255 = foreground object (see below), 0 = background

``transforms.json`` holds ``camera_model`` ("OPENCV"), ``fl_x, fl_y, cx, cy, w, h`` (top level when shared by all
frames, else per frame, as nerfstudio allows), ``depth_unit_scale_factor`` (metres per depth unit, nerfstudio's
name and meaning: ``metres = png_value * factor``) and ``frames`` with ``file_path``, ``depth_file_path``,
``mask_path`` and ``transform_matrix`` (OpenGL camera-to-world, 4x4). **latent3d extension:** each frame may carry a
``"caption"`` string (the text prompt of that view), and the top level a ``"latent3d"`` dict with provenance.
Note that nerfstudio reads ``mask_path`` as "pixels to train on"; ours marks the foreground objects.

The reader also takes real nerfstudio / NeRF-blender folders: ``camera_angle_x`` instead of focal lengths,
per-frame intrinsics, ``file_path`` without extension (``./train/r_0``), RGBA images (composited on
``background``, alpha > 0.5 becomes the mask), and missing depth. Every write is atomic; ``transforms.json`` is
written last, so a folder with a ``transforms.json`` is complete.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor

from latent3d.errors import UserError
from latent3d.render.camera import nerfstudio_from_viewmats, viewmats_from_nerfstudio

_FIX = "pass a folder with a nerfstudio/NeRF-blender transforms.json (e.g. one written by latent3d.data)"


@dataclass
class TransformsDataset:
    """Posed views loaded from a ``transforms.json`` folder (OpenCV cameras, see latent3d.render.camera)."""

    images: Tensor  # [N, H, W, 3] float32 in [0, 1]
    depths: Tensor | None  # [N, H, W] float32 camera z-depth in metres; inf where missing; None = no depth files
    masks: Tensor | None  # [N, H, W] bool foreground (mask files or image alpha); None = neither present
    viewmats: Tensor  # [N, 4, 4] world-to-camera (OpenCV)
    Ks: Tensor  # [N, 3, 3]
    captions: list[str] | None  # per-frame "caption" (latent3d extension); None when no frame has one
    image_paths: list[Path]
    root: Path

    def __len__(self) -> int:
        return self.images.shape[0]


def choose_depth_scale(max_depth: float) -> float:
    """Smallest "nice" step (1, 2 or 5 x 10^k metres) that stores depths up to ``max_depth`` in 16 bits."""
    need = max(max_depth, 1e-6) / 65534.0
    k = math.floor(math.log10(need))
    for base in (1.0, 2.0, 5.0, 10.0):
        step = float(f"{base}e{k}")
        if step >= need:
            return step
    return float(f"1e{k + 1}")


def write_transforms_dataset(
    out_dir: str | os.PathLike,
    images: Tensor,  # [N, H, W, 3] float in [0, 1]
    viewmats: Tensor,  # [N, 4, 4] world-to-camera (OpenCV)
    Ks: Tensor,  # [N, 3, 3]
    depths: Tensor | None = None,  # [N, H, W] camera z-depth in metres; inf/0 = no hit
    masks: Tensor | None = None,  # [N, H, W] bool
    captions: Sequence[str] | None = None,
    depth_scale: float | None = None,  # metres per 16-bit unit; None = choose_depth_scale(max finite depth)
    meta: dict[str, Any] | None = None,
) -> Path:
    """Write a nerfstudio-style dataset (layout in the module docstring); returns the path of transforms.json."""
    from latent3d.io.atomic import write_text
    from latent3d.io.depth import write_depth_png16
    from latent3d.io.image import save_image
    from latent3d.render.camera_checks import check_K, check_pose

    out = Path(out_dir)
    N, H, W = images.shape[:3]
    if captions is not None and len(captions) != N:
        raise ValueError(f"got {len(captions)} captions for {N} images")
    if depths is not None:
        finite = torch.isfinite(depths) & (depths > 0)
        if depth_scale is None:
            depth_scale = choose_depth_scale(float(depths[finite].max()) if finite.any() else 1.0)
        u = torch.where(finite, (depths / depth_scale).round().clamp(1, 65535), torch.zeros_like(depths))
        if finite.any() and float(depths[finite].max()) / depth_scale > 65535.5:
            raise ValueError(f"depth up to {float(depths[finite].max()):.3f} m does not fit 16 bits at "
                             f"depth_scale={depth_scale}; pass a larger depth_scale or None")
    Ks = Ks.detach().float().cpu()
    shared = bool((Ks == Ks[:1]).all())
    c2w = nerfstudio_from_viewmats(viewmats.detach().float().cpu())
    for i in range(N):  # refuse cameras the reader would refuse, before writing anything
        check_pose(c2w[i].numpy(), f"{out / 'transforms.json'} frame {i}")
        check_K(Ks[i].numpy(), W, H, f"{out / 'transforms.json'} frame {i}")
    frames = []
    for i in range(N):
        name = f"{i:05d}.png"
        save_image(out / "images" / name, images[i].detach().cpu())
        frame: dict[str, Any] = {"file_path": f"images/{name}"}
        if depths is not None:
            write_depth_png16(out / "depth" / name, u[i].cpu().numpy().astype(np.uint16))
            frame["depth_file_path"] = f"depth/{name}"
        if masks is not None:
            save_image(out / "masks" / name, masks[i].detach().cpu().bool())
            frame["mask_path"] = f"masks/{name}"
        if not shared:
            frame.update(_intrinsics(Ks[i], W, H))
        frame["transform_matrix"] = [[float(v) for v in row] for row in c2w[i].tolist()]
        if captions is not None:
            frame["caption"] = str(captions[i])
        frames.append(frame)
    doc: dict[str, Any] = {"camera_model": "OPENCV"}
    if shared:
        doc.update(_intrinsics(Ks[0], W, H))
    if depths is not None:
        doc["depth_unit_scale_factor"] = depth_scale
    doc["latent3d"] = {"format": 1, "depth": "camera z-depth in metres = value * depth_unit_scale_factor, 0 = none",
                       "mask": "255 = foreground object", "caption": "per-frame text prompt (latent3d extension)",
                       **(meta or {})}
    doc["frames"] = frames
    return write_text(out / "transforms.json", json.dumps(doc, indent=1))



def episode_folder(out: str | os.PathLike, index: int) -> Path:
    """Where episode ``index`` of a posed RGB-D episode set lives: ``out/episode_NNN`` (``latent3d data scenes``,
    ``latent3d data vizdoom``; NF-LDM reads every such folder)."""
    return Path(out) / f"episode_{index:03d}"


def write_episode(out: str | os.PathLike, index: int, *frames: Any, bev: Any = None, **fields: Any) -> Path:
    """One episode of an episode set as a transforms.json folder :func:`episode_folder` (``out/episode_NNN``):
    ``frames`` and ``fields`` are those of :func:`write_transforms_dataset` after its folder, which writes them into
    a temporary sibling renamed into place (:func:`latent3d.io.atomic.atomic_dir`); ``bev``, a
    :class:`latent3d.data.formats.bev.BevRaster`, is written beside them as ``bev.png`` and listed in the meta. The
    one writer of every episode source (procedural walks, VizDoom recordings). Returns the folder."""
    from latent3d.data.formats.bev import BEV_FILE, write_bev_png
    from latent3d.io.atomic import atomic_dir

    folder = episode_folder(out, index)
    with atomic_dir(folder) as tmp:
        if bev is not None:
            write_bev_png(tmp / BEV_FILE, bev.index, bev.classes)
            fields["meta"] = {**(fields.get("meta") or {}), "bev": bev.meta()}
        write_transforms_dataset(tmp, *frames, **fields)
    return folder


def _intrinsics(K: Tensor, W: int, H: int) -> dict[str, float]:
    return {"fl_x": float(K[0, 0]), "fl_y": float(K[1, 1]), "cx": float(K[0, 2]), "cy": float(K[1, 2]),
            "w": int(W), "h": int(H)}


# -------------------------------------------------------------------------------------------------------- reader
def _find_json(path: Path, split: str) -> Path:
    if path.exists() and not path.is_dir():  # a FIFO or device is refused by read_json, not taken for a folder
        return path
    if not path.is_dir():
        raise UserError(f"{path}: no such folder; {_FIX}")
    for name in ("transforms.json", f"transforms_{split}.json"):
        if (path / name).exists():
            return path / name
    raise UserError(f"{path} is not a transforms.json dataset: no transforms.json or transforms_{split}.json "
                    f"inside; {_FIX}")


def _resolve(root: Path, rel: Any, what: str, json_path: Path) -> Path:
    from latent3d.io.manifest import resolve_inside

    p = resolve_inside(root, rel, what, json_path)
    if p.exists() and not p.is_dir():  # a FIFO or device there is refused by the file's reader (open_regular)
        return p
    for ext in (".png", ".jpg", ".jpeg", ".PNG", ".JPG"):  # NeRF-blender omits the extension
        if p.with_name(p.name + ext).exists():
            return p.with_name(p.name + ext)
    raise UserError(f"{json_path}: {what} {rel!r} not found; check the paths in the file or re-export the dataset")


def _read_depth(path: Path, scale: float, hw: tuple[int, int], i: int, jpath: Path) -> np.ndarray:  # [H, W] metres
    """A frame's depth: 16-bit PNG x ``scale``, or ``.npy`` float metres (no pickles); 0 / non-finite = no depth."""
    from latent3d.io.depth import read_depth_png16
    from latent3d.io.files import open_regular

    if path.suffix == ".npy":
        try:
            with open_regular(path, ".npy depth map") as fh:
                raw = np.load(fh, allow_pickle=False)
        except (OSError, ValueError, EOFError) as e:
            raise UserError(f"{path}: not a readable .npy depth map ({type(e).__name__}: {e})") from None
        if raw.ndim != 2 or raw.dtype.kind not in "fiu":
            raise UserError(f"{path}: a .npy depth map must be a 2-D numeric array, got {raw.dtype} {raw.shape}")
        raw = raw.astype(np.float32)
    else:
        raw = read_depth_png16(path).astype(np.float32) * np.float32(scale)
    if raw.shape != hw:
        raise UserError(f"{jpath}: frame {i}'s depth is {raw.shape[1]}x{raw.shape[0]}, its image {hw[1]}x{hw[0]}")
    return np.where(np.isfinite(raw) & (raw > 0), raw, np.inf).astype(np.float32)


def _load_rgba(path: Path, background: Sequence[float]) -> tuple[np.ndarray, np.ndarray | None]:
    """RGB float [H, W, 3] (alpha composited on ``background``) and alpha [H, W] or None."""
    from latent3d.io.image import read_pil_array

    rgba, mode = read_pil_array(path, "RGBA", "image")
    # a palette image has alpha when it names a transparent colour: then some converted alpha is below 255
    has_alpha = mode in ("RGBA", "LA", "PA") or (mode == "P" and bool((rgba[..., 3] < 255).any()))
    arr = rgba.astype(np.float32) / 255.0
    if not has_alpha:
        return arr[..., :3], None
    a = arr[..., 3:4]
    rgb = arr[..., :3] * a + np.asarray(background, dtype=np.float32) * (1.0 - a)
    return rgb, a[..., 0]


def read_transforms_dataset(
    path: str | os.PathLike,
    split: str = "train",
    background: Sequence[float] = (1.0, 1.0, 1.0),
) -> TransformsDataset:
    """Load a ``transforms.json`` dataset (folder or json file); NeRF-blender folders use ``transforms_{split}.json``.

    Raises :class:`latent3d.errors.UserError` (one line) when ``path`` is not such a dataset.
    """
    from latent3d.io.image import read_pil_array
    from latent3d.io.manifest import number, read_json

    jpath = _find_json(Path(path), split)
    doc = read_json(jpath, _FIX)
    frames = doc.get("frames") if isinstance(doc, dict) else None
    if not frames or not isinstance(frames, list):
        raise UserError(f"{jpath}: no 'frames' list; {_FIX}")
    if not all(isinstance(f, dict) for f in frames):
        raise UserError(f"{jpath}: every entry of 'frames' must be an object with file_path and transform_matrix")
    model = str(doc.get("camera_model", "OPENCV")).upper()
    if model not in ("OPENCV", "PINHOLE", "SIMPLE_PINHOLE"):  # OPENCV distortion coefficients are ignored
        raise UserError(f"{jpath}: camera_model {model!r} is not supported; only pinhole/OPENCV cameras are read")
    root = jpath.parent
    scale = number(doc.get("depth_unit_scale_factor", 1e-3), "depth_unit_scale_factor", jpath, 0.0, 1e6,
                   lo_open=True)  # nerfstudio's default: millimetres
    imgs, depths, masks, poses, Ks, caps, paths = [], [], [], [], [], [], []
    any_depth = any("depth_file_path" in f for f in frames)
    any_mask = False
    for i, f in enumerate(frames):
        if "file_path" not in f or "transform_matrix" not in f:
            raise UserError(f"{jpath}: frame {i} lacks 'file_path' or 'transform_matrix'; {_FIX}")
        ip = _resolve(root, f["file_path"], "image", jpath)
        rgb, alpha = _load_rgba(ip, background)
        h, w = rgb.shape[:2]
        if imgs and (h, w) != imgs[0].shape[:2]:
            raise UserError(f"{ip}: image size {w}x{h} differs from the first image's; resize them to one size")
        K = _frame_K({**doc, **f}, w, h, jpath, i)
        mask = None
        if "mask_path" in f:
            mask = read_pil_array(_resolve(root, f["mask_path"], "mask", jpath), "L", "mask image")[0] > 127
            if mask.shape != (h, w):
                raise UserError(f"{jpath}: frame {i}'s mask is {mask.shape[1]}x{mask.shape[0]}, its image {w}x{h}")
        elif alpha is not None:
            mask = alpha > 0.5
        any_mask |= mask is not None
        d = np.full((h, w), np.inf, dtype=np.float32)
        if "depth_file_path" in f:
            d = _read_depth(_resolve(root, f["depth_file_path"], "depth", jpath), scale, (h, w), i, jpath)
        imgs.append(rgb)
        depths.append(d)
        masks.append(mask)
        poses.append(_pose(f["transform_matrix"], i, jpath))
        Ks.append(K)
        if not isinstance(f.get("caption", ""), str):
            raise UserError(f"{jpath}: frame {i}'s caption must be a string, got {f['caption']!r}")
        caps.append(f.get("caption"))
        paths.append(ip)
    viewmats = viewmats_from_nerfstudio(torch.from_numpy(np.stack(poses)))
    H, W = imgs[0].shape[:2]
    mask_t = None
    if any_mask:
        mask_t = torch.from_numpy(np.stack([m if m is not None else np.ones((H, W), bool) for m in masks]))
    return TransformsDataset(
        images=torch.from_numpy(np.stack(imgs)),
        depths=torch.from_numpy(np.stack(depths)) if any_depth else None,
        masks=mask_t,
        viewmats=viewmats,
        Ks=torch.stack(Ks),
        captions=[c or "" for c in caps] if any(c is not None for c in caps) else None,
        image_paths=paths,
        root=root,
    )


def _pose(m: Any, i: int, jpath: Path) -> np.ndarray:  # -> [4, 4] float32 OpenGL camera-to-world
    from latent3d.render.camera_checks import check_pose

    try:
        a = np.asarray(m, dtype=np.float64)
    except (ValueError, TypeError, OverflowError):
        a = np.zeros(0)
    if a.shape == (3, 4):
        a = np.concatenate([a, np.array([[0, 0, 0, 1]])])
    if a.shape != (4, 4):
        raise UserError(f"{jpath}: frame {i} has a malformed transform_matrix; it must be a 4x4 or 3x4 list")
    return check_pose(a, f"{jpath} frame {i}").astype(np.float32)  # bounded: exact enough in float32


def _frame_K(f: dict[str, Any], w: int, h: int, jpath: Path, i: int) -> Tensor:  # [3, 3]
    """Intrinsics from nerfstudio keys (fl_x, ...) or NeRF-blender ``camera_angle_x``, rescaled to the image size
    and checked against it (:func:`latent3d.render.camera_checks.check_intrinsics`)."""
    from latent3d.io.manifest import number
    from latent3d.render.camera_checks import check_image_size, check_intrinsics

    fw, fh = check_image_size(f.get("w", w), f.get("h", h), f"{jpath} frame {i} (w, h)")
    sx, sy = w / fw, h / fh  # intrinsics for an fw x fh image, the image file is w x h
    if "fl_x" in f:
        fx = number(f["fl_x"], "fl_x", jpath) * sx
        fy = number(f.get("fl_y", f["fl_x"]), "fl_y", jpath) * sy
    elif "camera_angle_x" in f:
        fx = 0.5 * w / math.tan(0.5 * number(f["camera_angle_x"], "camera_angle_x", jpath, 0, 3.1, lo_open=True))
        fy = fx
        if "camera_angle_y" in f:
            fy = 0.5 * h / math.tan(0.5 * number(f["camera_angle_y"], "camera_angle_y", jpath, 0, 3.1, lo_open=True))
    else:
        raise UserError(f"{jpath}: no focal length (fl_x or camera_angle_x); {_FIX}")
    cx = number(f["cx"], "cx", jpath) * sx if "cx" in f else 0.5 * w
    cy = number(f["cy"], "cy", jpath) * sy if "cy" in f else 0.5 * h
    check_intrinsics(fx, fy, cx, cy, w, h, f"{jpath} frame {i}")
    return torch.tensor([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=torch.float32)
