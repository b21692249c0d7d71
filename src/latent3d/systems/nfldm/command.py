"""NeuralField-LDM's commands: ``latent3d train scene-ae`` (Sec. 3.1), ``latent3d train scene-latent-ae`` (Sec. 3.2),
``latent3d train scene-diffusion`` (Sec. 3.3), ``latent3d scene`` (generation), ``latent3d scene edit`` and
``latent3d scene pack``. Options take their defaults, help and valid values from
:mod:`latent3d.systems.nfldm.config`; heavy imports happen inside the commands, after every argument is checked."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from latent3d.errors import UserError
from latent3d.options import (CHECKPOINT_EVERY, CheckpointEveryOpt, DeviceOpt, ModelStepsOpt, OutOpt, ResumeOpt,
                              SeedOpt, defaults, field_option, invocation)  # fmt: skip
from latent3d.ranges import OneOf
from latent3d.systems.nfldm.config import (PAPER_PRESET, PRESETS, SceneAEConfig, SceneConfig, SceneDiffusionConfig,
                                           SceneLatentAEConfig, ScenePriorConfig)  # fmt: skip

_S = defaults(SceneAEConfig)
_L = defaults(SceneLatentAEConfig)
_D = defaults(SceneDiffusionConfig)
_G = defaults(SceneConfig)
_P = defaults(ScenePriorConfig)


PresetOpt = Annotated[str, typer.Option("--preset", callback=OneOf(PRESETS), help="Settings for the options not given: cpu (the defaults shown, a run of minutes to an hour on a CPU) or paper (NF-LDM's scale: a 128x128x32 grid, g of 128, c 32x32x16, codebooks of 1024 and 128, wide networks; a GPU job).")]


def _configured(ctx: typer.Context, cls: type, section: str):
    """``cls`` from the command's options (each checked by its option against the config's declared ranges; the
    config checks how they relate), with ``--preset paper``'s value for every option left at its default."""
    from dataclasses import fields

    preset = PAPER_PRESET[section] if ctx.params.get("preset") == "paper" else {}
    kw = {}
    for f in fields(cls):
        if f.name in preset and ctx.get_parameter_source(f.name).name == "DEFAULT":
            kw[f.name] = preset[f.name]
        elif f.name in ctx.params:
            kw[f.name] = ctx.params[f.name]
    return cls(**kw)


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
    preset: PresetOpt = "cpu",
    resume: ResumeOpt = False,
    checkpoint_every: CheckpointEveryOpt = CHECKPOINT_EVERY,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
) -> None:
    """NF-LDM stage 1a: learn the scene auto-encoder (posed images -> voxel grid of density and features -> images
    and depth) from posed RGB-D episodes; writes OUT/model, OUT/heldout/ and OUT/eval.json."""
    from latent3d.systems.nfldm.train_scene_ae import train_scene_ae

    cfg = _configured(ctx, SceneAEConfig, "scene_ae")
    if not data.is_dir():
        raise UserError(f"--data {data} is not a folder: make one with `latent3d data scenes --out {data}`")
    s = train_scene_ae(data, out, cfg, device=device, resume=resume, checkpoint_every=checkpoint_every,
                       command=invocation(ctx))  # fmt: skip
    ev = s.get("eval")
    held = (f"; held-out PSNR {ev['psnr']:.2f} dB, SSIM {ev['ssim']:.3f}, depth AbsRel {ev['depth_absrel']:.3f}"
            if ev else "")  # fmt: skip
    typer.echo(f"wrote {out}: model/, eval.json ({s['episodes']} episodes, {s['steps']} steps in "
               f"{s['train_s']:.0f} s){held}")


def _latent(name: str):  # the option of SceneLatentAEConfig field `name`
    return field_option(SceneLatentAEConfig, name)


