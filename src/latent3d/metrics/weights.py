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
    from safetensors.torch import save_file

    from latent3d.io.atomic import atomic_path, write_text

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    sd = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(folder / "model.safetensors") as tmp:
        save_file(sd, str(tmp))
    write_text(folder / "config.json", json.dumps({"kind": kind, **config}, indent=1))
    return folder


def load_metric_model(folder: str | Path, kind: str, build: Callable[[dict], nn.Module]) -> nn.Module:
    """Read a folder written by :func:`save_metric_model` (a UserError if it is not a saved ``kind``);
    ``build(config)`` makes the module to load into. Returned in eval mode."""
    from safetensors.torch import load_file

    from latent3d.errors import UserError

    folder = Path(folder)
    if not (folder / "config.json").is_file() or not (folder / "model.safetensors").is_file():
        raise UserError(f"{folder} is not a saved {kind} (config.json + model.safetensors expected)")
    cfg = json.loads((folder / "config.json").read_text())
    if cfg.get("kind") != kind:
        raise UserError(f"{folder} holds a {cfg.get('kind')!r}, not a {kind!r}")
    model = build(cfg)
    model.load_state_dict(load_file(str(folder / "model.safetensors")))
    return model.eval()
