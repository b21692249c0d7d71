"""NeuralField-LDM's commands: ``latent3d train scene-ae`` (Sec. 3.1). Options take their defaults, help and valid
values from :mod:`latent3d.systems.nfldm.config`; heavy imports happen inside the commands, after every argument is
checked."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from latent3d.errors import UserError
from latent3d.options import (CHECKPOINT_EVERY, CheckpointEveryOpt, DeviceOpt, OutOpt, ResumeOpt, SeedOpt, defaults,
                              field_option, invocation)  # fmt: skip
from latent3d.systems.nfldm.config import SceneAEConfig

_S = defaults(SceneAEConfig)


def _csv(values: tuple) -> str:
    return ",".join(f"{v:g}" for v in values)


def scene_ae_cmd(
    ctx: typer.Context,
    data: Annotated[Path, typer.Option("--data", help="Posed RGB-D episodes: a folder of transforms.json episode folders with depth, e.g. from `latent3d data scenes` or `latent3d data vizdoom`.")],
    out: OutOpt = Path("runs/scene-ae"),
    holdout: Annotated[int, field_option(SceneAEConfig, "holdout")] = _S.holdout,
    steps: Annotated[int, field_option(SceneAEConfig, "steps")] = _S.steps,
    lr: Annotated[float, field_option(SceneAEConfig, "lr")] = _S.lr,
    grid: Annotated[str, field_option(SceneAEConfig, "grid")] = _csv(_S.grid),
    box: Annotated[str, field_option(SceneAEConfig, "box")] = _csv(_S.box),
    depth_bins: Annotated[int, field_option(SceneAEConfig, "depth_bins")] = _S.depth_bins,
    near: Annotated[float, field_option(SceneAEConfig, "near")] = _S.near,
    far: Annotated[float, field_option(SceneAEConfig, "far")] = _S.far,
    features: Annotated[int, field_option(SceneAEConfig, "features")] = _S.features,
    width: Annotated[int, field_option(SceneAEConfig, "width")] = _S.width,
    downsample: Annotated[int, field_option(SceneAEConfig, "downsample")] = _S.downsample,
    samples: Annotated[int, field_option(SceneAEConfig, "samples")] = _S.samples,
    views_in: Annotated[int, field_option(SceneAEConfig, "views_in")] = _S.views_in,
    views_out: Annotated[int, field_option(SceneAEConfig, "views_out")] = _S.views_out,
    depth_weight: Annotated[float, field_option(SceneAEConfig, "depth_weight")] = _S.depth_weight,
    resume: ResumeOpt = False,
    checkpoint_every: CheckpointEveryOpt = CHECKPOINT_EVERY,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
) -> None:
    """NF-LDM stage 1a: learn the scene auto-encoder (posed images -> voxel grid of density and features -> images
    and depth) from posed RGB-D episodes; writes OUT/model, OUT/heldout/ and OUT/eval.json."""
    from latent3d.systems.nfldm.train_scene_ae import train_scene_ae

    # each value was checked by its option (the config's declared ranges); the config checks how they relate
    cfg = SceneAEConfig(grid=grid, box=box, depth_bins=depth_bins, near=near, far=far, features=features,  # type: ignore[arg-type]
                        width=width, downsample=downsample, samples=samples, views_in=views_in, views_out=views_out,
                        depth_weight=depth_weight, steps=steps, lr=lr, holdout=holdout, seed=seed)  # fmt: skip
    if not data.is_dir():
        raise UserError(f"--data {data} is not a folder: make one with `latent3d data scenes --out {data}`")
    s = train_scene_ae(data, out, cfg, device=device, resume=resume, checkpoint_every=checkpoint_every,
                       command=invocation(ctx))  # fmt: skip
    ev = s.get("eval")
    held = (f"; held-out PSNR {ev['psnr']:.2f} dB, SSIM {ev['ssim']:.3f}, depth AbsRel {ev['depth_absrel']:.3f}"
            if ev else "")  # fmt: skip
    typer.echo(f"wrote {out}: model/, eval.json ({s['episodes']} episodes, {s['steps']} steps in "
               f"{s['train_s']:.0f} s){held}")
