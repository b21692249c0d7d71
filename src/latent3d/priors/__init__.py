"""2D diffusion priors behind one small protocol (:class:`~.base.DiffusionPrior`).

:func:`load_prior` takes a hub id (``stabilityai/stable-diffusion-2-1-base``), a local diffusers folder, or the
name of a bundled checkpoint, and returns a :class:`~.diffusers_prior.DiffusersPrior`: the same code runs real and
bundled weights.
"""

from .base import DiffusionPrior
from .loading import load_prior

__all__ = ["DiffusionPrior", "load_prior"]
