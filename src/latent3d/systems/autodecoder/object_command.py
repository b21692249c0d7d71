"""``latent3d train object-diffusion`` and ``latent3d object`` (3DVADER stage 2): options take their defaults and
help from :class:`~latent3d.systems.autodecoder.config.ObjectDiffusionConfig` / ``ObjectConfig``; heavy imports
happen inside the commands, after every argument is checked."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from latent3d.errors import UserError
from latent3d.options import (CHECKPOINT_EVERY, CheckpointEveryOpt, DeviceOpt, OutOpt, ResumeOpt, SeedOpt, defaults,
                              field_option, invocation)  # fmt: skip
from latent3d.systems.autodecoder.config import ObjectConfig, ObjectDiffusionConfig

_T, _O = defaults(ObjectDiffusionConfig), defaults(ObjectConfig)
Cfg = ObjectDiffusionConfig


def train_object_diffusion(
    ctx: typer.Context,
    autodecoder: Annotated[Path, typer.Option("--autodecoder", help="The --out folder of `latent3d train autodecoder` (its latents.safetensors and model/).")],
    out: OutOpt = Path("runs/object-diffusion"),
    steps: Annotated[int, field_option(Cfg, "steps")] = _T.steps,
    batch_size: Annotated[int, field_option(Cfg, "batch_size")] = _T.batch_size,
    lr: Annotated[float, field_option(Cfg, "lr")] = _T.lr,
    model_channels: Annotated[int, field_option(Cfg, "model_channels")] = _T.model_channels,
    channel_mult: Annotated[str, field_option(Cfg, "channel_mult")] = ",".join(map(str, _T.channel_mult)),
    blocks: Annotated[int, field_option(Cfg, "blocks")] = _T.blocks,
    attention: Annotated[str, field_option(Cfg, "attention")] = ",".join(map(str, _T.attention)),
    normalization: Annotated[str, field_option(Cfg, "normalization")] = _T.normalization,
    text_encoder: Annotated[Optional[Path], field_option(Cfg, "text_encoder")] = _T.text_encoder,
    cond_drop: Annotated[float, field_option(Cfg, "cond_drop")] = _T.cond_drop,
    sigma_data: Annotated[Optional[float], field_option(Cfg, "sigma_data")] = _T.sigma_data,
    p_mean: Annotated[float, field_option(Cfg, "p_mean")] = _T.p_mean,
    p_std: Annotated[float, field_option(Cfg, "p_std")] = _T.p_std,
    ema_decay: Annotated[float, field_option(Cfg, "ema_decay")] = _T.ema_decay,
    resume: ResumeOpt = False,
    checkpoint_every: CheckpointEveryOpt = CHECKPOINT_EVERY,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
) -> None:
    """3DVADER stage 2: learn the distribution of an autodecoder run's latent volumes (EDM, 3D UNet, text
    cross-attention); writes OUT/model, the generator `latent3d object --model` takes."""
    from latent3d.systems.autodecoder.diffusion import train_object_diffusion as train

    # each value was checked by its option (the config's declared ranges); the config checks how they relate
    cfg = ObjectDiffusionConfig(model_channels=model_channels, channel_mult=channel_mult, blocks=blocks,  # type: ignore[arg-type]
                                attention=attention,  # type: ignore[arg-type]
                                normalization=normalization, text_encoder=str(text_encoder) if text_encoder else None,  # type: ignore[arg-type]
                                cond_drop=cond_drop, sigma_data=sigma_data, p_mean=p_mean, p_std=p_std, steps=steps,
                                batch_size=batch_size, lr=lr, ema_decay=ema_decay, seed=seed)  # fmt: skip
    if text_encoder is not None and not text_encoder.is_dir():
        raise UserError(f"--text-encoder {text_encoder} is not a folder: pass a local transformers T5 / CLIP text "
                        "encoder folder (with its tokenizer)")
    for name in ("latents.safetensors", "model/config.json"):
        if not (autodecoder / name).is_file():
            raise UserError(f"--autodecoder {autodecoder}: no {name}; pass the --out folder of a finished "
                            "`latent3d train autodecoder` run")
    _preflight(autodecoder, cfg)
    s = train(autodecoder, out, cfg, device=device, resume=resume, checkpoint_every=checkpoint_every,
              command=invocation(ctx))  # fmt: skip
    typer.echo(f"wrote {out / 'model'}: {s['objects']} latent volumes, {s['steps']} steps in {s['train_s']:.0f} s, "
               f"final EDM loss {s['final_loss']:.4f}")


def _preflight(autodecoder: Path, cfg: ObjectDiffusionConfig) -> None:
    """Refuse settings whose training step cannot fit, from the autodecoder's latent channels (its config.json)."""
    import json

    from latent3d.memory import meta_params, object_diffusion_train_bytes, refuse_unless_fits
    from latent3d.systems.autodecoder.diffusion import build_unet

    try:
        channels = int(json.loads((autodecoder / "model" / "config.json").read_text())["autodecoder"]["latent_channels"])
    except (OSError, ValueError, KeyError, TypeError):
        return  # a damaged folder: its reader says what is wrong
    params = meta_params(lambda: build_unet(cfg, channels, cfg.text_dim))
    refuse_unless_fits(object_diffusion_train_bytes(cfg, params, channels), "a training step of these settings",
                       "lower --batch-size, --model-channels or --channel-mult")  # fmt: skip


