"""3DVADER stage 1, the volumetric autodecoder (Ntavelis et al. 2023, Sec. 3.1, supplement B): ``decoder``
(embedding -> G1 -> 8^3 latent volume -> G2 -> radiance grid), ``cameras`` (learnable pose corrections), ``views``
(the posed views and the pixel patches of a step), ``train`` (losses and training on the shared trainer, held-out
evaluation), ``run`` (the run folder it writes: decoder, latent volumes, scores)."""
