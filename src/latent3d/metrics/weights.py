"""Saved weights of latent3d's measuring nets (depth estimator, CLIP-style model, ...): one folder each in the
format of every latent3d model (:func:`latent3d.io.model_folder.write_model_folder`): ``model.safetensors`` (the
state dict; never pickle) and ``config.json`` (the kind, plus what is needed to build the network again and the
settings it was trained with)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from torch import nn


def save_metric_model(folder: str | Path, model: nn.Module, config: dict[str, Any], kind: str) -> Path:
    """Write ``model.safetensors`` + ``config.json`` (``{"latent3d": {"kind": kind, ...}, **config}``) atomically."""
    from latent3d.io.model_folder import write_model_folder

    return write_model_folder(folder, kind, config, {k: v.detach().cpu() for k, v in model.state_dict().items()})


def load_metric_model(folder: str | Path, kind: str, build: Callable[[dict], nn.Module]) -> nn.Module:
    """Read a folder written by :func:`save_metric_model` (a UserError if it is not a saved ``kind``, or a damaged
    one); ``build(config)`` (config.json without the kind) makes the module to load into. Returned in eval mode."""
    from latent3d.io.model_folder import read_model_folder

    saved = read_model_folder(folder, kind, f"train the {kind} again or copy it again")
    cfg = {k: v for k, v in saved.meta.items() if k != "latent3d"}
    sd = saved.tensors()

    def built() -> nn.Module:
        model = build(cfg)
        model.load_state_dict(sd)
        return model

    return saved.build(built).eval()
