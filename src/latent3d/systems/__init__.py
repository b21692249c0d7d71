"""One package per paper, its modules named after the method's parts, each with the typer commands it declares
(``command.py``): ``ldm3d`` (LDM3D and LDM3D-pano), ``depthfusion`` (DepthFusion's immersive worlds),
``lucid_dreamer`` (LucidDreamer's Interval Score Matching, SDS as the baseline), ``autodecoder`` (3DVADER: the
autodecoder and the latent 3D diffusion over its volumes). NeuralField-LDM is to come as ``nfldm``.

No system imports another: what one system offers another goes through an interface in ``priors/`` that this module
registers (3DVADER's generator as a text-to-3D initialiser for ``dream --init``, LDM3D-pano as the text-to-panorama
generator of ``immersive``)."""

from __future__ import annotations

from typing import Any

from latent3d.priors.initializer import register_initializer
from latent3d.priors.panorama import LDM3D_PANO, register_panorama_generator


def _object_initializer(model: str):
    from latent3d.systems.autodecoder.command import object_initializer

    return object_initializer(model)


def _ldm3d_panorama(prompt: str, model: Any, seed: int, device: Any, steps: int | None, guidance: float | None):
    from latent3d.systems.ldm3d.panorama import generate_panorama

    return generate_panorama(prompt, model=model, seed=seed, device=device, steps=steps, guidance=guidance)


# the text-to-3D initialisers the systems provide, for `dream --init NAME` (systems depend on the protocol only)
register_initializer("object", _object_initializer)
# the text-to-panorama generators, for `immersive` (DepthFusion depends on the protocol, not on LDM3D's modules)
register_panorama_generator(LDM3D_PANO, _ldm3d_panorama)
