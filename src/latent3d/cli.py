"""The ``latent3d`` command line (typer). Every command takes ``--help``, ``--seed`` and ``--device``.

A user mistake raises :class:`latent3d.errors.UserError`; :func:`main` prints its message as one line on stderr and
exits with a non-zero code instead of showing a traceback.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from latent3d.errors import UserError

app = typer.Typer(
    name="latent3d",
    help="3D generation with latent diffusion: RGBD images, immersive 360° worlds, text-to-3D splats, latent 3D "
    "and scene diffusion. Every command runs offline on the bundled checkpoints.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

SEED_MAX = 2**63 - 1  # torch.manual_seed takes a signed 64-bit integer


def _check_seed(value: int) -> int:
    if not 0 <= value <= SEED_MAX:
        raise typer.BadParameter(f"{value} is outside 0..2**63-1; give a whole number in that range")
    return value


def _check_out(value: Path) -> Path:
    """The output folder must be a folder (or creatable): checked before any weight loads, writing nothing."""
    import tempfile

    p = value.expanduser()
    if p.exists() and not p.is_dir():
        raise typer.BadParameter(f"{p} exists and is not a folder; name a folder (new or existing)")
    parent = p
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise typer.BadParameter(f"{p} cannot be created: {parent} is not a folder")
    try:  # can we create entries there? (a read-only mount, /proc, /sys or a folder without permission cannot)
        os.rmdir(tempfile.mkdtemp(prefix=".latent3d-probe-", dir=parent))
    except OSError as e:
        raise typer.BadParameter(f"{p} cannot be written ({e.strerror or e}); choose a writable folder") from None
    return value


def _check_finite(value: float) -> float:
    if not math.isfinite(value):
        raise typer.BadParameter(f"{value} is not a finite number")
    return value


def _check_guidance(value: float | None) -> float | None:
    if value is not None and not (math.isfinite(value) and value >= 0):
        raise typer.BadParameter(f"{value} is not a guidance scale; give a finite number >= 0 (1 = no guidance)")
    return value


# Options shared by every command (use these aliases so help texts and defaults stay the same everywhere).
SeedOpt = Annotated[int, typer.Option("--seed", callback=_check_seed, help="Random seed (0..2**63-1); runs with the same seed on one machine write identical files.")]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto (cuda if present, else cpu), cpu, cuda or cuda:N.")]
OutOpt = Annotated[Path, typer.Option("--out", "-o", callback=_check_out, help="Output folder (created if missing; files written atomically).")]
ResumeOpt = Annotated[bool, typer.Option(help="Continue from the newest intact checkpoint in --out (bit-for-bit; the settings must match).")]
CheckpointEveryOpt = Annotated[int, typer.Option("--checkpoint-every", help="Write a checkpoint every this many steps (and at the end); the newest two are kept.")]
NegativeOpt = Annotated[str, typer.Option(help="Negative prompt (replaces the empty prompt in guidance).")]
ModelStepsOpt = Annotated[Optional[int], typer.Option(help="DDIM steps (default: the model's recommendation, else 50).")]
ModelGuidanceOpt = Annotated[Optional[float], typer.Option(callback=_check_guidance, help="Classifier-free guidance scale (default: the model's recommendation, else 7.5).")]


@app.callback()
def _root() -> None:
    """latent3d: 3D generation with latent diffusion."""


@app.command()
def info(
    device: DeviceOpt = "auto",
    seed: SeedOpt = 0,
    json_out: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """Versions, the device latent3d would use, and the bundled checkpoints found."""
    from latent3d.info import collect_info, format_info

    report = collect_info(device, seed)
    if json_out:
        import json

        typer.echo(json.dumps(report, indent=2))
    else:
        typer.echo(format_info(report))


train_app = typer.Typer(help="Train latent3d's models (shared Accelerate trainer: --resume, EMA, NaN guard).",
                         no_args_is_help=True)
app.add_typer(train_app, name="train")


@train_app.command("prior")
def train_prior(
    out: OutOpt = Path("runs/object-prior"),
    steps: Annotated[int, typer.Option(help="Optimisation steps.")] = 1500,
    batch_size: Annotated[int, typer.Option(help="Images per step.")] = 128,
    lr: Annotated[float, typer.Option(callback=_check_finite, help="Peak AdamW learning rate.")] = 3e-4,
    views: Annotated[int, typer.Option(help="Rendered views per (object, colour).")] = 48,
    warmup_steps: Annotated[int, typer.Option(help="Linear learning-rate warm-up steps.")] = 500,
    init: Annotated[Optional[Path], typer.Option(help="Start from this exported prior folder (fine-tuning).")] = None,
    prediction_type: Annotated[str, typer.Option(help="What the UNet predicts: v_prediction or epsilon.")] = "v_prediction",
    ema_decay: Annotated[float, typer.Option(callback=_check_finite, help="EMA decay of the exported weights.")] = 0.999,
    resume: ResumeOpt = False,
    checkpoint_every: CheckpointEveryOpt = 500,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
) -> None:
    """Train the bundled text-to-image object prior on latent3d's own renders; writes OUT/model (diffusers layout)."""
    from latent3d.priors.object_prior.config import ObjectPriorConfig
    from latent3d.priors.object_prior.train import train_object_prior

    _check_train_opts(steps=steps, batch_size=batch_size, views=views, checkpoint_every=checkpoint_every)
    if prediction_type not in ("v_prediction", "epsilon"):
        raise UserError(f"--prediction-type must be v_prediction or epsilon, got {prediction_type!r}")
    if not 0.0 <= ema_decay < 1.0:
        raise UserError(f"--ema-decay must be in [0, 1), got {ema_decay}")
    cfg = ObjectPriorConfig(steps=steps, batch_size=batch_size, lr=lr, views=views, seed=seed,
                            warmup_steps=warmup_steps, init=str(init) if init else None,
                            prediction_type=prediction_type, ema_decay=ema_decay)
    folder = train_object_prior(out, cfg, device=device, resume=resume, checkpoint_every=checkpoint_every)
    typer.echo(f"wrote {folder}")


