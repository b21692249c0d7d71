"""``latent3d app``: a local web page over the same commands (gradio; ``pip install latent3d[app]``)."""
