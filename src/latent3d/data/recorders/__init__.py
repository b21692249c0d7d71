"""Data recorded from a real engine: the third room of :mod:`latent3d.data`, beside ``procedural`` (what latent3d
renders itself) and ``formats`` (the datasets users bring).

Modules: ``vizdoom`` (posed RGB-D trajectories of an exploring agent in VizDoom, NeuralField-LDM's VizDoom data; needs
the optional ``vizdoom`` package, ``pip install 'latent3d[vizdoom]'``) and ``vizdoom_config`` (its settings and the
install check; torch-free, for the command line). A recorder writes through :mod:`latent3d.data.formats`. Importing
this package imports none of its modules.
"""