def scene_latent_ae_cmd(
    ctx: typer.Context,
    scene_ae: Annotated[Path, typer.Option("--scene-ae", help="The --out folder of `latent3d train scene-ae`: its frozen model makes every training scene's grid and renders the decoded grids.")],
    out: OutOpt = Path("runs/scene-latent-ae"),
    data: Annotated[Optional[Path], typer.Option("--data", help="The episodes (default: the data folder the scene auto-encoder was trained on, from its run.json).")] = None,
    steps: Annotated[int, _latent("steps")] = _L.steps,
    lr: Annotated[float, _latent("lr")] = _L.lr,
    batch_size: Annotated[int, _latent("batch_size")] = _L.batch_size,
    global_dim: Annotated[int, _latent("global_dim")] = _L.global_dim,
    coarse_channels: Annotated[int, _latent("coarse_channels")] = _L.coarse_channels,
    fine_channels: Annotated[int, _latent("fine_channels")] = _L.fine_channels,
    downsample: Annotated[int, _latent("downsample")] = _L.downsample,
    downsample_z: Annotated[int, _latent("downsample_z")] = _L.downsample_z,
    codebook_coarse: Annotated[int, _latent("codebook_coarse")] = _L.codebook_coarse,
    codebook_fine: Annotated[int, _latent("codebook_fine")] = _L.codebook_fine,
    width: Annotated[int, _latent("width")] = _L.width,
    blocks: Annotated[int, _latent("blocks")] = _L.blocks,
    beta: Annotated[float, _latent("beta")] = _L.beta,
    restart_after: Annotated[int, _latent("restart_after")] = _L.restart_after,
    kl_weight: Annotated[float, _latent("kl_weight")] = _L.kl_weight,
    density_weight: Annotated[float, _latent("density_weight")] = _L.density_weight,
    image_weight: Annotated[float, _latent("image_weight")] = _L.image_weight,
    views: Annotated[int, _latent("views")] = _L.views,
    preset: PresetOpt = "cpu",
    resume: ResumeOpt = False,
    checkpoint_every: CheckpointEveryOpt = CHECKPOINT_EVERY,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
) -> None:
    """NF-LDM stage 1b: learn the latent voxel auto-encoder (scene grid -> global g, coarse 3-D c, bird's-eye-view f
    -> grid) on a scene auto-encoder's grids; writes OUT/model, OUT/latents.safetensors (stage 2's data) and
    OUT/eval.json."""
    from latent3d.systems.nfldm.train_latent_ae import train_scene_latent_ae

    cfg = _configured(ctx, SceneLatentAEConfig, "scene_latent_ae")
    s = train_scene_latent_ae(scene_ae, out, cfg, data=data, device=device, resume=resume,
                              checkpoint_every=checkpoint_every, command=invocation(ctx))  # fmt: skip
    ev = s["eval"]
    typer.echo(f"wrote {out}: model/, latents.safetensors, eval.json ({s['episodes']} scenes, {s['steps']} steps in "
               f"{s['train_s']:.0f} s); voxel MSE {ev['voxel_mse']:.4f}, training frames "
               f"{ev['train_psnr_decoded']:.2f} dB from decoded grids ({ev['train_psnr_original']:.2f} dB from the "
               "original grids)")


_LEVEL_HELP = ("Which model to train: g (psi_g: g and the camera trajectory), c (psi_c, given g), f (psi_f, given g "
               "and c), or all three one after the other. The levels are independent: three processes with --level "
               "g, c and f (one GPU each, e.g. CUDA_VISIBLE_DEVICES=k) train them at once into the same --out.")


def _diff(name: str):  # the option of SceneDiffusionConfig field `name`
    return field_option(SceneDiffusionConfig, name)


