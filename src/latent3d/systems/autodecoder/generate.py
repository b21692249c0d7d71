"""``latent3d object``: 3DVADER's generation (Ntavelis et al. 2023, Sec. 3.2): Heun sampling of the probability-flow
ODE (Karras et al. 2022, Alg. 1, Karras noise levels) of the text-conditioned latent diffusion model with
classifier-free guidance (Ho & Salimans 2022; paper: scale 3), inverse normalisation, G2 decoding to a radiance grid,
and the grid turned into what users open: orbit views, a turntable, the grid itself, a coloured mesh and Gaussians.

Per sample ``OUT/sample_XX/``: ``views/000.png ...``, ``turntable.mp4``, ``volume.npz``, ``mesh.glb`` (glTF y-up),
``gaussians.ply`` (INRIA layout), with ``--animate`` (articulated models) ``animation.mp4``; and ``OUT/grid.png``
(first view of every sample), ``OUT/run.json``.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

import torch
from torch import Tensor

from latent3d.diffusion.edm import sample_heun
from latent3d.diffusion.guidance import CFGModel
from latent3d.diffusion.schedules import karras_sigmas
from latent3d.nets.text_denoiser import encode_text, tokenize
from latent3d.systems.autodecoder.config import ObjectConfig
from latent3d.systems.autodecoder.stage2.generator import ObjectGenerator

FOV = 0.7  # radians, the field of view of latent3d's object renders


@torch.no_grad()
def sample_latents(
    gen: ObjectGenerator,
    prompts: list[str],  # [B]
    steps: int,
    guidance: float,
    seed: int,
    sigma_min: float = ObjectConfig.sigma_min,
    sigma_max: float = ObjectConfig.sigma_max,
    progress: bool = False,
) -> Tensor:  # [B, C, 8, 8, 8] latent volumes (de-normalised: what G2 decodes)
    """Heun (``steps`` noise levels, 2 steps - 1 network calls) from ``N(0, sigma_max^2)`` noise drawn on the CPU
    from ``seed`` (the same noise on every device), guided by ``uncond + w (cond - uncond)`` with the empty prompt
    as ``uncond``; the generator's denoiser is already preconditioned (:class:`~latent3d.diffusion.edm.EDMPrecond`)."""
    cfg = gen.cfg
    dev = next(gen.denoiser.parameters()).device
    ids, mask = tokenize(gen.tokenizer, list(prompts), cfg.max_tokens)
    e_ids, e_mask = tokenize(gen.tokenizer, [""], cfg.max_tokens)
    cond = encode_text(gen.text_encoder, ids.to(dev), mask.to(dev))
    uncond = encode_text(gen.text_encoder, e_ids.to(dev), e_mask.to(dev))
    model = CFGModel(gen.denoiser, {"cond": cond, "cond_mask": mask.to(dev)},
                     {"cond": uncond, "cond_mask": e_mask.to(dev)}, guidance)  # fmt: skip
    shape = (len(prompts), *gen.meta["latent_shape"])
    g = torch.Generator().manual_seed(seed)
    sigmas = karras_sigmas(steps, sigma_min, sigma_max).to(dev)
    x = torch.randn(shape, generator=g).to(dev) * sigmas[0]
    z = sample_heun(model, x, sigmas, disable=not progress)
    return gen.normalizer.denormalize(z)


@torch.no_grad()
def write_sample(out: Path, density: Tensor, rgb: Tensor, gen: ObjectGenerator, cfg: ObjectConfig,
                 on_view=None) -> dict:  # fmt: skip
    """One sample's files (module docstring) from its grid ``density [1, 1, N, N, N]``, ``rgb [1, 3, N, N, N]``;
    returns its entry of run.json (``on_view(1)`` after each rendered view and turntable frame)."""
    from latent3d.io.image import save_image
    from latent3d.io.mesh import export_mesh
    from latent3d.io.ply import write_gaussian_ply
    from latent3d.io.video import write_video
    from latent3d.io.volume import write_volume_npz
    from latent3d.render.camera import turntable_cameras
    from latent3d.render.grid_assets import grid_gaussians, grid_mesh
    from latent3d.render.volume import render_grid_views

    ad = gen.decoder.cfg
    box = float(gen.meta["box"])
    lo, hi = (-box,) * 3, (box,) * 3
    V, K = turntable_cameras(cfg.views, cfg.size, cfg.radius, FOV, cfg.elevation)
    views, _ = render_grid_views(density, rgb, V.to(density), K.to(density), cfg.size, cfg.size, ad.box, ad.samples,
                                 on_view=on_view)  # fmt: skip
    views = views.clamp(0, 1).cpu()
    for i, img in enumerate(views):
        save_image(out / "views" / f"{i:03d}.png", img.numpy())
    V, K = turntable_cameras(cfg.frames, cfg.size, cfg.radius, FOV, cfg.elevation)
    frames, _ = render_grid_views(density, rgb, V.to(density), K.to(density), cfg.size, cfg.size, ad.box, ad.samples,
                                  on_view=on_view)  # fmt: skip
    video = write_video(out / "turntable.mp4", frames.clamp(0, 1).cpu().numpy(), fps=24)
    d, c = density[0, 0].cpu(), rgb[0].cpu()
    write_volume_npz(out / "volume.npz", d, c, lo, hi)
    entry = {"views": [f"views/{i:03d}.png" for i in range(len(views))], "turntable": video.name,
             "volume": "volume.npz"}  # fmt: skip
    try:
        verts, faces, colors = grid_mesh(d, c, lo, hi)
        export_mesh(out / "mesh.glb", verts, faces, vertex_colors=colors)
        entry |= {"mesh": "mesh.glb", "mesh_vertices": int(len(verts)), "mesh_faces": int(len(faces))}
    except ValueError as e:  # an empty grid has no surface
        entry["mesh_error"] = str(e)
    g = grid_gaussians(d, c, lo, hi)
    write_gaussian_ply(out / "gaussians.ply", g)
    entry |= {"gaussians": "gaussians.ply", "num_gaussians": g.num}
    entry["first_view"] = views[0]
    return entry


