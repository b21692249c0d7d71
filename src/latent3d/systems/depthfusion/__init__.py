"""DepthFusion (LDM3D paper, Sec. 5): an RGBD panorama -> an immersive 360° world you stand inside, in stereo.

``world`` (displaced sphere, stereo, parallax views, tour), ``command`` (``latent3d immersive``)."""