def scene_diffusion_cmd(
    ctx: typer.Context,
    latents: Annotated[Path, typer.Option("--latents", help="The --out folder of `latent3d train scene-latent-ae`: its latents.safetensors (g, c, f of every training scene) and, for level g, its episodes' camera trajectories.")],
    out: OutOpt = Path("runs/scene-diffusion"),
    level: Annotated[str, typer.Option("--level", callback=OneOf(("all", "g", "c", "f")), help=_LEVEL_HELP)] = "all",
    steps: Annotated[int, _diff("steps")] = _D.steps,
    batch_size: Annotated[int, _diff("batch_size")] = _D.batch_size,
    lr: Annotated[float, _diff("lr")] = _D.lr,
    ema_decay: Annotated[float, _diff("ema_decay")] = _D.ema_decay,
    trajectory_poses: Annotated[int, _diff("trajectory_poses")] = _D.trajectory_poses,
    beta_schedule: Annotated[str, _diff("beta_schedule")] = _D.beta_schedule,
    weighting: Annotated[str, _diff("weighting")] = _D.weighting,
    snr_gamma: Annotated[float, _diff("snr_gamma")] = _D.snr_gamma,
    mlp_width: Annotated[int, _diff("mlp_width")] = _D.mlp_width,
    mlp_blocks: Annotated[int, _diff("mlp_blocks")] = _D.mlp_blocks,
    width: Annotated[int, _diff("width")] = _D.width,
    channel_mult: Annotated[str, _diff("channel_mult")] = ",".join(map(str, _D.channel_mult)),
    channel_mult_fine: Annotated[str, _diff("channel_mult_fine")] = ",".join(map(str, _D.channel_mult_fine)),
    blocks: Annotated[int, _diff("blocks")] = _D.blocks,
    bev: Annotated[bool, _diff("bev")] = _D.bev,
    bev_dropout: Annotated[float, _diff("bev_dropout")] = _D.bev_dropout,
    bev_global_dropout: Annotated[float, _diff("bev_global_dropout")] = _D.bev_global_dropout,
    bev_width: Annotated[int, _diff("bev_width")] = _D.bev_width,
    sample_steps: Annotated[int, _diff("sample_steps")] = _D.sample_steps,
    eta: Annotated[float, _diff("eta")] = _D.eta,
    preset: PresetOpt = "cpu",
    resume: ResumeOpt = False,
    checkpoint_every: CheckpointEveryOpt = CHECKPOINT_EVERY,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
) -> None:
    """NF-LDM stage 2: the hierarchical latent diffusion p(g) p(c|g) p(f|g,c) on a latent auto-encoder's latents
    (x0 objective); writes OUT/g, OUT/c, OUT/f (model folders) and OUT/run.json."""
    from latent3d.systems.nfldm.train_scene_diffusion import train_scene_diffusion

    cfg = _configured(ctx, SceneDiffusionConfig, "scene_diffusion")
    s = train_scene_diffusion(latents, out, cfg, level=level, device=device, resume=resume,
                              checkpoint_every=checkpoint_every, command=invocation(ctx))  # fmt: skip
    done = ", ".join(f"{lv}/ ({v['steps']} steps in {v['train_s']:.0f} s, final loss {v['final_loss']:.4f})"
                     for lv, v in s.items())  # fmt: skip
    typer.echo(f"wrote {out}: {done}")


def scene_cmd(
    ctx: typer.Context,
    out: OutOpt = Path("out/scene"),
    model: Annotated[str, field_option(SceneConfig, "model")] = _G.model,
    n: Annotated[int, field_option(SceneConfig, "n", "--n")] = _G.n,
    steps: ModelStepsOpt = None,
    frames: Annotated[int, field_option(SceneConfig, "frames")] = _G.frames,
    post_opt: Annotated[int, field_option(SceneConfig, "post_opt")] = _G.post_opt,
    prior: Annotated[Optional[Path], typer.Option("--prior", help="The post-optimisation prior: the --out folder of `latent3d train scene-prior` (default: the scene model's own, where it has one).")] = None,
    alpha: Annotated[float, field_option(SceneConfig, "alpha")] = _G.alpha,
    negative: Annotated[bool, typer.Option("--negative/--no-negative", help="Guide away from the prior's artefact embedding y' (NF-LDM's negative guidance); --no-negative guides against the unconditional token.")] = True,
    style: Annotated[str, typer.Option("--style", help='Stylise by post-optimisation towards a text prompt, e.g. "at night", through --style-prior (needs --post-opt N).')] = "",
    style_prior: Annotated[Optional[str], typer.Option("--style-prior", help="The text-to-image diffusers model --style distils from (a folder or hub id, e.g. a Stable Diffusion 2.1 folder).")] = None,
    bev: Annotated[Optional[Path], typer.Option("--bev", help="Follow a bird's-eye-view map (a model trained with --bev): a PNG covering the scene box (north up) in the model's class colours (its card's legend; black = unknown), e.g. a sample's bev_map.png, or an episode folder of `latent3d data scenes` / `data vizdoom`.")] = None,
    bev_scale: Annotated[float, field_option(SceneConfig, "bev_scale")] = _G.bev_scale,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
) -> None:
    """Generate scenes with NF-LDM (g and a camera trajectory -> c -> f -> voxels): per sample a fly-through
    (flythrough.mp4, frames/, 16-bit depth/), bev.png, voxels.npz, mesh.glb and latents; plus run.json."""
    if ctx.invoked_subcommand is not None:
        return
    from latent3d.runtime import resolve_device
    from latent3d.systems.nfldm.generate import generate_scenes
    from latent3d.systems.nfldm.scene_model import load_scene_model, read_model_map, resolve_model

    resolve_model(model)  # a wrong name or folder is refused before anything loads
    if prior is not None:
        from latent3d.systems.nfldm.scene_prior import read_prior_folder

        read_prior_folder(prior)  # checked before anything loads
    if style and not (post_opt and style_prior):
        raise UserError("--style needs --post-opt N (its steps) and --style-prior ID_OR_DIR (a diffusers "
                        "text-to-image model)")  # fmt: skip
    bev_map, bev_source = read_model_map(model, bev) if bev is not None else (None, None)  # before weights load
    dev = resolve_device(device)
    m = load_scene_model(model, str(dev))
    refine = _refiner(m, model, post_opt, prior, alpha, negative, style, style_prior, seed, str(dev))
    run = generate_scenes(m, Path(out), n, frames, steps, seed, command=invocation(ctx), refine=refine, bev=bev_map,
                          bev_source=bev_source, bev_scale=bev_scale)  # fmt: skip
    typer.echo(f"wrote {out}: {n} sample(s) (flythrough.mp4, frames/, depth/, bev.png, voxels.npz, mesh.glb), "
               f"run.json; sampling {run['sampling_s']:.1f} s, total {run['total_s']:.1f} s")


