"""``latent3d train autodecoder`` (3DVADER stage 1): posed views of many objects -> one latent volume per object and
the decoder that renders them. Options take their defaults and help from
:class:`~latent3d.systems.autodecoder.config.AutodecoderConfig`; heavy imports happen inside the command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from latent3d.errors import UserError
from latent3d.options import (CHECKPOINT_EVERY, CheckpointEveryOpt, DeviceOpt, OutOpt, ResumeOpt, SeedOpt, defaults,
                              field_option, invocation)  # fmt: skip
from latent3d.systems.autodecoder.config import AutodecoderConfig

_A = defaults(AutodecoderConfig)
Cfg = AutodecoderConfig


def train_autodecoder(
    ctx: typer.Context,
    data: Annotated[Path, typer.Option("--data", help="Object views: SRN / pixelNeRF folders (<id>/rgb, pose, intrinsics.txt) or transforms.json folders, e.g. from `latent3d data objects`.")],
    out: OutOpt = Path("runs/autodecoder"),
    holdout: Annotated[int, field_option(Cfg, "holdout")] = _A.holdout,
    steps: Annotated[int, field_option(Cfg, "steps")] = _A.steps,
    lr: Annotated[float, field_option(Cfg, "lr")] = _A.lr,
    embedding: Annotated[str, field_option(Cfg, "embedding")] = _A.embedding,
    embedding_dim: Annotated[int, field_option(Cfg, "embedding_dim")] = _A.embedding_dim,
    latent_channels: Annotated[int, field_option(Cfg, "latent_channels")] = _A.latent_channels,
    blocks: Annotated[int, field_option(Cfg, "blocks")] = _A.blocks,
    widths: Annotated[str, field_option(Cfg, "widths")] = ",".join(map(str, _A.widths)),
    shuffle: Annotated[int, field_option(Cfg, "shuffle")] = _A.shuffle,
    attention: Annotated[str, field_option(Cfg, "attention")] = ",".join(map(str, _A.attention)),
    norm: Annotated[str, field_option(Cfg, "norm")] = _A.norm,
    samples: Annotated[int, field_option(Cfg, "samples")] = _A.samples,
    patch: Annotated[int, field_option(Cfg, "patch")] = _A.patch,
    objects_per_step: Annotated[int, field_option(Cfg, "objects_per_step")] = _A.objects_per_step,
    views_per_object: Annotated[int, field_option(Cfg, "views_per_object")] = _A.views_per_object,
    refine_cameras: Annotated[bool, field_option(Cfg, "refine_cameras")] = _A.refine_cameras,
    icnr: Annotated[bool, field_option(Cfg, "icnr")] = _A.icnr,
    tv_weight: Annotated[float, field_option(Cfg, "tv_weight")] = _A.tv_weight,
    vgg: Annotated[Optional[Path], field_option(Cfg, "vgg")] = _A.vgg,
    resume: ResumeOpt = False,
    checkpoint_every: CheckpointEveryOpt = CHECKPOINT_EVERY,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
) -> None:
    """3DVADER stage 1: learn a latent volume per object and its decoder from posed views and masks; writes OUT/model,
    OUT/latents.safetensors, OUT/heldout/ and OUT/eval.json."""
    from latent3d.systems.autodecoder.train import train_autodecoder as train

    # each value was checked by its option (the config's declared ranges); the config checks how they relate
    cfg = AutodecoderConfig(holdout=holdout, steps=steps, lr=lr, embedding=embedding, embedding_dim=embedding_dim,  # type: ignore[arg-type]
                            latent_channels=latent_channels, blocks=blocks, widths=widths, shuffle=shuffle,  # type: ignore[arg-type]
                            attention=attention, norm=norm, samples=samples, patch=patch,  # type: ignore[arg-type]
                            objects_per_step=objects_per_step, views_per_object=views_per_object,
                            refine_cameras=refine_cameras, icnr=icnr, tv_weight=tv_weight, vgg=str(vgg) if vgg else None, seed=seed)  # fmt: skip
    if vgg is not None and not vgg.is_file():
        raise UserError(f"--vgg {vgg} is not a file: pass VGG-19 weights as safetensors in torchvision's layout")
    if not data.is_dir():
        raise UserError(f"--data {data} is not a folder: make one with `latent3d data objects --out {data}`")
    from latent3d.memory import autodecoder_train_bytes, meta_params, refuse_unless_fits
    from latent3d.systems.autodecoder.train import AutodecoderModel

    params = meta_params(lambda: AutodecoderModel(1, 1, cfg))
    refuse_unless_fits(autodecoder_train_bytes(cfg, params), "a training step of these settings",
                       "lower --objects-per-step, --views-per-object, --patch, --samples or --widths")  # fmt: skip
    report = train(data, out, cfg, device=device, resume=resume, checkpoint_every=checkpoint_every,
                   command=invocation(ctx))  # fmt: skip
    m = report["mean"]
    held = f"; held-out PSNR {m['psnr']:.2f} dB, SSIM {m['ssim']:.3f}, mask IoU {m['mask_iou']:.3f}" if m else ""
    typer.echo(f"wrote {out}: model/, latents.safetensors, eval.json{held}")
