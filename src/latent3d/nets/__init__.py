"""Networks that diffusers does not have (loaded lazily; importing this package loads torch only).

``rgbd_vae``: LDM3D's RGB+depth KL-autoencoder (a widened diffusers ``AutoencoderKL``), its 6c/4c input/output
packing, the PatchGAN discriminator and the autoencoder fine-tuning loss.
``text_denoiser``: a UNet and the text encoder it cross-attends to as one trainable module.
``losses``: image losses shared by the autoencoders (pyramid L1, ...).
``vgg``: VGG-19 features and the perceptual loss built on them.
``embeddings``: per-object embeddings of an autodecoder (3DVADER, dense or hashed).
``blocks3d``: 3D blocks of 3DVADER's volume generator G1.
``unet3d``: a volume UNet (ADM made 3D) for diffusion over 3D latents.
"""