def _refiner(m, model: str, post_opt: int, prior: Optional[Path], alpha: float, negative: bool, style: str,
             style_prior: Optional[str], seed: int, dev: str):  # fmt: skip
    """``latent3d scene``'s post-optimisation (None for --post-opt 0): towards y and away from y' through the scene
    prior, or towards the --style prompt through a text prior."""
    if not post_opt:
        return None
    from latent3d.systems.nfldm.post_opt import post_optimiser, scene_conditions, style_conditions

    if style:
        from latent3d.priors.loading import load_prior

        p = load_prior(style_prior, dev, option="--style-prior")
        cond, uncond = style_conditions(p, style)
        return post_optimiser(m, p, post_opt, alpha, cond, uncond, {"style": style, "prior": style_prior}, seed)
    from latent3d.systems.nfldm.scene_prior import load_scene_prior

    where = prior or m.prior
    if where is None:
        raise UserError(f"--post-opt {post_opt}: the model {model} has no prior; pass --prior DIR (`latent3d train "
                        "scene-prior`)")  # fmt: skip
    p = load_scene_prior(where, dev)
    cond, uncond = scene_conditions(p, negative)
    return post_optimiser(m, p, post_opt, alpha, cond, uncond, {"negative": negative}, seed)


def scene_edit_cmd(
    ctx: typer.Context,
    sample: Annotated[Path, typer.Argument(help="A sample folder written by `latent3d scene` (OUT/sample_NN).")],
    region: Annotated[str, typer.Option("--region", help="The box to resample, X0,Y0,X1,Y1 in fractions (0..1) of the scene: X left to right and Y bottom to top in its bev.png; widened to whole cells of c.")],
    out: OutOpt = Path("out/scene-edit"),
    model: Annotated[Optional[str], typer.Option("--model", help="The scene model that made the sample (default: the one its run.json names).")] = None,
    steps: ModelStepsOpt = None,
    frames: Annotated[int, field_option(SceneConfig, "frames")] = _G.frames,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
) -> None:
    """Resample a box of a generated scene by diffusion inpainting (c given g, then f given g and the new c); the
    latents outside it stay exactly the sample's. Writes the edited sample, before_after.png and edit.json."""
    from latent3d.runtime import resolve_device
    from latent3d.systems.nfldm.edit import check_fits, edit_scene, parse_region, read_sample
    from latent3d.systems.nfldm.scene_model import load_scene_model, resolve_model

    box = parse_region(region)
    latents, made_by = read_sample(sample)
    name = model or made_by or _G.model
    resolve_model(name)
    m = load_scene_model(name, str(resolve_device(device)))
    check_fits(m, latents, sample)
    doc = edit_scene(m, sample, latents, box, Path(out), steps, frames, seed, command=invocation(ctx))
    typer.echo(f"wrote {out}: {doc['cells_c']} cells of c resampled, largest change outside the box "
               f"c {doc['max_change_outside']['c']:g} f {doc['max_change_outside']['f']:g}; before_after.png")


