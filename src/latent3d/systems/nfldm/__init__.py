"""NeuralField-LDM (Kim et al. 2023, arXiv 2304.09787): ``config`` (settings), ``episodes`` (posed RGB-D episodes
and their boxes), ``scene_ae`` (the scene auto-encoder, Sec. 3.1), ``train_scene_ae`` (its training, held-out
evaluation and run folder), ``command`` (``latent3d train scene-ae``)."""
