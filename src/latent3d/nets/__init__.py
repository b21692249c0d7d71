"""Networks that diffusers does not have (loaded lazily; importing this package loads torch only).

``rgbd_vae``: LDM3D's RGB+depth KL-autoencoder (a widened diffusers ``AutoencoderKL``), its 6c/4c input/output
packing, the PatchGAN discriminator and the autoencoder fine-tuning loss.
``text_denoiser``: a UNet and the text encoder it cross-attends to as one trainable module.
``losses``: image losses shared by the autoencoders (pyramid L1, ...).
``vgg``: VGG-19 features and the perceptual loss built on them.
``embeddings``: per-object embeddings of an autodecoder (3DVADER, dense or hashed).
``vq``: the vector quantiser (VQ-VAE: straight-through gradient, commitment loss, dead-code restarts).
``standardize``: per-channel standardisation with statistics measured on the training data, saved as buffers.
``norm``, ``attention``: the norms (batch / group, 2-D and 3-D, the adaptive group norm) and the one attention block
that ``blocks3d`` (3DVADER's decoder parts) and ``unet3d`` (the ADM-style UNet, 3-D or 2-D) are built from.
"""
