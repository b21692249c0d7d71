"""Build LDM3D training pairs from real captioned images with a monocular depth model (arXiv 2305.10853, Sec. 3.1).

LDM3D's data: LAION-400M image/caption pairs whose depth maps were predicted by DPT-Large (Ranftl et al. 2021)
at 384x384, i.e. relative inverse depth, normalised per image to [0, 1]. :func:`build_rgbd_pairs` does the same for
any folder of images + captions with any transformers depth-estimation model (a hub id in the local cache, or a
folder: ``AutoModelForDepthEstimation`` + ``AutoImageProcessor``), and writes the latent3d RGBD layout
(:mod:`latent3d.data.formats.rgbd`), which ``latent3d train rgbd-vae --data`` / ``train rgbd --data`` read.

Captions come from ``metadata.jsonl`` or ``metadata.csv`` in the image folder (Hugging Face imagefolder
convention: columns ``file_name`` and ``text``; ``image``/``path`` and ``caption`` are accepted too), or from a
CSV/JSONL file given explicitly.

Usage (:func:`latent3d.data.command.rgbd_pairs`)::

    latent3d data rgbd-pairs IMAGES_DIR --out OUT_DIR --depth-model Intel/dpt-large --size 512
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any, Literal, Sequence

import torch
from torch import Tensor

from latent3d.errors import UserError

_FILE_KEYS = ("file_name", "image", "path", "filename", "file")
_TEXT_KEYS = ("text", "caption", "prompt")
Output = Literal["auto", "disparity", "depth"]  # what the estimator gives (auto: from METRIC_MODELS)
METRIC_MODELS = ("zoedepth", "depth_pro")  # model_type values whose output is metric depth, not inverse depth


def read_captions(src: str | os.PathLike, captions: str | os.PathLike | None = None) -> list[tuple[Path, str]]:
    """(image path, caption) pairs from ``captions`` (CSV or JSONL) or ``src/metadata.{jsonl,csv}``."""
    root = Path(src)
    if not root.is_dir():
        raise UserError(f"image folder {root} does not exist: pass the folder that holds the images")
    if captions is None:
        found = [root / n for n in ("metadata.jsonl", "metadata.csv", "captions.jsonl", "captions.csv")]
        found = [p for p in found if p.is_file()]
        if not found:
            raise UserError(f"{root} has no metadata.jsonl/metadata.csv: add one with file_name,text columns "
                            "or pass --captions FILE")  # fmt: skip
        captions = found[0]
    cpath = Path(captions)
    if cpath.suffix.lower() == ".csv":
        with cpath.open(newline="", encoding="utf-8") as f:
            rows: list[dict[str, Any]] = list(csv.DictReader(f))
    elif cpath.suffix.lower() in (".jsonl", ".json"):
        rows = [json.loads(ln) for ln in cpath.read_text(encoding="utf-8").splitlines() if ln.strip()]
    else:
        raise UserError(f"{cpath}: captions must be a .csv or .jsonl file")
    out = []
    for k, row in enumerate(rows):
        fk = next((c for c in _FILE_KEYS if row.get(c)), None)
        tk = next((c for c in _TEXT_KEYS if c in row), None)
        if fk is None or tk is None:
            raise UserError(f"{cpath} row {k + 1}: needs a file_name and a text column, got {sorted(row)}")
        p = (cpath.parent / row[fk]) if not Path(row[fk]).is_absolute() else Path(row[fk])
        if not p.is_file():
            raise UserError(f"{cpath} row {k + 1}: image {p} not found")
        out.append((p, str(row[tk])))
    if not out:
        raise UserError(f"{cpath} lists no images")
    return out


def load_depth_model(name_or_path: str, device: str = "auto", local_files_only: bool | None = None):
    """``(model, processor)`` from a hub id (offline: must be in the local cache) or a saved folder."""
    from transformers import AutoImageProcessor, AutoModelForDepthEstimation

    from latent3d.runtime import hub_offline, resolve_device

    if local_files_only is None:
        local_files_only = Path(name_or_path).is_dir() or hub_offline()
    try:
        model = AutoModelForDepthEstimation.from_pretrained(name_or_path, local_files_only=local_files_only,
                                                            use_safetensors=True)  # never unpickle a .bin
        proc = AutoImageProcessor.from_pretrained(name_or_path, local_files_only=local_files_only)
    except OSError as e:
        raise UserError(f"cannot load depth model {name_or_path!r} ({str(e).splitlines()[0][:120]}): pass a "
                        "folder with a saved transformers depth model, or download e.g. Intel/dpt-large first") from e  # fmt: skip
    return model.to(resolve_device(device)).eval(), proc


def center_resize(img, size: tuple[int, int] | None):  # PIL.Image -> PIL.Image of size (H, W)
    """Centre-crop ``img`` to the aspect ratio of ``size`` (H, W) and resize it there (bicubic); None: unchanged."""
    if size is None:
        return img
    from PIL import Image

    H, W = size
    w, h = img.size
    if w * H > h * W:  # too wide
        cw = round(h * W / H)
        img = img.crop(((w - cw) // 2, 0, (w - cw) // 2 + cw, h))
    elif w * H < h * W:
        ch = round(w * H / W)
        img = img.crop((0, (h - ch) // 2, w, (h - ch) // 2 + ch))
    return img.resize((W, H), Image.Resampling.BICUBIC)


def minmax(x: Tensor) -> Tensor:  # [..., H, W] -> same, per map in [0, 1]
    """Per-map min-max normalisation (a constant map becomes 0)."""
    lo = x.flatten(-2).amin(-1)[..., None, None]
    hi = x.flatten(-2).amax(-1)[..., None, None]
    return torch.where(hi > lo, (x - lo) / (hi - lo).clamp(min=1e-30), torch.zeros_like(x))


@torch.no_grad()
def estimate_disparity(
    model: Any,
    processor: Any,
    images: Sequence[Any],  # PIL images (any sizes)
    output: Output = "auto",
) -> list[Tensor]:  # [H_i, W_i] in [0, 1] each, bright = near
    """Normalised inverse depth of each image as LDM3D uses it: the model's prediction, resized to the image
    (bicubic, the processor's ``post_process_depth_estimation``), then min-max normalised per image.

    ``output``: what the model predicts; ``auto`` = metric depth for ZoeDepth / DepthPro (inverted first),
    relative inverse depth otherwise (DPT, Depth Anything, GLPN-free relative models).
    """
    if output == "auto":
        output = "depth" if getattr(model.config, "model_type", "") in METRIC_MODELS else "disparity"
    dev = next(model.parameters()).device
    inputs = processor(images=list(images), return_tensors="pt").to(dev)
    out = model(**inputs)
    sizes = [(im.size[1], im.size[0]) for im in images]
    maps = [r["predicted_depth"].float().cpu() for r in processor.post_process_depth_estimation(out, target_sizes=sizes)]
    if output == "depth":
        maps = [1.0 / m.clamp(min=1e-6) for m in maps]
    return [minmax(m) for m in maps]


def build_rgbd_pairs(
    src: str | os.PathLike,
    out: str | os.PathLike,
    depth_model: str,
    captions: str | os.PathLike | None = None,
    *,
    size: tuple[int, int] | None,  # (H, W) centre crop + resize; None keeps each image's size
    batch_size: int,
    device: str = "auto",
    output: Output = "auto",
    progress: bool = True,
) -> Path:
    """Write ``out`` (latent3d RGBD layout) from the captioned images in ``src``; depth by ``depth_model``.

    ``size`` (H, W): centre-crop + resize every image before depth estimation (None keeps each image's size;
    training needs one size). Relative depth only: ``near``/``far`` are null in ``rgbd.json``.
    """
    from PIL import Image
    from tqdm.auto import tqdm

    from latent3d.data.formats.rgbd import write_rgbd_index, write_rgbd_item

    pairs = read_captions(src, captions)
    model, proc = load_depth_model(depth_model, device)
    root = Path(out)
    if (root / "rgbd.json").exists():
        raise UserError(f"{root} already holds an RGBD set: choose a new output folder")
    items = []
    for s in tqdm(range(0, len(pairs), batch_size), desc="depth", disable=not progress):
        chunk = pairs[s : s + batch_size]
        imgs = []
        for p, _ in chunk:
            with Image.open(p) as im:
                imgs.append(center_resize(im.convert("RGB"), size))
        for k, (im, disp) in enumerate(zip(imgs, estimate_disparity(model, proc, imgs, output))):
            rgb = torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8).view(im.size[1], im.size[0], 3)
            items.append(write_rgbd_item(root, s + k, rgb.permute(2, 0, 1).float() / 255.0, disp, chunk[k][1]))
    source = f"{len(pairs)} captioned images from {Path(src).name}, depth by {depth_model} (normalised per image)"
    return write_rgbd_index(root, items, "pinhole", source, {"depth_model": str(depth_model)})
