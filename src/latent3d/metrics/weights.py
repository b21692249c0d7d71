"""Saved weights of latent3d's measuring nets (depth estimator, CLIP-style model, ...): one folder each, holding
``model.safetensors`` (the state dict; never pickle) and ``config.json`` (``{"kind": ..., **config}``: what is
needed to build the network again, plus the settings it was trained with)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from torch import nn


def save_metric_model(folder: str | Path, model: nn.Module, config: dict[str, Any], kind: str) -> Path:
    """Write ``model.safetensors`` + ``config.json`` (``{"kind": ..., **config}``) atomically into ``folder``."""
    from latent3d.io.atomic import write_text
    from latent3d.io.model_folder import save_tensors

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_tensors({k: v.detach().cpu() for k, v in model.state_dict().items()}, folder / "model.safetensors")
    write_text(folder / "config.json", json.dumps({"kind": kind, **config}, indent=1))
    return folder


def load_metric_model(folder: str | Path, kind: str, build: Callable[[dict], nn.Module]) -> nn.Module:
    """Read a folder written by :func:`save_metric_model` (a UserError if it is not a saved ``kind``, or a damaged
    one); ``build(config)`` makes the module to load into. Returned in eval mode."""
    from latent3d.errors import UserError
    from latent3d.io.model_folder import fit_weights, load_tensors, read_config

    folder = Path(folder)
    if not (folder / "config.json").is_file() or not (folder / "model.safetensors").is_file():
        raise UserError(f"{folder} is not a saved {kind} (config.json + model.safetensors expected)")
    fix = f"train the {kind} again or copy it again"
    cfg = read_config(folder / "config.json", fix)
    if cfg.get("kind") != kind:
        raise UserError(f"{folder} holds a {cfg.get('kind')!r}, not a {kind!r}")
    sd = load_tensors(folder / "model.safetensors", fix)

    def built() -> nn.Module:
        model = build(cfg)
        model.load_state_dict(sd)
        return model

    return fit_weights(built, folder, fix).eval()
