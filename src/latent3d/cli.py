"""The ``latent3d`` command line (typer). Every command takes ``--help``, ``--seed`` and ``--device``.

A user mistake raises :class:`latent3d.errors.UserError`; :func:`main` prints its message as one line on stderr and
exits with a non-zero code instead of showing a traceback.
"""

from __future__ import annotations

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

# Options shared by every command (use these aliases so help texts and defaults stay the same everywhere).
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed; CPU runs with the same seed are bitwise identical.")]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto (cuda if present, else cpu), cpu, cuda or cuda:N.")]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Output folder (created if missing; files written atomically).")]


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
    steps: Annotated[int, typer.Option(help="Optimisation steps.")] = 4000,
    batch_size: Annotated[int, typer.Option(help="Images per step.")] = 32,
    lr: Annotated[float, typer.Option(help="Peak AdamW learning rate.")] = 3e-4,
    views: Annotated[int, typer.Option(help="Rendered views per (object, colour).")] = 24,
    resume: Annotated[bool, typer.Option(help="Continue from the newest checkpoint in --out.")] = False,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
) -> None:
    """Train the bundled text-to-image object prior on latent3d's own renders; writes OUT/model (diffusers layout)."""
    from latent3d.priors.object_prior import ObjectPriorConfig, train_object_prior

    for name, v in (("--steps", steps), ("--batch-size", batch_size), ("--views", views)):
        if v < 1:
            raise UserError(f"{name} must be >= 1, got {v}")
    cfg = ObjectPriorConfig(steps=steps, batch_size=batch_size, lr=lr, views=views, seed=seed)
    folder = train_object_prior(out, cfg, device=device, resume=resume)
    typer.echo(f"wrote {folder}")


@app.command()
def sample(
    prompt: Annotated[str, typer.Argument(help='Text prompt, e.g. "a red snowman, side view".')],
    out: OutOpt = Path("out/sample"),
    prior: Annotated[Optional[str], typer.Option(help="Bundled name, diffusers folder or hub id (default: bundled object prior).")] = None,
    n: Annotated[int, typer.Option("--n", help="Number of images.")] = 4,
    steps: Annotated[int, typer.Option(help="DDIM steps.")] = 50,
    guidance: Annotated[Optional[float], typer.Option(help="Classifier-free guidance scale (default: the prior's recommendation, else 7.5).")] = None,
    negative: Annotated[str, typer.Option(help="Negative prompt (replaces the empty prompt in guidance).")] = "",
    size: Annotated[Optional[int], typer.Option(help="Image size in pixels (default: the prior's native size).")] = None,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
) -> None:
    """Draw images from any 2D prior (DDIM + classifier-free guidance); writes PNGs, grid.png and run.json."""
    from latent3d.priors.sampling import sample_command

    sample_command(prompt, out, prior, n, steps, guidance, negative, size, seed, device)


@app.command()
def dream(
    prompt: Annotated[str, typer.Argument(help='What to make, e.g. "a red snowman".')],
    out: OutOpt = Path("out/dream"),
    method: Annotated[str, typer.Option(help="ism (LucidDreamer's Interval Score Matching) or sds (DreamFusion).")] = "ism",
    prior: Annotated[Optional[str], typer.Option(help="Bundled name, diffusers folder or hub id (default: bundled object prior).")] = None,
    iters: Annotated[Optional[int], typer.Option(help="Optimisation steps (default: 300 bundled prior, 5000 SD-size).")] = None,
    views: Annotated[int, typer.Option(help="Views rendered per step.")] = 4,
    guidance: Annotated[Optional[float], typer.Option(help="CFG scale (default: the prior's recommendation; else 7.5 ISM, 100 SDS).")] = None,
    init: Annotated[str, typer.Option(help="sphere, box, or a PLY (3DGS or point cloud) to start from.")] = "sphere",
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
) -> None:
    """Text to 3D Gaussian splats: writes gaussians.ply, turntable.mp4, grid.png, mesh.glb and run.json."""
    from latent3d.systems.dream_command import dream_command

    dream_command(prompt, out, method, prior, iters, views, guidance, init, seed, device)


def main(argv: Optional[list[str]] = None) -> int:
    """Console-script entry point: run the app, turning :class:`UserError` into one line and exit code 2.

    Usage errors (unknown option, missing argument) are reported by typer/click itself with exit code 2.
    """
    try:
        app(args=argv, prog_name="latent3d", standalone_mode=True)
    except SystemExit as e:  # standalone mode always ends this way
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except UserError as e:
        print(f"latent3d: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("latent3d: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
