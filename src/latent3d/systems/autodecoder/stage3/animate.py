"""``latent3d object PROMPT --animate``: a sampled articulated object moving its parts (3DVADER, arXiv 2307.05445,
Sec. 3 and Fig. 1: generated objects driven by poses). The generator's decoder gives the canonical volume and its
skinning weights (:meth:`~latent3d.systems.autodecoder.stage1.decoder.VolumeDecoder.decode_skinned`); the poses are a
training video's tracked part motion (:mod:`.motion`) or a new video's motion as the pose network reads it
(``--motion-video``, :mod:`.posenet`), taken relative to the root part (the object's own motion, not
the camera's) and stretched to the video's length; each frame is ray-marched through inverse skinning
(:func:`.skinning.render_skinned`) from the camera the videos were fitted with (azimuth 0 at the object's elevation
and distance, so frame 0 shows the object as its videos' first frames do).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from latent3d.systems.autodecoder.stage3.motion import resample, root_relative
from latent3d.systems.autodecoder.stage3.skinning import render_skinned


@torch.no_grad()
def animation_frames(density: Tensor, rgb: Tensor, skin: Tensor, motion: Tensor, size: int, radius: float,
                     elevation: float, fov: float, box: float, samples: int, on_frame=None) -> Tensor:  # fmt: skip
    """``density [1, N, N, N]``, ``rgb [3, ...]``, ``skin [P, ...]`` posed by ``motion [F, P, 4, 4]`` (used as given)
    -> frames ``[F, size, size, 3]`` in [0, 1], one camera for all (``on_frame(1)`` after each)."""
    from latent3d.render.camera import orbit_cameras, pixel_rays

    V, K = orbit_cameras(radius, elevation, 0.0, fov, size, size)
    o, d = pixel_rays(V.to(density), K.to(density), size, size, normalize=True)
    o, d = o.reshape(1, -1, 3), d.reshape(1, -1, 3)
    out = []
    for T in motion.to(density):
        img, _ = render_skinned(density, rgb, skin, T[None], o, d, box, samples)
        out.append(img.reshape(size, size, 3).clamp(0, 1).cpu())
        if on_frame is not None:
            on_frame(1)
    return torch.stack(out)


def write_animation(out: Path, density: Tensor, rgb: Tensor, skin: Tensor, motions: Tensor, index: int,
                    frames: int, size: int, radius: float, elevation: float, fov: float, box: float, samples: int,
                    on_frame=None) -> dict:  # fmt: skip
    """``out/animation.mp4`` of one sample (grids ``[1, 1|3|P, N, N, N]``) moved by training motion ``index`` of
    ``motions [M, F, P, 4, 4]`` (module docstring); returns its run.json entry."""
    from latent3d.io.video import write_video

    motion = resample(root_relative(motions[index].double()), frames).float()
    video = animation_frames(density[0], rgb[0], skin[0], motion, size, radius, elevation, fov, box, samples,
                             on_frame)  # fmt: skip
    path = write_video(out / "animation.mp4", video.numpy(), fps=24)
    return {"animation": path.name, "motion": index, "animation_frames": frames}
