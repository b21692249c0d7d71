"""LDM3D's commands: ``latent3d rgbd`` (one prompt -> RGB image, 16-bit depth, depth preview, coloured point cloud,
run.json) and its two training stages, ``latent3d train rgbd-vae`` and ``latent3d train rgbd``.

Options take their defaults and help from :mod:`latent3d.systems.ldm3d.config`; the heavy imports happen inside the
commands, so that ``latent3d --help`` stays light.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from latent3d.errors import UserError
from latent3d.options import (CHECKPOINT_EVERY, CheckpointEveryOpt, DeviceOpt, LDM3DGuidanceOpt, LDM3DStepsOpt,
                              NegativeOpt, OutOpt, ResumeOpt, SeedOpt, defaults, field_doc, field_option,
                              invocation)  # fmt: skip
from latent3d.ranges import OneOf, Range, choices
from latent3d.systems.ldm3d.config import RGBDDataConfig, RGBDLDMConfig, RGBDVAEConfig

FILES = ("rgb.png", "depth.png", "depth_preview.png", "points.ply", "run.json")
_VAE, _LDM = defaults(RGBDVAEConfig), defaults(RGBDLDMConfig)


def rgbd(
    prompt: Annotated[str, typer.Argument(help='Text prompt, e.g. "a red snowman on a blue floor".')],
    out: OutOpt = Path("out/rgbd"),
    model: Annotated[Optional[str], typer.Option(help="Bundled name (ldm3d-tiny, the default), a diffusers folder in the Intel/ldm3d layout, or a hub id (Intel/ldm3d, Intel/ldm3d-4c).")] = None,
    steps: LDM3DStepsOpt = None,
    guidance: LDM3DGuidanceOpt = None,
    size: Annotated[Optional[str], typer.Option(help="HxW in pixels, multiples of the autoencoder's downsampling (default: the model's native size).")] = None,
    negative: NegativeOpt = "",
    near: Annotated[float, typer.Option(callback=Range(0, 1e6, open_lo=True, integer=False), help="Distance given to the nearest depth value (1.0) when lifting points.ply.")] = 1.0,
    far: Annotated[float, typer.Option(callback=Range(0, 1e6, open_lo=True, integer=False), help="Distance given to the farthest depth value (0.0) when lifting points.ply.")] = 10.0,
    fov: Annotated[float, typer.Option(callback=Range(0, 180, open_lo=True, open_hi=True, integer=False), help="Vertical field of view in degrees assumed for points.ply (pinhole models; panoramas use equirect rays).")] = 60.0,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
) -> dict:
    """Text to RGB + depth (LDM3D): writes rgb.png, depth.png (16-bit, bright = near), depth_preview.png, points.ply, run.json."""
    # One RGBD image by DDIM + CFG, each of FILES written atomically under `out`. depth.png is the 16-bit normalised
    # inverse depth exactly as the pipeline returned it; points.ply lifts it with z = 1 / (d (1/near - 1/far) + 1/far)
    # and a pinhole camera of vertical field of view `fov`, or along equirect rays for a panorama model (lift_points).
    import torch

    from latent3d.io.atomic import write_text
    from latent3d.io.depth import depth_preview, write_depth_png16
    from latent3d.io.image import save_image
    from latent3d.io.ply import write_point_ply
    from latent3d.runtime import resolve_device, seed_everything
    from latent3d.systems.ldm3d.pipeline import DEFAULT_RGBD_MODEL, RGBDPipeline, default_intrinsics, lift_points, parse_size

    if not prompt.strip():
        raise UserError("the prompt is empty: describe the image, e.g. 'a red snowman on a blue floor'")
    if not near < far:
        raise UserError(f"--near must be below --far (got {near}, {far})")
    hw = parse_size(size)
    if hw is not None:
        from latent3d.memory import check_size_fits

        check_size_fits(model or DEFAULT_RGBD_MODEL, *hw)
    t0 = time.time()
    dev = resolve_device(device)
    gen = seed_everything(seed)
    pipe = RGBDPipeline.from_pretrained(model, dev)
    steps, guidance, height, width = pipe.settings(steps, guidance, *(hw or (None, None)))
    t_load = time.time() - t0
    t1 = time.time()
    res = pipe(prompt, steps, guidance, negative, height, width, generator=gen)
    t_sample = time.time() - t1
    rgb, depth = res.rgb[0], res.depth[0]  # [H, W, 3] float, [H, W] uint16
    depth_np = depth.numpy()
    K = None if pipe.is_pano else default_intrinsics(height, width, fov)  # panoramas: equirect rays
    points, colors = lift_points(rgb, depth, K, near, far)

    out = Path(out)
    save_image(out / "rgb.png", rgb.numpy())  # NumPy: always read as [H, W, 3]
    write_depth_png16(out / "depth.png", depth_np)
    save_image(out / "depth_preview.png", depth_preview(depth_np.astype("float64"), kind="disparity"))
    write_point_ply(out / "points.ply", points, colors)
    run = {
        "command": "rgbd", "prompt": prompt, "negative": negative, "model": str(model or DEFAULT_RGBD_MODEL),
        "channels": pipe.channels, "steps": steps, "guidance": guidance, "size": [height, width], "seed": seed,
        "device": str(dev), "dtype": str(pipe.prior.dtype).replace("torch.", ""),
        "depth": {"meaning": "normalised inverse depth (disparity), bright = near, as LDM3D", "dtype": "uint16",
                  "min": int(depth_np.min()), "max": int(depth_np.max())},
        "points": {"n": int(points.shape[0]), "near": near, "far": far,
                   "depth_from_disparity": "z = 1 / (d * (1/near - 1/far) + 1/far), d = depth / 65535",
                   **({"projection": "equirect", "axes": "world: +z up, centre column along +x, z = ray distance"}
                      if K is None else
                      {"projection": "pinhole", "fov_y_deg": fov, "K": K.tolist(),
                       "axes": "camera space, OpenCV: +x right, +y down, +z forward"})},
        "files": list(FILES), "load_s": round(t_load, 3), "sample_s": round(t_sample, 3),
        "total_s": round(time.time() - t0, 3), "torch": torch.__version__,
    }  # fmt: skip
    write_text(out / "run.json", json.dumps(run, indent=1))
    print(f"wrote {out}: {', '.join(FILES)} ({height}x{width}, {steps} steps, guidance {guidance})")
    return run


PanoOpt = Annotated[bool, field_option(RGBDDataConfig, "pano", "--pano")]
DataOpt = Annotated[Optional[Path], field_option(RGBDDataConfig, "data", "--data")]
NImagesOpt = Annotated[int, field_option(RGBDDataConfig, "n_images", "--n-images")]
HeightOpt = Annotated[int, field_option(RGBDDataConfig, "height", "--height")]


def _check_data(data: Path | None) -> str | None:
    if data is not None and not (data / "rgbd.json").is_file():
        raise UserError(f"--data {data} has no rgbd.json: build it with `latent3d data rgbd-pairs` or the RGBD writer")
    return str(data) if data else None


def train_rgbd_vae(
    ctx: typer.Context,
    out: OutOpt = Path("runs/rgbd-vae"),
    steps: Annotated[int, field_option(RGBDVAEConfig, "steps")] = _VAE.steps,
    batch_size: Annotated[int, field_option(RGBDVAEConfig, "batch_size")] = _VAE.batch_size,
    lr: Annotated[float, field_option(RGBDVAEConfig, "lr")] = _VAE.lr,
    variant: Annotated[Optional[str], typer.Option(callback=OneOf(choices(RGBDVAEConfig, "variant")), help=field_doc(RGBDVAEConfig, "variant") + " Default: 4c with --pano, else 6c.")] = None,
    vae: Annotated[Optional[str], field_option(RGBDVAEConfig, "rgb_vae", "--vae")] = _VAE.rgb_vae,
    disc_start: Annotated[Optional[int], typer.Option(callback=Range(0, 10**8), help="Step at which the PatchGAN loss starts (default: steps / 3).")] = None,
    pano: PanoOpt = _VAE.pano,
    data: DataOpt = None,
    n_images: NImagesOpt = _VAE.n_images,
    height: HeightOpt = _VAE.height,
    resume: ResumeOpt = False,
    checkpoint_every: CheckpointEveryOpt = CHECKPOINT_EVERY,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
) -> None:
    """LDM3D stage 1: widen an RGB KL-autoencoder to RGB + depth and fine-tune it; writes OUT/model."""
    from latent3d.systems.ldm3d.config import make_ae_loss
    from latent3d.systems.ldm3d.train import train_rgbd_vae as train

    variant = variant or ("4c" if pano else "6c")  # Intel/ldm3d-pano extends ldm3d-4c
    loss = make_ae_loss(disc_start=steps // 3 if disc_start is None else disc_start)
    cfg = RGBDVAEConfig(pano=pano, height=height, n_images=n_images, data=_check_data(data), seed=seed,
                        variant=variant, rgb_vae=vae, steps=steps, batch_size=batch_size, lr=lr, loss=loss)  # fmt: skip
    folder = train(out, cfg, device=device, resume=resume, command=invocation(ctx), checkpoint_every=checkpoint_every)
    typer.echo(f"wrote {folder}")


def train_rgbd(
    ctx: typer.Context,
    vae: Annotated[Path, field_option(RGBDLDMConfig, "vae", "--vae")],
    out: OutOpt = Path("runs/ldm3d"),
    steps: Annotated[int, field_option(RGBDLDMConfig, "steps")] = _LDM.steps,
    batch_size: Annotated[int, field_option(RGBDLDMConfig, "batch_size")] = _LDM.batch_size,
    lr: Annotated[float, field_option(RGBDLDMConfig, "lr")] = _LDM.lr,
    pano: PanoOpt = _LDM.pano,
    data: DataOpt = None,
    n_images: NImagesOpt = _LDM.n_images,
    height: HeightOpt = _LDM.height,
    resume: ResumeOpt = False,
    checkpoint_every: CheckpointEveryOpt = CHECKPOINT_EVERY,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
) -> None:
    """LDM3D stage 2: text-conditioned latent diffusion on the frozen RGBD autoencoder; writes OUT/model
    (diffusers StableDiffusionLDM3DPipeline layout, like Intel/ldm3d)."""
    from latent3d.systems.ldm3d.train import train_rgbd as train

    if not vae.exists():
        raise UserError(f"--vae {vae} does not exist: run `latent3d train rgbd-vae --out {vae}` first")
    cfg = RGBDLDMConfig(pano=pano, height=height, n_images=n_images, data=_check_data(data), seed=seed,
                        vae=str(vae), steps=steps, batch_size=batch_size, lr=lr)  # fmt: skip
    folder = train(out, cfg, device=device, resume=resume, command=invocation(ctx), checkpoint_every=checkpoint_every)
    typer.echo(f"wrote {folder}")
