"""3DVADER stage 2's data: the latent volumes of a ``latent3d train autodecoder`` run and their objects' captions
(``RUN/latents.safetensors``, written by :func:`latent3d.systems.autodecoder.stage1.run.export_run`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from latent3d.errors import UserError


@dataclass
class LatentSet:
    """An autodecoder run's latent volumes and their captions."""

    latents: Tensor  # [N, C, 8, 8, 8] float32
    captions: list[str]  # [N], "" where an object has none
    object_ids: list[str]


def read_latents(run_dir: str | Path) -> LatentSet:
    """``RUN/latents.safetensors`` of ``latent3d train autodecoder`` (every problem is one UserError line)."""
    from latent3d.io.model_folder import load_tensors, metadata_json, read_metadata

    path = Path(run_dir) / "latents.safetensors"
    fix = "pass the --out folder of a finished `latent3d train autodecoder` run"
    meta = read_metadata(path, fix)
    ids = metadata_json(meta, "object_ids", list, path, fix, items=str)
    caps = metadata_json(meta, "captions", (list, type(None)), path, fix, items=str, default=None) or [""] * len(ids)
    lat = load_tensors(path, fix).get("latents")
    if lat is None or lat.ndim != 5 or lat.shape[2:] != (8, 8, 8) or len(ids) != len(lat) or len(caps) != len(lat):
        shape = "no latents" if lat is None else f"latents {tuple(lat.shape)}"
        raise UserError(f"{path}: {shape} with {len(ids)} ids and {len(caps)} captions; expected [N, C, 8, 8, 8] and "
                        f"N of each; {fix}")
    lat = lat.float()
    if not torch.isfinite(lat).all():
        raise UserError(f"{path}: the latents hold NaN or infinity; retrain the autodecoder")
    return LatentSet(lat, caps, ids)
