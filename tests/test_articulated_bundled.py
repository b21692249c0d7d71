"""The bundled articulated generator `articulated-tiny` (hinge boxes): the prompt decides the colour (same seed, yellow
vs green box), and `--animate` moves the sample's lid part while the rest stays (a training motion through inverse
skinning)."""

from __future__ import annotations

import pytest
import torch

from latent3d.systems.autodecoder.generate import FOV, sample_latents
from latent3d.systems.autodecoder.stage2.generator import load_generator, resolve_model
from latent3d.systems.autodecoder.stage3.animate import animation_frames
from latent3d.systems.autodecoder.stage3.fit import relative_angles_deg
from latent3d.systems.autodecoder.stage3.motion import root_relative


@pytest.fixture(scope="module")
def samples():
    gen = load_generator(resolve_model("articulated-tiny"))
    lat = sample_latents(gen, ["a yellow box with a lid"] * 2 + ["a green box with a lid"] * 2, steps=16, guidance=3.0,
                         seed=0)  # fmt: skip
    with torch.no_grad():
        return gen, gen.decoder.decode_skinned(lat)


def _opaque(density: torch.Tensor, box: float) -> torch.Tensor:  # [1, N, N, N] -> [N, N, N] bool
    return -torch.expm1(-density[0] * (2 * box / density.shape[-1])) > 0.5


def test_the_same_seed_gives_a_yellow_box_and_a_green_box(samples):
    gen, (density, rgb, _) = samples
    box = float(gen.meta["box"])
    colour = torch.stack([rgb[k][:, _opaque(density[k], box)].mean(1) for k in range(4)])  # [4, 3]
    assert (colour[:2, 0] > colour[:2, 2] + 0.15).all(), colour  # yellow: red and green, no blue
    assert (colour[2:, 1] > 1.5 * colour[2:, 0]).all(), colour  # green (dark when shaded): 1.5 x more green than red
    assert colour[:2, 0].min() > colour[2:, 0].max() + 0.15, colour


def test_animate_moves_the_lid_and_leaves_the_box(samples):
    gen, (density, rgb, skin) = samples
    box = float(gen.meta["box"])
    opening = torch.stack([relative_angles_deg(m, 1, root=0).max() for m in gen.motions])
    motion = root_relative(gen.motions[int(opening.argmax())])
    widest = int(relative_angles_deg(motion, 1, root=0).argmax())
    frames = animation_frames(density[0], rgb[0], skin[0], motion[[0, widest]], 48, 3.0, 20.0, FOV, box, 64)
    with torch.no_grad():
        from latent3d.render.camera import orbit_cameras, pixel_rays
        from latent3d.systems.autodecoder.stage3.skinning import render_skinned

        V, K = orbit_cameras(3.0, 20.0, 0.0, FOV, 48, 48)
        o, d = pixel_rays(V, K, 48, 48, normalize=True)
        _, occ, share = render_skinned(density[0], rgb[0], skin[0], motion[:1], o.reshape(1, -1, 3),
                                       d.reshape(1, -1, 3), box, 64, parts=True)  # fmt: skip
    seen = (occ[0] > 0.5).reshape(48, 48)
    lid_part = int(torch.stack([(skin[0].argmax(0)[_opaque(density[0], box)] == p).float().mean()
                                for p in range(2)]).argmin())  # fmt: skip
    lid = seen & (share[0].argmax(-1).reshape(48, 48) == lid_part)
    body = seen & ~lid
    change = (frames[1] - frames[0]).abs().amax(-1)  # [48, 48]
    assert opening.max() > 30  # the bundled motions open the lid
    assert change[lid].mean() > 3 * change[body].mean() and change[lid].mean() > 0.1, (change[lid].mean(),
                                                                                        change[body].mean())