PanoOpt = Annotated[bool, typer.Option("--pano", help="Train on 2:1 equirectangular panoramas of places (LDM3D-pano).")]
DataOpt = Annotated[Optional[Path], typer.Option("--data", help="RGBD folder to train on (latent3d.data.rgbd / rgbd_builder) instead of rendering.")]
NImagesOpt = Annotated[int, typer.Option("--n-images", help="Rendered training images (ignored with --data).")]
HeightOpt = Annotated[int, typer.Option("--height", help="Image height in pixels (width = height, or 2 x height with --pano).")]


def _check_train_opts(**opts: float) -> None:
    for name, v in opts.items():
        if v < 1:
            raise UserError(f"--{name.replace('_', '-')} must be >= 1, got {v}")


@train_app.command("rgbd-vae")
def train_rgbd_vae_cmd(
    out: OutOpt = Path("runs/rgbd-vae"),
    steps: Annotated[int, typer.Option(help="Optimisation steps.")] = 6000,
    batch_size: Annotated[int, typer.Option(help="Images per step.")] = 16,
    lr: Annotated[float, typer.Option(callback=_check_finite, help="AdamW learning rate (paper: 1e-5 when fine-tuning SD's VAE).")] = 2e-4,
    variant: Annotated[Optional[str], typer.Option(help="6c: RGB + 16-bit depth packed RGB-like (Intel/ldm3d); 4c: RGB + 1 depth channel (Intel/ldm3d-4c, -pano). Default: 4c with --pano, else 6c.")] = None,
    vae: Annotated[Optional[str], typer.Option("--vae", help="RGB AutoencoderKL folder to widen (e.g. SD's vae/); default: a fresh small one.")] = None,
    disc_start: Annotated[Optional[int], typer.Option(help="Step at which the PatchGAN loss starts (default: steps / 3).")] = None,
    pano: PanoOpt = False,
    data: DataOpt = None,
    n_images: NImagesOpt = 3000,
    height: HeightOpt = 64,
    resume: ResumeOpt = False,
    checkpoint_every: CheckpointEveryOpt = 500,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
) -> None:
    """LDM3D stage 1: widen an RGB KL-autoencoder to RGB + depth and fine-tune it; writes OUT/model."""
    from latent3d.nets.rgbd_vae import AELossConfig
    from latent3d.systems.ldm3d.train import RGBDVAEConfig, train_rgbd_vae

    _check_train_opts(steps=steps, batch_size=batch_size, n_images=n_images, height=height,
                      checkpoint_every=checkpoint_every)
    variant = variant or ("4c" if pano else "6c")  # Intel/ldm3d-pano extends ldm3d-4c
    if variant not in ("6c", "4c"):
        raise UserError(f"--variant must be 6c or 4c, got {variant!r}")
    if data is not None and not (data / "rgbd.json").is_file():
        raise UserError(f"--data {data} has no rgbd.json: build it with latent3d.data.rgbd_builder or the RGBD writer")
    loss = AELossConfig(disc_start=steps // 3 if disc_start is None else disc_start)
    cfg = RGBDVAEConfig(pano=pano, height=height, n_images=n_images, data=str(data) if data else None, seed=seed,
                        variant=variant, rgb_vae=vae, steps=steps, batch_size=batch_size, lr=lr, loss=loss)  # fmt: skip
    cmd = "latent3d train rgbd-vae " + " ".join(sys.argv[3:]) if sys.argv[1:3] == ["train", "rgbd-vae"] else None
    folder = train_rgbd_vae(out, cfg, device=device, resume=resume, command=cmd,
                            checkpoint_every=checkpoint_every)
    typer.echo(f"wrote {folder}")


@train_app.command("rgbd")
def train_rgbd_cmd(
    vae: Annotated[Path, typer.Option("--vae", help="Stage-1 folder: the --out of `latent3d train rgbd-vae` (or a 6/4-channel AutoencoderKL folder).")],
    out: OutOpt = Path("runs/ldm3d"),
    steps: Annotated[int, typer.Option(help="Optimisation steps.")] = 20000,
    batch_size: Annotated[int, typer.Option(help="Images per step.")] = 64,
    lr: Annotated[float, typer.Option(callback=_check_finite, help="Peak AdamW learning rate.")] = 2e-4,
    pano: PanoOpt = False,
    data: DataOpt = None,
    n_images: NImagesOpt = 3000,
    height: HeightOpt = 64,
    resume: ResumeOpt = False,
    checkpoint_every: CheckpointEveryOpt = 500,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
) -> None:
    """LDM3D stage 2: text-conditioned latent diffusion on the frozen RGBD autoencoder; writes OUT/model
    (diffusers StableDiffusionLDM3DPipeline layout, like Intel/ldm3d)."""
    from latent3d.systems.ldm3d.train import RGBDLDMConfig, train_rgbd

    _check_train_opts(steps=steps, batch_size=batch_size, n_images=n_images, height=height,
                      checkpoint_every=checkpoint_every)
    if not vae.exists():
        raise UserError(f"--vae {vae} does not exist: run `latent3d train rgbd-vae --out {vae}` first")
    if data is not None and not (data / "rgbd.json").is_file():
        raise UserError(f"--data {data} has no rgbd.json: build it with latent3d.data.rgbd_builder or the RGBD writer")
    cfg = RGBDLDMConfig(pano=pano, height=height, n_images=n_images, data=str(data) if data else None, seed=seed,
                        vae=str(vae), steps=steps, batch_size=batch_size, lr=lr)  # fmt: skip
    cmd = "latent3d train rgbd " + " ".join(sys.argv[3:]) if sys.argv[1:3] == ["train", "rgbd"] else None
    folder = train_rgbd(out, cfg, device=device, resume=resume, command=cmd, checkpoint_every=checkpoint_every)
    typer.echo(f"wrote {folder}")


@app.command()
def sample(
    prompt: Annotated[str, typer.Argument(help='Text prompt, e.g. "a red snowman, side view".')],
    out: OutOpt = Path("out/sample"),
    prior: Annotated[Optional[str], typer.Option(help="Bundled name, diffusers folder or hub id (default: bundled object prior).")] = None,
    n: Annotated[int, typer.Option("--n", help="Number of images.")] = 4,
    steps: Annotated[int, typer.Option(help="DDIM steps.")] = 50,
    guidance: Annotated[Optional[float], typer.Option(callback=_check_guidance, help="Classifier-free guidance scale (default: the prior's recommendation, else 7.5).")] = None,
    negative: NegativeOpt = "",
    size: Annotated[Optional[int], typer.Option(help="Image size in pixels (default: the prior's native size).")] = None,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
) -> None:
    """Draw images from any 2D prior (DDIM + classifier-free guidance); writes PNGs, grid.png and run.json."""
    from latent3d.priors.sampling import sample_command

    sample_command(prompt, out, prior, n, steps, guidance, negative, size, seed, device)


@app.command()
def rgbd(
    prompt: Annotated[str, typer.Argument(help='Text prompt, e.g. "a red snowman on a blue floor".')],
    out: OutOpt = Path("out/rgbd"),
    model: Annotated[Optional[str], typer.Option(help="Bundled name (ldm3d-tiny, the default), a diffusers folder in the Intel/ldm3d layout, or a hub id (Intel/ldm3d, Intel/ldm3d-4c).")] = None,
    steps: ModelStepsOpt = None,
    guidance: ModelGuidanceOpt = None,
    size: Annotated[Optional[str], typer.Option(help="HxW in pixels, multiples of the autoencoder's downsampling (default: the model's native size).")] = None,
    negative: NegativeOpt = "",
    near: Annotated[float, typer.Option(callback=_check_finite, help="Distance given to the nearest depth value (1.0) when lifting points.ply.")] = 1.0,
    far: Annotated[float, typer.Option(callback=_check_finite, help="Distance given to the farthest depth value (0.0) when lifting points.ply.")] = 10.0,
    fov: Annotated[float, typer.Option(callback=_check_finite, help="Vertical field of view in degrees assumed for points.ply (pinhole models; panoramas use equirect rays).")] = 60.0,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
) -> None:
    """Text to RGB + depth (LDM3D): writes rgb.png, depth.png (16-bit, bright = near), depth_preview.png, points.ply, run.json."""
    from latent3d.systems.ldm3d.command import rgbd_command

    rgbd_command(prompt, out, model, steps, guidance, size, negative, seed, device, near, far, fov)


@app.command()
def dream(
    prompt: Annotated[str, typer.Argument(help='What to make, e.g. "a red snowman".')],
    out: OutOpt = Path("out/dream"),
    method: Annotated[str, typer.Option(help="ism (LucidDreamer's Interval Score Matching) or sds (DreamFusion).")] = "ism",
    prior: Annotated[Optional[str], typer.Option(help="Bundled name, diffusers folder or hub id (default: bundled object prior).")] = None,
    iters: Annotated[Optional[int], typer.Option(help="Optimisation steps (default: 300 bundled prior, 5000 SD-size).")] = None,
    views: Annotated[int, typer.Option(help="Views rendered per step.")] = 4,
    guidance: Annotated[Optional[float], typer.Option(callback=_check_guidance, help="CFG scale (default: the prior's recommendation; else 7.5 ISM, 100 SDS).")] = None,
    init: Annotated[str, typer.Option(help="sphere, box, or a PLY (3DGS or point cloud) to start from.")] = "sphere",
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
) -> None:
    """Text to 3D Gaussian splats: writes gaussians.ply, turntable.mp4, grid.png, mesh.glb and run.json."""
    from latent3d.systems.lucid_dreamer.command import dream_command

    dream_command(prompt, out, method, prior, iters, views, guidance, init, seed, device)


@app.command()
def immersive(
    prompt: Annotated[Optional[str], typer.Argument(help='What panorama to generate, e.g. "a sunny beach with palm trees".')] = None,
    out: OutOpt = Path("out/immersive"),
    from_: Annotated[Optional[tuple[Path, Path]], typer.Option("--from", help="Skip generation: RGB and depth equirect panorama images (depth: 16- or 8-bit greyscale, bright = near).")] = None,
    model: Annotated[Optional[str], typer.Option(help="Panorama model: bundled name, Intel/ldm3d-pano folder or hub id (default: bundled ldm3d-pano-tiny).")] = None,
    steps: ModelStepsOpt = None,
    guidance: ModelGuidanceOpt = None,
    ipd: Annotated[float, typer.Option(callback=_check_finite, help="Interpupillary distance for the omnidirectional stereo, metres.")] = 0.064,
    strength: Annotated[float, typer.Option(callback=_check_finite, help="Depth displacement in [0, 1): depth 1 moves to radius/(1+s), 0 to radius/(1-s).")] = 0.5,
    resolution: Annotated[int, typer.Option(help="Sphere segments around (half as many pole to pole).")] = 256,
    radius: Annotated[float, typer.Option(callback=_check_finite, help="Sphere radius in metres where depth 0.5 sits.")] = 4.0,
    depth_mode: Annotated[str, typer.Option(help="disparity (1/r linear in depth, as LDM3D/DPT) or linear (DepthFusion's displacement).")] = "disparity",
    stereo_width: Annotated[int, typer.Option(help="Width of stereo_tb.png (each eye is W x W/2).")] = 1024,
    tour_seconds: Annotated[float, typer.Option(callback=_check_finite, help="Length of tour.mp4 in seconds (15 fps).")] = 2.4,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
) -> None:
    """RGBD panorama to an immersive 360° world (DepthFusion): world.glb, stereo_tb.png, anaglyph.png, tour.mp4."""
    from latent3d.systems.depthfusion.command import immersive_command

    rgb_path, depth_path = from_ if from_ is not None else (None, None)
    immersive_command(prompt, out, rgb_path, depth_path, ipd=ipd, strength=strength, resolution=resolution,
                      seed=seed, device=device, depth_mode=depth_mode, radius=radius, stereo_width=stereo_width,
                      tour_seconds=tour_seconds, model=model, steps=steps, guidance=guidance)


@app.command()
def view(
    folder: Annotated[Path, typer.Argument(help="Output folder with world.glb, mesh.glb and/or gaussians.ply.")],
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1 (the next free one if taken).")] = 8080,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
) -> None:
    """Show a world, mesh or splats in a local web viewer (viser on 127.0.0.1); a world starts at its centre."""
    from latent3d.viewer import view_command

    view_command(folder, port)


# typer >= 0.26 carries its own copy of click: take the exception classes from typer, whichever click it runs on
_UsageError = typer.BadParameter.__mro__[1]
_ClickException = _UsageError.__mro__[1]


def main(argv: Optional[list[str]] = None) -> int:
    """Console-script entry point. A :class:`UserError` or a usage error (unknown option, bad value, missing
    argument) is one line ``latent3d: error: ...`` on stderr and exit code 2 (3 for a diverged training run)."""
    try:
        rv = app(args=argv, prog_name="latent3d", standalone_mode=False)
    except _UsageError as e:
        ctx = getattr(e, "ctx", None)
        if type(e).__name__ == "NoArgsIsHelpError" and ctx is not None:  # `latent3d` / `latent3d train` alone
            print(ctx.get_help(), file=sys.stderr)
            return 2
        where = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        print(f"latent3d: error: {' '.join(e.format_message().split())}{where}", file=sys.stderr)
        return 2
    except _ClickException as e:
        print(f"latent3d: error: {' '.join(e.format_message().split())}", file=sys.stderr)
        return e.exit_code
    except UserError as e:
        print(f"latent3d: error: {' '.join(str(e).split())}", file=sys.stderr)
        return e.exit_code
    except (typer.Abort, KeyboardInterrupt):
        print("latent3d: interrupted", file=sys.stderr)
        return 130
    except typer.Exit as e:
        return e.exit_code
    return rv if isinstance(rv, int) else 0


if __name__ == "__main__":
    sys.exit(main())
