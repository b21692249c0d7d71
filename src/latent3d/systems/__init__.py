"""One package per paper, its modules named after the method's parts, each with the typer commands it declares
(``command.py``): ``ldm3d`` (LDM3D and LDM3D-pano), ``depthfusion`` (DepthFusion's immersive worlds),
``lucid_dreamer`` (LucidDreamer's Interval Score Matching, SDS as the baseline), ``autodecoder`` (3DVADER: the
autodecoder and the latent 3D diffusion over its volumes). NeuralField-LDM is to come as ``nfldm``."""
