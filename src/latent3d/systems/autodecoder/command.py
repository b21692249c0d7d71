"""3DVADER's commands: ``latent3d train autodecoder`` (stage 1), ``latent3d train object-diffusion`` (stage 2) and
``latent3d object`` (generation). Options take their defaults, help and valid values from
:mod:`latent3d.systems.autodecoder.config`; heavy imports happen inside the commands, after every argument is checked.
:func:`object_initializer` is 3DVADER's text-to-3D initialiser for ``dream --init object``
(:mod:`latent3d.priors.initializer`), registered as 'object' by :mod:`latent3d.systems`."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated, Optional

import typer

from latent3d.errors import UserError
from latent3d.options import (CHECKPOINT_EVERY, CheckpointEveryOpt, DeviceOpt, OutOpt, ResumeOpt, SeedOpt, defaults,
                              field_option, invocation)  # fmt: skip
from latent3d.systems.autodecoder.config import (ArticulatedConfig, AutodecoderConfig, ObjectConfig,
                                                 ObjectDiffusionConfig)

_A, _T, _O = defaults(AutodecoderConfig), defaults(ObjectDiffusionConfig), defaults(ObjectConfig)
_R = defaults(ArticulatedConfig)


def autodecoder_cmd(
    ctx: typer.Context,
    data: Annotated[Path, typer.Option("--data", help="Object views: SRN / pixelNeRF folders (<id>/rgb, pose, intrinsics.txt) or transforms.json folders, e.g. from `latent3d data objects`; with --cameras learn also folders of views without poses (<id>/00000.png ..., optional masks/).")],
    out: OutOpt = Path("runs/autodecoder"),
    holdout: Annotated[int, field_option(AutodecoderConfig, "holdout")] = _A.holdout,
    steps: Annotated[int, field_option(AutodecoderConfig, "steps")] = _A.steps,
    lr: Annotated[float, field_option(AutodecoderConfig, "lr")] = _A.lr,
    embedding: Annotated[str, field_option(AutodecoderConfig, "embedding")] = _A.embedding,
    embedding_dim: Annotated[int, field_option(AutodecoderConfig, "embedding_dim")] = _A.embedding_dim,
    latent_channels: Annotated[int, field_option(AutodecoderConfig, "latent_channels")] = _A.latent_channels,
    blocks: Annotated[int, field_option(AutodecoderConfig, "blocks")] = _A.blocks,
    widths: Annotated[str, field_option(AutodecoderConfig, "widths")] = ",".join(map(str, _A.widths)),
    shuffle: Annotated[int, field_option(AutodecoderConfig, "shuffle")] = _A.shuffle,
    attention: Annotated[str, field_option(AutodecoderConfig, "attention")] = ",".join(map(str, _A.attention)),
    norm: Annotated[str, field_option(AutodecoderConfig, "norm")] = _A.norm,
    samples: Annotated[int, field_option(AutodecoderConfig, "samples")] = _A.samples,
    patch: Annotated[int, field_option(AutodecoderConfig, "patch")] = _A.patch,
    objects_per_step: Annotated[int, field_option(AutodecoderConfig, "objects_per_step")] = _A.objects_per_step,
    views_per_object: Annotated[int, field_option(AutodecoderConfig, "views_per_object")] = _A.views_per_object,
    refine_cameras: Annotated[bool, field_option(AutodecoderConfig, "refine_cameras")] = _A.refine_cameras,
    cameras: Annotated[str, field_option(AutodecoderConfig, "cameras")] = _A.cameras,
    camera_radius: Annotated[float, field_option(AutodecoderConfig, "camera_radius")] = _A.camera_radius,
    search_azimuths: Annotated[int, field_option(AutodecoderConfig, "search_azimuths")] = _A.search_azimuths,
    search_elevations: Annotated[str, field_option(AutodecoderConfig, "search_elevations")] = ",".join(map(str, _A.search_elevations)),
    search: Annotated[float, field_option(AutodecoderConfig, "search")] = _A.search,
    search_size: Annotated[int, field_option(AutodecoderConfig, "search_size")] = _A.search_size,
    fov_y: Annotated[float, field_option(AutodecoderConfig, "fov_y")] = _A.fov_y,
    articulated: Annotated[bool, typer.Option("--articulated", help="3DVADER stage 3: --data holds monocular videos of articulated objects (folders of numbered frames, optional masks/, e.g. from `latent3d data articulated`); each is fitted as --parts rigid parts with learned per-frame poses, seen by one fixed camera (--camera-radius, --camera-elevation, --fov-y; --steps and --holdout default to 900 and 4).")] = False,
    parts: Annotated[int, field_option(ArticulatedConfig, "parts")] = _R.parts,
    camera_elevation: Annotated[float, field_option(ArticulatedConfig, "camera_elevation")] = _R.camera_elevation,
    root_smoothness: Annotated[float, field_option(ArticulatedConfig, "root_smoothness")] = _R.root_smoothness,
    decoder_steps: Annotated[int, field_option(ArticulatedConfig, "decoder_steps")] = _R.decoder_steps,
    pose_steps: Annotated[int, field_option(ArticulatedConfig, "pose_steps")] = _R.pose_steps,
    icnr: Annotated[bool, field_option(AutodecoderConfig, "icnr")] = _A.icnr,
    tv_weight: Annotated[float, field_option(AutodecoderConfig, "tv_weight")] = _A.tv_weight,
    vgg: Annotated[Optional[Path], field_option(AutodecoderConfig, "vgg")] = _A.vgg,
    resume: ResumeOpt = False,
    checkpoint_every: CheckpointEveryOpt = CHECKPOINT_EVERY,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
) -> None:
    """3DVADER stage 1: learn a latent volume per object and its decoder from posed views and masks; writes OUT/model,
    OUT/latents.safetensors, OUT/heldout/ and OUT/eval.json."""
    from latent3d.systems.autodecoder.stage1.train import train_autodecoder

    if articulated:
        return _articulated(ctx, data, out, ArticulatedConfig(parts=parts, steps=steps, holdout=holdout, fov_y=fov_y,
                            camera_radius=camera_radius, camera_elevation=camera_elevation,
                            root_smoothness=root_smoothness, decoder_steps=decoder_steps, pose_steps=pose_steps,
                            seed=seed),
                            device)  # fmt: skip
    # each value was checked by its option (the config's declared ranges); the config checks how they relate
    cfg = AutodecoderConfig(holdout=holdout, steps=steps, lr=lr, embedding=embedding, embedding_dim=embedding_dim,  # type: ignore[arg-type]
                            latent_channels=latent_channels, blocks=blocks, widths=widths, shuffle=shuffle,  # type: ignore[arg-type]
                            attention=attention, norm=norm, samples=samples, patch=patch,  # type: ignore[arg-type]
                            objects_per_step=objects_per_step, views_per_object=views_per_object,
                            refine_cameras=refine_cameras, cameras=cameras, camera_radius=camera_radius,  # type: ignore[arg-type]
                            search_azimuths=search_azimuths, search_elevations=search_elevations,  # type: ignore[arg-type]
                            search=search, search_size=search_size, fov_y=fov_y, icnr=icnr, tv_weight=tv_weight, vgg=str(vgg) if vgg else None, seed=seed)  # fmt: skip
    if vgg is not None and not vgg.is_file():
        raise UserError(f"--vgg {vgg} is not a file: pass VGG-19 weights as safetensors in torchvision's layout")
    if not data.is_dir():
        raise UserError(f"--data {data} is not a folder: make one with `latent3d data objects --out {data}`")
    from latent3d.memory import autodecoder_train_bytes, meta_params, refuse_unless_fits
    from latent3d.systems.autodecoder.stage1.train import AutodecoderModel

    params = meta_params(lambda: AutodecoderModel(1, 1, cfg))
    refuse_unless_fits(autodecoder_train_bytes(cfg, params), "a training step of these settings",
                       "lower --objects-per-step, --views-per-object, --patch, --samples or --widths")  # fmt: skip
    report = train_autodecoder(data, out, cfg, device=device, resume=resume, checkpoint_every=checkpoint_every,
                   command=invocation(ctx))  # fmt: skip
    m = report["mean"]
    held = f"; held-out PSNR {m['psnr']:.2f} dB, SSIM {m['ssim']:.3f}, mask IoU {m['mask_iou']:.3f}" if m else ""
    typer.echo(f"wrote {out}: model/, latents.safetensors, eval.json{held}")


def _articulated(ctx: typer.Context, data: Path, out: Path, cfg: ArticulatedConfig, device: str) -> None:
    """``train autodecoder --articulated``: the stage-3 fit of every video (:mod:`.stage3.train`); options the user
    left at stage 1's defaults take stage 3's."""
    from latent3d.runtime import resolve_device

    # by name: typer may carry a click of its own, whose ParameterSource enum is another class
    given = lambda name: getattr(ctx.get_parameter_source(name), "name", "DEFAULT") != "DEFAULT"  # noqa: E731
    cfg = replace(cfg, steps=cfg.steps if given("steps") else _R.steps,
                  holdout=cfg.holdout if given("holdout") else _R.holdout)
    if not data.is_dir():
        raise UserError(f"--data {data} is not a folder: make one with `latent3d data articulated --out {data}`")
    if resolve_device(device).type != "cpu":
        typer.echo("latent3d: note: the articulated fit runs on the CPU", err=True)
    from latent3d.systems.autodecoder.stage3.train import train_articulated

    report = train_articulated(data, out, cfg, command=invocation(ctx))
    shared = report.get("decoder")
    typer.echo(f"wrote {out}: {len(report['videos'])} video fits (fit.safetensors, heldout/), eval.json"
               + (", model/, latents.safetensors, motions.safetensors" if shared else "")
               + f"; mean held-out PSNR {report['mean_heldout_psnr']} dB (per-video fits)"
               + (f", {shared['mean_heldout_psnr']} dB (one decoder for all videos)" if shared else ""))


def object_diffusion_cmd(
    ctx: typer.Context,
    autodecoder: Annotated[Path, typer.Option("--autodecoder", help="The --out folder of `latent3d train autodecoder` (its latents.safetensors and model/).")],
    out: OutOpt = Path("runs/object-diffusion"),
    steps: Annotated[int, field_option(ObjectDiffusionConfig, "steps")] = _T.steps,
    batch_size: Annotated[int, field_option(ObjectDiffusionConfig, "batch_size")] = _T.batch_size,
    lr: Annotated[float, field_option(ObjectDiffusionConfig, "lr")] = _T.lr,
    model_channels: Annotated[int, field_option(ObjectDiffusionConfig, "model_channels")] = _T.model_channels,
    channel_mult: Annotated[str, field_option(ObjectDiffusionConfig, "channel_mult")] = ",".join(map(str, _T.channel_mult)),
    blocks: Annotated[int, field_option(ObjectDiffusionConfig, "blocks")] = _T.blocks,
    attention: Annotated[str, field_option(ObjectDiffusionConfig, "attention")] = ",".join(map(str, _T.attention)),
    normalization: Annotated[str, field_option(ObjectDiffusionConfig, "normalization")] = _T.normalization,
    text_encoder: Annotated[Optional[Path], field_option(ObjectDiffusionConfig, "text_encoder")] = _T.text_encoder,
    cond_drop: Annotated[float, field_option(ObjectDiffusionConfig, "cond_drop")] = _T.cond_drop,
    sigma_data: Annotated[Optional[float], field_option(ObjectDiffusionConfig, "sigma_data")] = _T.sigma_data,
    p_mean: Annotated[float, field_option(ObjectDiffusionConfig, "p_mean")] = _T.p_mean,
    p_std: Annotated[float, field_option(ObjectDiffusionConfig, "p_std")] = _T.p_std,
    ema_decay: Annotated[float, field_option(ObjectDiffusionConfig, "ema_decay")] = _T.ema_decay,
    resume: ResumeOpt = False,
    checkpoint_every: CheckpointEveryOpt = CHECKPOINT_EVERY,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
) -> None:
    """3DVADER stage 2: learn the distribution of an autodecoder run's latent volumes (EDM, 3D UNet, text
    cross-attention); writes OUT/model, the generator `latent3d object --model` takes."""
    from latent3d.systems.autodecoder.stage2.train import train_object_diffusion

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
    s = train_object_diffusion(autodecoder, out, cfg, device=device, resume=resume, checkpoint_every=checkpoint_every,
              command=invocation(ctx))  # fmt: skip
    typer.echo(f"wrote {out / 'model'}: {s['objects']} latent volumes, {s['steps']} steps in {s['train_s']:.0f} s, "
               f"final EDM loss {s['final_loss']:.4f}")


def _preflight(autodecoder: Path, cfg: ObjectDiffusionConfig) -> None:
    """Refuse settings whose training step cannot fit, from the autodecoder's latent channels (its config.json)."""
    import json

    from latent3d.memory import meta_params, object_diffusion_train_bytes, refuse_unless_fits
    from latent3d.systems.autodecoder.stage2.denoiser import build_unet

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
    animate: Annotated[bool, field_option(ObjectConfig, "animate")] = _O.animate,
    motion: Annotated[int, field_option(ObjectConfig, "motion")] = _O.motion,
    motion_video: Annotated[Optional[Path], field_option(ObjectConfig, "motion_video")] = None,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
) -> dict:
    """Text to 3D object (3DVADER): N samples, each with 8 orbit views, turntable.mp4, volume.npz, mesh.glb and
    gaussians.ply; plus grid.png and run.json."""
    cfg = ObjectConfig(model=model, n=n, steps=steps, guidance=guidance, views=views, size=size, frames=frames,
                       animate=animate, motion=motion, motion_video=str(motion_video) if motion_video else None)
    from latent3d.runtime import resolve_device, seed_everything
    from latent3d.systems.autodecoder.stage2.generator import load_generator, read_generator_config, resolve_model
    from latent3d.systems.autodecoder.generate import generate_objects

    folder = resolve_model(model)
    meta = read_generator_config(folder)  # a wrong folder is refused before anything loads
    video = _check_animate(meta, model, motion, motion_video) if animate else None
    from latent3d.memory import object_sample_bytes, refuse_unless_fits

    samples = meta["autodecoder"].get("samples")  # checked by the loader below; a bad value: the usual 64 here
    samples = samples if isinstance(samples, int) and 0 < samples <= 1024 else 64
    refuse_unless_fits(object_sample_bytes(cfg, int(meta["grid_size"]), samples),
                       f"--views {views} / --frames {frames} at --size {size}", "lower --size, --frames or --views")
    dev = resolve_device(device)
    seed_everything(seed)
    gen = load_generator(folder).to(dev)
    run = generate_objects(gen, prompt, Path(out), cfg, seed, model, video=video)
    typer.echo(f"wrote {out}: {n} samples (views/, turntable, volume.npz, mesh.glb, gaussians.ply"
               f"{', animation.mp4' if animate else ''}), grid.png, "
               f"run.json; sampling {run['sampling_s']:.1f} s")
    return run


