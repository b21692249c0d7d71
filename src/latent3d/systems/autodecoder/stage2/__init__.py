"""3DVADER stage 2, latent 3D diffusion (Ntavelis et al. 2023, Sec. 3.2, supplement B.2): ``latents`` (stage 1's
latent volumes and captions), ``normalize`` (robust latent normalisation), ``text`` (text encoders, tokens),
``denoiser`` (EDM's F: the 3D UNet with its text encoder), ``train`` (EDM training, noise levels fitted to the data),
``generator`` (the generator folder: export, resolve, load)."""
