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


def render_frames(density: Tensor, rgb: Tensor, skin: Tensor, transforms: Tensor, V: Tensor, K: Tensor,
                  size: tuple[int, int], box: float, samples: int = 64) -> Tensor:  # fmt: skip  # -> [F, H, W, 3]
    """Whole frames in [0, 1] of a skinned grid (``[1|3|P, N, N, N]``) posed by ``transforms [F, P, 4, 4]``, seen by
    the one camera ``V [4, 4]``, ``K [3, 3]``."""
    from latent3d.render.camera import pixel_rays

    n, (H, W) = len(transforms), size
    o, d = pixel_rays(V.expand(n, 4, 4).to(density), K.expand(n, 3, 3).to(density), W, H, normalize=True)
    with torch.no_grad():
        out, _ = render_skinned(density, rgb, skin, transforms.to(density), o.reshape(n, -1, 3), d.reshape(n, -1, 3),
                                box, samples)  # fmt: skip
    return out.reshape(n, H, W, 3).clamp(0, 1)


@torch.no_grad()
def animation_frames(density: Tensor, rgb: Tensor, skin: Tensor, motion: Tensor, size: int, radius: float,
                     elevation: float, fov: float, box: float, samples: int, on_frame=None) -> Tensor:  # fmt: skip
    """``density [1, N, N, N]``, ``rgb [3, ...]``, ``skin [P, ...]`` posed by ``motion [F, P, 4, 4]`` (used as given)
    -> frames ``[F, size, size, 3]`` in [0, 1], one camera for all (``on_frame(1)`` after each)."""
    from latent3d.render.camera import orbit_cameras

    V, K = orbit_cameras(radius, elevation, 0.0, fov, size, size)
    out = []
    for T in motion:  # one frame at a time: a whole video's rays at once would not fit in memory
        out.append(render_frames(density, rgb, skin, T[None], V[0], K[0], (size, size), box, samples)[0].cpu())
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