def object_cmd(
    prompt: Annotated[str, typer.Argument(help='What to make, e.g. "a red chair" ("" for an unconditional model).')],
    out: OutOpt = Path("out/object"),
    model: Annotated[str, field_option(ObjectConfig, "model")] = _O.model,
    n: Annotated[int, field_option(ObjectConfig, "n", "--n")] = _O.n,
    steps: Annotated[int, field_option(ObjectConfig, "steps")] = _O.steps,
    guidance: Annotated[float, field_option(ObjectConfig, "guidance")] = _O.guidance,
    views: Annotated[int, field_option(ObjectConfig, "views")] = _O.views,
    size: Annotated[int, field_option(ObjectConfig, "size")] = _O.size,
    frames: Annotated[int, field_option(ObjectConfig, "frames")] = _O.frames,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
) -> dict:
    """Text to 3D object (3DVADER): N samples, each with 8 orbit views, turntable.mp4, volume.npz, mesh.glb and
    gaussians.ply; plus grid.png and run.json."""
    cfg = ObjectConfig(model=model, n=n, steps=steps, guidance=guidance, views=views, size=size, frames=frames)
    from latent3d.runtime import resolve_device, seed_everything
    from latent3d.systems.autodecoder.diffusion import load_generator, read_generator_config, resolve_model
    from latent3d.systems.autodecoder.generate import generate_objects

    folder = resolve_model(model)
    meta = read_generator_config(folder)  # a wrong folder is refused before anything loads
    from latent3d.memory import object_sample_bytes, refuse_unless_fits

    samples = meta["autodecoder"].get("samples")  # checked by the loader below; a bad value: the usual 64 here
    samples = samples if isinstance(samples, int) and 0 < samples <= 1024 else 64
    refuse_unless_fits(object_sample_bytes(cfg, int(meta["grid_size"]), samples),
                       f"--views {views} / --frames {frames} at --size {size}", "lower --size, --frames or --views")
    dev = resolve_device(device)
    seed_everything(seed)
    gen = load_generator(folder).to(dev)
    run = generate_objects(gen, prompt, Path(out), cfg, seed, model)
    typer.echo(f"wrote {out}: {n} samples (views/, turntable, volume.npz, mesh.glb, gaussians.ply), grid.png, "
               f"run.json; sampling {run['sampling_s']:.1f} s")
    return run
