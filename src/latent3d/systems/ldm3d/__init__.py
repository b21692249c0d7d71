"""LDM3D (Stan et al. 2023, arXiv 2305.10853): text -> RGB + depth, its two-stage training, LDM3D-pano.

``pipeline`` (inference over Intel/ldm3d-layout folders), ``train`` (stage 1 RGBD autoencoder, stage 2 latent
diffusion), ``panorama`` (seamless equirect panoramas), ``command`` (``latent3d rgbd``)."""
