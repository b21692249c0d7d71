"""The commands of the 2D priors: ``latent3d sample`` (images from any prior) and ``latent3d train prior`` (the
bundled object prior). Options take their defaults and help from
:class:`~latent3d.priors.object_prior.config.ObjectPriorConfig`; heavy imports happen inside the commands."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from latent3d.errors import UserError
from latent3d.options import (GUIDANCE, CHECKPOINT_EVERY, CheckpointEveryOpt, DeviceOpt, NegativeOpt, OutOpt,
                              PriorOpt, ResumeOpt, SeedOpt, defaults, field_option)  # fmt: skip
from latent3d.ranges import Range
from latent3d.priors.object_prior.config import ObjectPriorConfig

_P = defaults(ObjectPriorConfig)


def sample(
    prompt: Annotated[str, typer.Argument(help='Text prompt, e.g. "a red snowman, side view".')],
    out: OutOpt = Path("out/sample"),
    prior: PriorOpt = None,
    n: Annotated[int, typer.Option("--n", callback=Range(1, 1024), help="Number of images.")] = 4,
    steps: Annotated[int, typer.Option(callback=Range(1, 1000), help="DDIM steps.")] = 50,
    guidance: Annotated[Optional[float], typer.Option(callback=GUIDANCE, help="Classifier-free guidance scale (default: the prior's recommendation, else 7.5).")] = None,
    negative: NegativeOpt = "",
    size: Annotated[Optional[int], typer.Option(callback=Range(8, 4096), help="Image size in pixels (default: the prior's native size).")] = None,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
) -> dict:
    """Draw images from any 2D prior (DDIM + classifier-free guidance); writes PNGs, grid.png and run.json."""
    from latent3d.io.atomic import write_text
    from latent3d.io.image import make_grid, save_image
    from latent3d.priors.loading import load_prior
    from latent3d.priors.sampling import resolve_guidance, sample_images
    from latent3d.runtime import resolve_device, seed_everything

    if size is not None:
        from latent3d.memory import check_size_fits

        check_size_fits(prior, size, size, batch=n)
    t0 = time.time()
    dev = resolve_device(device)
    gen = seed_everything(seed)
    model = load_prior(prior, dev)
    if size is not None and size % (8 * model.downsample):
        raise UserError(f"--size {size} must be a multiple of {8 * model.downsample} for this prior")
    t_load = time.time() - t0
    guidance = resolve_guidance(model, guidance)
    images = sample_images(model, [prompt] * n, num_steps=steps, guidance=guidance, negative_prompt=negative, height=size,
                           width=size, generator=gen)
    for i, img in enumerate(images):
        save_image(out / f"sample_{i:02d}.png", img)
    save_image(out / "grid.png", make_grid(list(images), ncols=min(n, 8)))
    run = {"prompt": prompt, "prior": str(prior or "object-prior"), "n": n, "steps": steps,
           "guidance": guidance, "negative": negative, "size": list(images.shape[-2:]), "seed": seed,
           "device": str(dev), "load_s": round(t_load, 3), "total_s": round(time.time() - t0, 3)}  # fmt: skip
    write_text(out / "run.json", json.dumps(run, indent=1))
    return run


def train_prior(
    out: OutOpt = Path("runs/object-prior"),
    steps: Annotated[int, field_option(ObjectPriorConfig, "steps")] = _P.steps,
    batch_size: Annotated[int, field_option(ObjectPriorConfig, "batch_size")] = _P.batch_size,
    lr: Annotated[float, field_option(ObjectPriorConfig, "lr")] = _P.lr,
    views: Annotated[int, field_option(ObjectPriorConfig, "views")] = _P.views,
    warmup_steps: Annotated[int, field_option(ObjectPriorConfig, "warmup_steps")] = _P.warmup_steps,
    init: Annotated[Optional[Path], field_option(ObjectPriorConfig, "init")] = _P.init,
    prediction_type: Annotated[str, field_option(ObjectPriorConfig, "prediction_type")] = _P.prediction_type,
    ema_decay: Annotated[float, field_option(ObjectPriorConfig, "ema_decay")] = _P.ema_decay,
    resume: ResumeOpt = False,
    checkpoint_every: CheckpointEveryOpt = CHECKPOINT_EVERY,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
) -> None:
    """Train the bundled text-to-image object prior on latent3d's own renders; writes OUT/model (diffusers layout)."""
    from latent3d.priors.object_prior.train import train_object_prior

    cfg = ObjectPriorConfig(steps=steps, batch_size=batch_size, lr=lr, views=views, seed=seed,
                            warmup_steps=warmup_steps, init=str(init) if init else None,
                            prediction_type=prediction_type, ema_decay=ema_decay)  # fmt: skip
    folder = train_object_prior(out, cfg, device=device, resume=resume, checkpoint_every=checkpoint_every)
    typer.echo(f"wrote {folder}")
