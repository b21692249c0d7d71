"""2D diffusion priors behind one small protocol (:class:`~.base.DiffusionPrior`).

:func:`load_prior` takes a hub id (``stabilityai/stable-diffusion-2-1-base``), a local diffusers folder, or the
name of a bundled checkpoint, and returns a :class:`~.diffusers_prior.DiffusersPrior`: the same code runs real and
bundled weights. The two names load on first use, so that the command line can read
:mod:`latent3d.priors.object_prior.config` without importing torch.

Modules: ``base`` (the protocol), ``diffusers_prior`` (any diffusers/transformers components), ``loading``
(``--prior`` to a prior), ``lora`` (a diffusers LoRA merged into a prior: ``dream --lora``), ``sampling`` (DDIM +
classifier-free guidance), ``bundle`` (the text-to-image networks latent3d trains, exported as diffusers folders),
``vocab`` (word-level tokenizers), ``command`` (``latent3d sample``, ``latent3d train prior``), ``object_prior/`` (the
bundled object prior: config, data, nets, train, card), and the
interfaces one system offers another: ``initializer`` (text-to-3D initialisers for ``dream --init``) and ``panorama``
(text-to-panorama generators for ``immersive``).
"""

from __future__ import annotations

from typing import Any

__all__ = ["DiffusionPrior", "load_prior"]


def __getattr__(name: str) -> Any:
    if name == "DiffusionPrior":
        from .base import DiffusionPrior

        return DiffusionPrior
    if name == "load_prior":
        from .loading import load_prior

        return load_prior
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
