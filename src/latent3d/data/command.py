"""``latent3d data ...``: building training data from a user's own files.

``latent3d data rgbd-pairs``: captioned images -> LDM3D's RGBD training pairs, depth by a monocular depth model
(LDM3D, arXiv 2305.10853, Sec. 3.1: DPT-Large); see :mod:`latent3d.data.rgbd_builder`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from latent3d.errors import UserError
from latent3d.options import DeviceOpt, OutOpt, SeedOpt, check_positive


def parse_hw(size: str) -> tuple[int, int] | None:
    """``"512"`` -> (512, 512), ``"384x512"`` -> (384, 512), ``"0"`` -> None (keep each image's size)."""
    parts = size.lower().split("x")
    try:
        hw = tuple(int(p) for p in parts)
    except ValueError:
        hw = ()
    if len(hw) not in (1, 2) or min(hw) < 0 or (0 in hw and hw != (0,)):
        raise UserError(f"--size {size!r}: give H, HxW (pixels) or 0 to keep each image's size")
    return None if hw == (0,) else (hw[0], hw[-1])


def rgbd_pairs(
    src: Annotated[Path, typer.Argument(help="Folder of images with metadata.jsonl / metadata.csv (columns file_name, text).")],
    out: OutOpt = Path("data/rgbd"),
    depth_model: Annotated[str, typer.Option(help="Depth estimator: a transformers hub id (in the local cache) or folder.")] = "Intel/dpt-large",
    captions: Annotated[Optional[Path], typer.Option(help="CSV/JSONL with file_name,text (default: metadata.jsonl/csv in SRC).")] = None,
    size: Annotated[str, typer.Option(help="H or HxW: centre-crop + resize every image (0: keep each image's size).")] = "512",
    batch_size: Annotated[int, typer.Option(help="Images per depth-model batch.")] = 8,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
) -> None:
    """Captioned images -> LDM3D training pairs (RGB + normalised inverse depth), for `latent3d train rgbd --data`."""
    from latent3d.data.rgbd_builder import build_rgbd_pairs
    from latent3d.runtime import seed_everything

    check_positive(batch_size=batch_size)
    hw = parse_hw(size)
    seed_everything(seed)  # a depth model that samples (dropout, diffusion-based estimators) is reproducible
    folder = build_rgbd_pairs(src, out, depth_model, captions, size=hw, batch_size=batch_size, device=device)
    typer.echo(f"wrote {folder}")