def generate_objects(gen: ObjectGenerator, prompt: str, out: Path, cfg: ObjectConfig, seed: int,
                     model_name: str, progress: bool = True, video=None) -> dict:  # fmt: skip
    """Sample ``cfg.n`` objects for ``prompt`` and write every output (module docstring); returns run.json. With
    ``cfg.animate``, ``video`` (a read ``--motion-video``, ``VideoFrames``) gives the motion through the pose
    network; without it, the generator's training motion ``cfg.motion``."""
    from tqdm.auto import tqdm

    from latent3d.io.atomic import atomic_dir, write_text
    from latent3d.io.image import make_grid, save_image

    t0 = time.time()
    lat = sample_latents(gen, [prompt] * cfg.n, cfg.steps, cfg.guidance, seed, cfg.sigma_min, cfg.sigma_max,
                         progress=progress)  # fmt: skip
    t_sample = time.time() - t0
    for k in range(cfg.n):  # before anything is written
        _check_finite(f"sample_{k:02d}", lat[k], cfg)
    motions, index = (gen.motions, cfg.motion) if video is None else (_video_motion(gen, video), 0)
    samples, firsts = [], []
    bar = tqdm(total=cfg.n * (cfg.views + cfg.frames * (2 if cfg.animate else 1)), desc="render views + frames",
               unit="image", disable=not progress)  # fmt: skip
    for k in range(cfg.n):
        name = f"sample_{k:02d}"
        density, rgb, skin = gen.decoder.decode_skinned(lat[k:k + 1])
        _check_finite(name, torch.cat([density, rgb, skin], dim=1), cfg)
        with atomic_dir(out / name) as tmp:  # a sample folder is there whole or not at all
            entry = write_sample(tmp, density, rgb, gen, cfg, on_view=bar.update)
            if cfg.animate:
                entry |= _animate(tmp, density, rgb, skin, gen, motions, index, cfg, bar.update)
                entry["motion"] = index if video is None else str(video.folder)
        firsts.append(entry.pop("first_view").numpy())
        samples.append({"folder": name, **entry})
    bar.close()
    save_image(out / "grid.png", make_grid(firsts, ncols=min(cfg.n, 4)))
    run = {"prompt": prompt, "model": model_name, "seed": seed, **{k: v for k, v in asdict(cfg).items() if k != "model"},
           "grid_size": gen.meta["grid_size"], "box": gen.meta["box"], "sampling_s": round(t_sample, 2),
           "total_s": round(time.time() - t0, 2), "network_calls": 2 * cfg.steps - 1, "samples": samples}  # fmt: skip
    write_text(out / "run.json", json.dumps(run, indent=1))
    return run


def _video_motion(gen: ObjectGenerator, video) -> Tensor:  # -> [1, F, P, 4, 4]
    """The part motion the generator's pose network reads from a video (``VideoFrames``; white mask without masks)."""
    from latent3d.data.formats.multiview import white_mask
    from latent3d.systems.autodecoder.stage3.posenet import predict_motion

    frames = torch.from_numpy(video.frames).float() / 255.0
    masks = torch.from_numpy(video.masks if video.masks is not None else white_mask(video.frames))
    return predict_motion(gen.posenet.cpu(), frames, masks)[None]


def _animate(out: Path, density: Tensor, rgb: Tensor, skin: Tensor, gen: ObjectGenerator, motions: Tensor,
             index: int, cfg: ObjectConfig, on_frame) -> dict:  # fmt: skip
    """``animation.mp4`` of an articulated generator's sample (:mod:`.stage3.animate`)."""
    from latent3d.systems.autodecoder.stage3.animate import write_animation

    return write_animation(out, density, rgb, skin, motions, index, cfg.frames, cfg.size, cfg.radius,
                           cfg.elevation, FOV, float(gen.meta["box"]), gen.decoder.cfg.samples, on_frame)


def _check_finite(name: str, x: Tensor, cfg: ObjectConfig) -> None:
    """One UserError line when a sample's latent or decoded grid holds NaN or infinity (too strong a guidance)."""
    if not torch.isfinite(x).all():
        from latent3d.errors import UserError

        raise UserError(f"{name}: the sampled volume holds NaN or infinity, so nothing of it was written; --guidance "
                        f"{cfg.guidance:g} is too strong for this model: lower it (default {ObjectConfig.guidance:g})")


@torch.no_grad()
def object_gaussians(gen: ObjectGenerator, prompt: str, seed: int, max_points: int | None = None,
                     steps: int = ObjectConfig.steps, guidance: float = ObjectConfig.guidance):  # fmt: skip
    """One sample of ``prompt`` as Gaussians (:func:`latent3d.render.grid_assets.grid_gaussians`, the most opaque
    ``max_points`` voxels): a 3D starting point for score distillation, as LucidDreamer starts from Point-E's points
    (Liang et al. 2024, Sec. 4.1). Returns a :class:`latent3d.io.ply.GaussianPLY` in the object frame (z up, the
    object inside the generator's box)."""
    from latent3d.render.grid_assets import grid_gaussians

    lat = sample_latents(gen, [prompt], steps, guidance, seed)
    density, rgb = gen.decoder.decode(lat)
    box = float(gen.meta["box"])
    return grid_gaussians(density[0, 0].cpu(), rgb[0].cpu(), (-box,) * 3, (box,) * 3, max_points=max_points)