def scene_pack_cmd(
    run: Annotated[Path, typer.Argument(help="The --out folder of `latent3d train scene-diffusion`.")],
    out: OutOpt = Path("out/scene-model"),
    card: Annotated[str, typer.Option("--card", help="A Markdown file whose text heads the packed MODEL_CARD.md.")] = "",
    prior: Annotated[Optional[Path], typer.Option("--prior", help="A `latent3d train scene-prior` run to pack with it (what `latent3d scene --post-opt` uses).")] = None,
    half: Annotated[bool, typer.Option("--half", help="Store the large weights in float16 (half the bytes; loading casts them back to float32).")] = False,
) -> None:
    """Pack a scene-diffusion run and the two auto-encoder runs it stands on into one self-contained scene model
    folder (what --model takes; the bundled scene models are made this way)."""
    from latent3d.systems.nfldm.scene_model import pack_scene_model

    head = ""
    if card:
        if not Path(card).is_file():
            raise UserError(f"--card {card}: not a file")
        head = Path(card).read_text()
    pack_scene_model(run, out, head, prior, half)
    typer.echo(f"wrote {out}")


def scene_encode_cmd(
    ctx: typer.Context,
    data: Annotated[Path, typer.Option("--data", help="The episodes to encode (`latent3d data scenes` / `data vizdoom` folders, or GSN's).")],
    model: Annotated[str, field_option(SceneConfig, "model")] = _G.model,
    out: OutOpt = Path("runs/scene-latents"),
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
) -> None:
    """Encode episodes with a packed scene model's frozen auto-encoders into a latents folder (that of `latent3d
    train scene-latent-ae`): the --latents to train new diffusion levels on, e.g. with --bev."""
    from latent3d.runtime import seeded
    from latent3d.systems.nfldm.encode import encode_episodes

    with seeded(seed):
        ev = encode_episodes(model, data, out, device, command=invocation(ctx))
    typer.echo(f"wrote {out}: latents.safetensors of {data}; training frames rendered from the decoded grids "
               f"{ev['train_psnr_decoded']:.2f} dB")


def _prior(name: str):  # the option of ScenePriorConfig field `name`
    return field_option(ScenePriorConfig, name)


def scene_prior_cmd(
    ctx: typer.Context,
    data: Annotated[Path, typer.Option("--data", help="The episodes the scene model was trained on (its clean frames: y).")],
    model: Annotated[str, field_option(SceneConfig, "model")] = _G.model,
    out: OutOpt = Path("runs/scene-prior"),
    resolution: Annotated[int, _prior("resolution")] = _P.resolution,
    channels: Annotated[str, _prior("channels")] = ",".join(map(str, _P.channels)),
    samples: Annotated[int, _prior("samples")] = _P.samples,
    frames: Annotated[int, _prior("frames")] = _P.frames,
    feature_steps: Annotated[int, _prior("feature_steps")] = _P.feature_steps,
    steps: Annotated[int, _prior("steps")] = _P.steps,
    batch_size: Annotated[int, _prior("batch_size")] = _P.batch_size,
    lr: Annotated[float, _prior("lr")] = _P.lr,
    cond_drop: Annotated[float, _prior("cond_drop")] = _P.cond_drop,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
) -> None:
    """NF-LDM post-optimisation's 2-D prior: a diffusion UNet over scene frames conditioned on latent3d's own image
    embedding, trained on the dataset's frames and the scene model's rendered samples; writes OUT/model."""
    from latent3d.runtime import resolve_device
    from latent3d.systems.nfldm.scene_model import load_scene_model, resolve_model
    from latent3d.systems.nfldm.scene_prior import train_scene_prior

    cfg = _configured(ctx, ScenePriorConfig, "scene_prior")
    if not data.is_dir():
        raise UserError(f"--data {data} is not a folder of episodes")
    resolve_model(model)
    m = load_scene_model(model, str(resolve_device(device)))
    s = train_scene_prior(m, data, Path(out), cfg, device=device, command=invocation(ctx))
    typer.echo(f"wrote {out}: model/ ({s['frames_real']} dataset + {s['frames_samples']} sampled frames, {s['steps']} "
               f"steps, {s['train_s']:.0f} s; y and y' {s['y_distance']:.2f} std apart)")
