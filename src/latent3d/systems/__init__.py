"""One package per paper, its modules named after the method's parts, each with the typer commands it declares
(``command.py``): ``ldm3d`` (LDM3D and LDM3D-pano), ``depthfusion`` (DepthFusion's immersive worlds),
``lucid_dreamer`` (LucidDreamer's Interval Score Matching, SDS as the baseline), ``autodecoder`` (3DVADER: the
autodecoder and the latent 3D diffusion over its volumes). NeuralField-LDM is to come as ``nfldm``."""

from latent3d.priors.initializer import register_initializer


def _object_initializer(model: str):
    from latent3d.systems.autodecoder.command import object_initializer

    return object_initializer(model)


# the text-to-3D initialisers the systems provide, for `dream --init NAME` (systems depend on the protocol only)
register_initializer("object", _object_initializer)
