"""The protocol of a text-to-panorama generator: what DepthFusion's immersive world is built from when no panorama
is given (LDM3D, arXiv 2305.10853, Sec. 5: LDM3D-pano's equirectangular RGBD panorama on a depth-displaced sphere).
The ``immersive`` command depends on this interface, never on another system's modules; LDM3D-pano's
:func:`latent3d.systems.ldm3d.panorama.generate_panorama` is one implementation, registered by
:mod:`latent3d.systems` as :data:`LDM3D_PANO`."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from latent3d.errors import UserError

LDM3D_PANO = "ldm3d-pano"  # the name of LDM3D-pano's generator, the one ``immersive`` uses


class TextToPanorama(Protocol):
    """Generates an equirectangular RGBD panorama from a prompt."""

    def __call__(self, prompt: str, model: Any, seed: int, device: Any, steps: int | None,
                 guidance: float | None) -> tuple[np.ndarray, np.ndarray, dict]:  # fmt: skip
        """``model``: a model name or folder of the generator (``None``: its default). Returns ``rgb [H, W, 3]`` in
        [0, 1], ``depth [H, W]`` disparity in [0, 1] (bright = near), and a dict of the settings used (for
        ``run.json``)."""


_REGISTRY: dict[str, TextToPanorama] = {}


def register_panorama_generator(name: str, generate: TextToPanorama) -> None:
    """Make ``name`` resolve to ``generate`` in :func:`get_panorama_generator`."""
    _REGISTRY[name] = generate


def get_panorama_generator(name: str) -> TextToPanorama:
    """The registered text-to-panorama generator ``name`` (one UserError line for an unknown name)."""
    if name not in _REGISTRY:
        known = ", ".join(sorted(_REGISTRY)) or "none registered"
        raise UserError(f"no text-to-panorama generator called {name!r} (known: {known}); "
                        f"import latent3d.systems to register the bundled ones")  # fmt: skip
    return _REGISTRY[name]
