"""The bundled object prior: a small text-to-image diffusion model over renders of latent3d's named objects.

It is an ordinary diffusers-layout folder (``unet/`` UNet2DConditionModel in pixel space, ``text_encoder/``
CLIPTextModel, ``tokenizer/`` word-level, ``scheduler/`` DDIMScheduler, ``model_index.json``), so it is loaded by
exactly the code that loads Stable Diffusion (:class:`~latent3d.priors.diffusers_prior.DiffusersPrior`).

``config`` (the settings of ``latent3d train prior``; importing it loads nothing heavy), ``data`` (the rendered,
cached training set), ``nets`` (its UNet, text encoder, tokenizer, scheduler), ``card`` (the model card),
``train`` (training with the shared trainer and export).
"""
