"""NeuralField-LDM (Kim et al. 2023, arXiv 2304.09787): ``config`` (settings), ``episodes`` (posed RGB-D episodes
and their boxes), ``scene_ae`` (the scene auto-encoder, Sec. 3.1), ``train_scene_ae`` (its training, held-out
evaluation and run folder), ``latent_ae`` (the latent voxel auto-encoder, Sec. 3.2), ``train_latent_ae`` (its
training on the scene auto-encoder's grids, evaluation, run folder and latents), ``command`` (``latent3d train
scene-ae``, ``latent3d train scene-latent-ae``)."""
