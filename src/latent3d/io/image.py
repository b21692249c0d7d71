"""RGB images: normalise any array/tensor layout to uint8 HWC, save atomically, load as float, tile into a grid."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from latent3d.errors import UserError
from latent3d.io.atomic import atomic_path

_CHANNELS = (1, 3, 4)


def _to_numpy(x: Any) -> tuple[np.ndarray, bool]:
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        if x.dtype in (torch.bfloat16, torch.float16):
            x = x.float()
        return x.numpy(), True
    return np.asarray(x), False


def to_uint8_image(img: Any) -> np.ndarray:  # -> [H, W, C] uint8, C in {1, 3, 4}
    """Convert an image to uint8 channel-last.

    Accepts NumPy arrays or torch tensors, ``[H, W]``, ``[H, W, C]``, ``[C, H, W]`` or ``[1, C, H, W]`` with
    C in {1, 3, 4}; floats are taken to be in [0, 1] (clamped), uint8 is kept, bool becomes 0/255. A 3-D input
    whose layout is ambiguous (e.g. ``[3, 4, 3]``) is read as CHW for tensors and HWC for NumPy arrays.
    """
    x, is_torch = _to_numpy(img)
    if x.ndim == 4 and x.shape[0] == 1:
        x = x[0]
    if x.ndim == 2:
        x = x[:, :, None]
    if x.ndim != 3:
        raise ValueError(f"expected an image [H, W], [H, W, C] or [C, H, W], got shape {x.shape}")
    chw = x.shape[0] in _CHANNELS and (x.shape[-1] not in _CHANNELS or is_torch)
    if chw:
        x = np.moveaxis(x, 0, -1)
    if x.shape[-1] not in _CHANNELS:
        raise ValueError(f"expected 1, 3 or 4 channels, got shape {x.shape}")
    if x.dtype == np.uint8:
        return np.ascontiguousarray(x)
    if x.dtype == np.bool_:
        return x.astype(np.uint8) * 255
    if np.issubdtype(x.dtype, np.floating):
        return (np.nan_to_num(x.astype(np.float32)).clip(0.0, 1.0) * 255.0).round().astype(np.uint8)
    raise ValueError(f"expected a float image in [0, 1] or uint8, got dtype {x.dtype}")


def save_image(path: str | os.PathLike, img: Any) -> Path:  # img: [H, W, 3] | [3, H, W], float [0, 1] or uint8
    """Atomically save an image; the format comes from the suffix (.png, .jpg, .webp, ...)."""
    from PIL import Image

    x = to_uint8_image(img)
    x = x[:, :, 0] if x.shape[-1] == 1 else x
    path = Path(path)
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"{path}: unknown image suffix {path.suffix!r}; use .png, .jpg or .webp")
    pil = Image.fromarray(x)
    if fmt == "JPEG" and pil.mode == "RGBA":
        pil = pil.convert("RGB")
    with atomic_path(path) as tmp:
        pil.save(tmp, format=fmt)
    return path


# Refuse images above this many pixels before decoding them (16384 x 8192 = 2^27; 9 bytes a pixel as float RGB is
# 1.2 GB): far above any resolution the papers use, and PIL's own limit raises a traceback instead.
MAX_IMAGE_PIXELS = 1 << 27


def read_pil_array(path: str | os.PathLike, mode: str | None = None, what: str = "image") -> tuple[np.ndarray, str]:
    """Decode an image file to an array (converted to PIL ``mode`` if given) and its original PIL mode.

    Every failure of the file -- missing, a folder or FIFO, not an image, truncated, corrupt, 0 pixels, or more than
    :data:`MAX_IMAGE_PIXELS` -- becomes one :class:`UserError` naming the file and ``what`` it was meant to be."""
    from PIL import Image

    from latent3d.io.files import open_regular

    path = Path(path)
    try:
        with open_regular(path, what, f"pass the path of the {what}") as fh, Image.open(fh) as im:
            w, h = im.size
            if w * h > MAX_IMAGE_PIXELS:
                raise UserError(f"{path}: the {what} is {w}x{h} pixels, more than latent3d reads "
                                f"({MAX_IMAGE_PIXELS} pixels); downscale it first")
            if w == 0 or h == 0:
                raise UserError(f"{path}: the {what} has no pixels ({w}x{h})")
            src_mode = im.mode
            arr = np.asarray(im.convert(mode) if mode is not None and im.mode != mode else im)
    except UserError:
        raise
    except (OSError, ValueError, SyntaxError, TypeError, EOFError, Image.DecompressionBombError) as e:
        # PIL raises UnidentifiedImageError (an OSError) for non-images, OSError for truncated data, ValueError /
        # SyntaxError / EOFError from some decoders on corrupt headers
        raise UserError(f"{path}: not a readable {what} ({type(e).__name__}: {e})") from None
    return arr, src_mode


def load_image(path: str | os.PathLike) -> np.ndarray:  # -> [H, W, 3] float32 in [0, 1]
    """Load any PIL-readable image as RGB float32 in [0, 1] (alpha dropped, greyscale replicated); a file that is
    not a readable image is one :class:`UserError`."""
    rgb, _ = read_pil_array(path, "RGB", "RGB image")
    return rgb.astype(np.float32) / 255.0


def make_grid(images: Sequence[Any], ncols: int | None = None, pad: int = 2, pad_value: int = 255) -> np.ndarray:
    """Tile images row-major into one uint8 RGB image ``[H', W', 3]``.

    Inputs may differ in size and layout (anything :func:`to_uint8_image` takes); each cell is the size of the
    largest image, images sit in its top-left corner. ``ncols`` defaults to ceil(sqrt(n)).
    """
    if len(images) == 0:
        raise ValueError("make_grid needs at least one image")
    tiles = []
    for img in images:
        x = to_uint8_image(img)
        tiles.append(np.repeat(x, 3, axis=-1) if x.shape[-1] == 1 else x[..., :3])
    n = len(tiles)
    ncols = max(1, min(ncols or int(np.ceil(np.sqrt(n))), n))
    nrows = (n + ncols - 1) // ncols
    ch, cw = max(t.shape[0] for t in tiles), max(t.shape[1] for t in tiles)
    grid = np.full((nrows * ch + (nrows + 1) * pad, ncols * cw + (ncols + 1) * pad, 3), pad_value, np.uint8)
    for i, t in enumerate(tiles):
        r, c = divmod(i, ncols)
        y, x = pad + r * (ch + pad), pad + c * (cw + pad)
        grid[y : y + t.shape[0], x : x + t.shape[1]] = t
    return grid