def _check_animate(meta: dict, model: str, motion: int, motion_video: Path | None):
    """``object --animate`` needs an articulated generator with motion ``motion``, or a pose network and a readable
    ``--motion-video`` (returned, read: every problem one line before any weights load)."""
    if not meta.get("parts"):
        raise UserError(f"--animate: the model {model} has no parts to move (a rigid object model); train one with "
                        f"`latent3d train autodecoder --articulated`, then `latent3d train object-diffusion`")
    count = meta.get("motions")
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise UserError(f"--animate: the model {model}'s config.json has no count of motions ('motions'); retrain it "
                        f"with `latent3d train object-diffusion`")
    if not 0 <= motion < count:
        raise UserError(f"--motion {motion}: the model {model} keeps {count} training motions (0..{count - 1})")
    if motion_video is None:
        return None
    if meta.get("posenet") is not True:
        raise UserError(f"--motion-video: the model {model} has no pose network to read a video's motion; train the "
                        f"autodecoder with --pose-steps above 0, or use --motion K")
    from latent3d.data.formats.video_frames import read_video_folder

    if not motion_video.is_dir():
        raise UserError(f"--motion-video {motion_video} is not a folder of numbered frames (00000.png, ...)")
    return read_video_folder(motion_video)


class _ObjectInitializer:
    """3DVADER's generator as a :class:`latent3d.priors.initializer.TextTo3DInitializer`: one sample of the prompt,
    the most opaque voxels of its radiance grid as Gaussians."""

    def __init__(self, model: str):
        self.model = model

    def check(self) -> None:
        from latent3d.systems.autodecoder.stage2.generator import read_generator_config, resolve_model

        read_generator_config(resolve_model(self.model))

    def gaussians(self, prompt: str, seed: int, max_points: int):
        from latent3d.systems.autodecoder.generate import object_gaussians
        from latent3d.systems.autodecoder.stage2.generator import load_generator, resolve_model

        return object_gaussians(load_generator(resolve_model(self.model)), prompt, seed, max_points)


def object_initializer(model: str) -> _ObjectInitializer:
    """``dream --init object``: a bundled object model's name or a generator folder (nothing loads until used)."""
    return _ObjectInitializer(model)

