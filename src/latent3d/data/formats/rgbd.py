"""The latent3d RGBD set on disk, LDM3D's training data (LDM3D, Stan et al. 2023, arXiv 2305.10853, Sec. 3.1 / 4.1):
:class:`RGBDSet`, its writer and its reader.

LDM3D trains on (RGB, depth, caption) triples whose depth is DPT-Large's output: a relative **inverse depth**
map normalised to [0, 1] per image, bright = near (:func:`disparity_from_depth`); where the metric range (``near``,
``far``) is known it is kept, so that metric depth can be recovered. Sets come from latent3d's renderer
(:mod:`latent3d.data.procedural.rgbd_sets`) or from real images and a depth model
(:mod:`latent3d.data.formats.rgbd_builder`), both in this layout::

    DIR/rgb/00000.png     8-bit RGB
    DIR/depth/00000.png   16-bit greyscale: value / 65535 = normalised inverse depth in [0, 1], 1 = nearest
    DIR/rgbd.json         format, projection, per item: files, caption, near/far (metres; null = relative only), K
    DIR/metadata.jsonl    {"file_name": "rgb/00000.png", "text": caption} (Hugging Face imagefolder convention)
    DIR/DATA_CARD.md      what the folder holds and how it was made

``rgbd.json`` is written last: a folder that has it is complete. An item's ``K`` passes the shared camera checks
(:func:`latent3d.render.camera_checks.check_K`) against its image's size.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from latent3d.errors import UserError

FORMAT = "latent3d-rgbd"
DEPTH_LINE = ("depth/*.png hold normalised inverse depth (disparity) in [0, 1] as 16-bit PNG (value / 65535), "
              "1 = nearest, 0 = farthest or sky, min-max normalised per image as DPT / LDM3D")


@dataclass
class RGBDSet:
    """RGB images, their normalised inverse depth, metric depth, intrinsics and captions."""

    rgb: Tensor  # [N, 3, H, W] in [0, 1]
    disparity: Tensor  # [N, 1, H, W] in [0, 1], normalised inverse depth, bright = near (per-image min-max of 1/z)
    depth: Tensor  # [N, 1, H, W] metric z (perspective) or ray distance (pano); inf = sky; nan = unknown (relative)
    K: Tensor | None  # [N, 3, 3] pinhole intrinsics in pixels; None for equirect panoramas
    captions: list[str]

    def __len__(self) -> int:
        return self.rgb.shape[0]


def disparity_from_depth(depth: Tensor) -> tuple[Tensor, Tensor, Tensor]:  # [N, 1, H, W] -> disp, near [N], far [N]
    """Per-image min-max normalised inverse depth (DPT / LDM3D convention): ``(1/z - 1/far) / (1/near - 1/far)``.

    Non-finite or non-positive depth (sky) maps to 0. An image with a single depth value maps to 1 where valid.
    """
    valid = torch.isfinite(depth) & (depth > 0)
    big, inf = torch.finfo(depth.dtype).max, float("inf")
    flat_v = valid.flatten(1)
    near = torch.where(flat_v, depth.flatten(1), inf).amin(1)  # [N]
    far = torch.where(flat_v, depth.flatten(1), -inf).amax(1)  # [N]
    near, far = torch.where(torch.isfinite(near), near, 1.0), torch.where(torch.isfinite(far), far, 1.0)
    inv = 1.0 / depth.clamp(min=1e-12, max=big)
    lo, hi = (1.0 / far).view(-1, 1, 1, 1), (1.0 / near).view(-1, 1, 1, 1)
    span = hi - lo
    disp = torch.where(span > 0, (inv - lo) / span.clamp(min=1e-30), torch.ones_like(inv))
    return torch.where(valid, disp, 0.0).clamp(0, 1), near, far


# --------------------------------------------------------------------------------------------------- disk
def write_rgbd_item(
    root: Path,
    i: int,
    rgb: Tensor,  # [3, H, W] in [0, 1]
    disparity: Tensor,  # [H, W] in [0, 1]
    caption: str,
    near: float | None = None,
    far: float | None = None,
    K: Tensor | None = None,  # [3, 3]
) -> dict[str, Any]:
    """Write one image pair (RGB PNG + 16-bit disparity PNG, atomically); returns its ``rgbd.json`` item."""
    from latent3d.io.depth import quantize_depth, write_depth_png16
    from latent3d.io.image import save_image

    name = f"{i:05d}.png"
    save_image(root / "rgb" / name, rgb.permute(1, 2, 0).detach().cpu().float().numpy())
    write_depth_png16(root / "depth" / name, quantize_depth(disparity.detach().cpu().float().numpy()))
    item = {"rgb": f"rgb/{name}", "depth": f"depth/{name}", "caption": caption, "near": near, "far": far}
    if K is not None:
        item["K"] = K.tolist()
    return item


def write_rgbd_index(
    root: Path, items: list[dict[str, Any]], projection: str, source: str, extra: dict[str, Any] | None = None
) -> Path:
    """Write metadata.jsonl, DATA_CARD.md and, last, rgbd.json (the folder's completeness marker)."""
    from PIL import Image

    from latent3d.io.atomic import write_text

    metric = bool(items) and all(it["near"] is not None for it in items)
    with Image.open(root / items[0]["rgb"]) as im:
        W, H = im.size
    write_text(root / "metadata.jsonl", "".join(json.dumps({"file_name": it["rgb"], "text": it["caption"]}) + "\n"
                                                 for it in items))  # fmt: skip
    kind = "camera z" if projection == "pinhole" else "ray distance from the panorama centre"
    how = ("z = 1 / (1/far + d * (1/near - 1/far)) with each item's near/far in rgbd.json (metres)" if metric
           else "not available (relative inverse depth only; near/far are null)")  # fmt: skip
    write_text(root / "DATA_CARD.md", f"""# RGBD set ({len(items)} images, first {W}x{H}, {projection})

- Source: {source}.
- {DEPTH_LINE}.
- Metric depth ({kind}): {how}.
- rgb/*.png: 8-bit RGB; captions in rgbd.json and metadata.jsonl.
""")
    index = {"format": FORMAT, "version": 1, "projection": projection, "height": H, "width": W, "depth": DEPTH_LINE,
             "source": source, "items": items, **(extra or {})}  # fmt: skip
    write_text(root / "rgbd.json", json.dumps(index, indent=1))
    return root


def write_rgbd_set(
    folder: str | os.PathLike,
    data: RGBDSet,
    source: str = "latent3d procedural renders",
    metric: bool = True,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``data`` in the latent3d RGBD layout (module docstring); every file atomically, ``rgbd.json`` last.

    ``metric``: store each image's metric ``near``/``far`` (from ``data.depth``) so :func:`read_rgbd_set` can
    recover metric depth; False for relative depth (DPT), where ``near``/``far`` are null.
    """
    root = Path(folder)
    near, far = disparity_from_depth(data.depth)[1:] if metric else (None, None)
    items = [
        write_rgbd_item(root, i, data.rgb[i], data.disparity[i, 0], data.captions[i],
                        float(near[i]) if metric else None, float(far[i]) if metric else None,
                        None if data.K is None else data.K[i])  # fmt: skip
        for i in range(len(data))
    ]
    return write_rgbd_index(root, items, "pinhole" if data.K is not None else "equirect", source, extra)


def _read_K(k: Any, i: int, w: int, h: int, jpath: Path) -> torch.Tensor:  # [3, 3] for a w x h image
    """Item ``i``'s intrinsics, checked against its image's size (:func:`latent3d.render.camera_checks.check_K`)."""
    from latent3d.render.camera_checks import check_K

    try:
        K = torch.tensor(k, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        K = torch.zeros(0)
    if K.shape != (3, 3):
        raise UserError(f"{jpath}: item {i}'s K must be a 3x3 matrix of finite numbers with positive focal lengths")
    check_K(K.numpy(), w, h, f"{jpath} item {i}")
    return K.float()


def read_rgbd_set(folder: str | os.PathLike) -> RGBDSet:
    """Read a folder written by :func:`write_rgbd_set` or :mod:`latent3d.data.formats.rgbd_builder`.

    ``disparity`` is the stored 16-bit value / 65535 (exact); ``depth`` is metric where ``near``/``far`` are known
    (disparity 0 maps to ``far``) and nan where the set is relative only.
    """
    from latent3d.io.depth import dequantize_depth, read_depth_png16
    from latent3d.io.image import load_image
    from latent3d.io.manifest import number, read_json, resolve_inside

    root = Path(folder)
    jpath = root / "rgbd.json"
    if not jpath.is_file():
        raise UserError(f"{root} has no rgbd.json: pass a folder written by latent3d's RGBD writer or builder")
    fix = "pass a folder written by latent3d's RGBD writer or builder"
    index = read_json(jpath, fix)
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        fmt = index.get("format") if isinstance(index, dict) else None
        raise UserError(f"{jpath} is not a {FORMAT} index (format={fmt!r}); {fix}")
    items = index.get("items")
    if not isinstance(items, list) or not items or not all(isinstance(it, dict) for it in items):
        raise UserError(f"{jpath}: 'items' must be a non-empty list of objects; {fix}")
    rgbs, disps, depths, Ks, caps = [], [], [], [], []
    for i, it in enumerate(items):
        if not isinstance(it.get("caption"), str):
            raise UserError(f"{jpath}: item {i} needs a 'caption' string, got {it.get('caption')!r}")
        rgb = torch.from_numpy(load_image(resolve_inside(root, it.get("rgb"), f"item {i} rgb", jpath)))
        dpath = resolve_inside(root, it.get("depth"), f"item {i} depth", jpath)
        d = torch.from_numpy(np.asarray(dequantize_depth(read_depth_png16(dpath))))[None]
        if tuple(d.shape[1:]) != tuple(rgb.shape[:2]):
            raise UserError(f"{dpath}: depth is {d.shape[2]}x{d.shape[1]}, its RGB {rgb.shape[1]}x{rgb.shape[0]}")
        rgbs.append(rgb.permute(2, 0, 1))
        disps.append(d)
        if it.get("near") is not None or it.get("far") is not None:
            near = number(it.get("near"), f"item {i} near", jpath, 0, 1e9, lo_open=True)
            far = number(it.get("far"), f"item {i} far", jpath, near, 1e9, lo_open=True)
            depths.append(1.0 / (1.0 / far + d.double() * (1.0 / near - 1.0 / far)).float())
        else:
            depths.append(torch.full_like(d, float("nan")))
        if "K" in it:
            Ks.append(_read_K(it["K"], i, rgb.shape[1], rgb.shape[0], jpath))
        caps.append(it["caption"])
    K = torch.stack(Ks) if Ks and len(Ks) == len(caps) else None
    if len({tuple(x.shape) for x in rgbs}) > 1:
        raise UserError(f"{root} holds images of different sizes: rebuild it with one --size to train on it")
    return RGBDSet(torch.stack(rgbs), torch.stack(disps), torch.stack(depths), K, caps)
