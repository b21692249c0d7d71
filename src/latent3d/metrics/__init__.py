"""Evaluation: in-domain classifiers and scores trained by latent3d on its own renders."""
