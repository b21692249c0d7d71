"""``latent3d dream`` (LucidDreamer): argument checks, prior loading, optimisation, outputs. Options take their
defaults and help from :class:`~latent3d.systems.lucid_dreamer.config.DreamConfig`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional, get_args

import typer

from latent3d.errors import UserError
from latent3d.options import DeviceOpt, OutOpt, PriorOpt, SeedOpt, defaults, field_option
from latent3d.systems.lucid_dreamer.config import DreamConfig

_D = defaults(DreamConfig)


def dream(
    prompt: Annotated[str, typer.Argument(help='What to make, e.g. "a red snowman".')],
    out: OutOpt = Path("out/dream"),
    negative: Annotated[Optional[str], field_option(DreamConfig, "negative")] = _D.negative,
    method: Annotated[str, field_option(DreamConfig, "method")] = _D.method,
    recipe: Annotated[str, field_option(DreamConfig, "recipe")] = _D.recipe,
    prior: PriorOpt = None,
    lora: Annotated[Optional[Path], field_option(DreamConfig, "lora")] = None,
    iters: Annotated[Optional[int], field_option(DreamConfig, "iters")] = _D.iters,
    views: Annotated[int, field_option(DreamConfig, "views")] = _D.views,
    guidance: Annotated[Optional[float], field_option(DreamConfig, "guidance_scale", "--guidance")] = _D.guidance_scale,
    init: Annotated[str, field_option(DreamConfig, "init")] = _D.init,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
) -> dict:
    """Text to 3D Gaussian splats: writes gaussians.ply, turntable.mp4, grid.png, mesh.glb and run.json."""
    from latent3d.priors.loading import load_prior
    from latent3d.render.gaussians import InitShape
    from latent3d.runtime import ThreadGovernor, resolve_device, seed_everything
    from latent3d.systems.lucid_dreamer.export import write_dream_outputs
    from latent3d.systems.lucid_dreamer.dream import dream as optimise

    from latent3d.priors.initializer import get_initializer, initializer_names

    named = (*get_args(InitShape), *initializer_names())
    if init not in named and not Path(init).is_file():
        raise UserError(f"--init {init!r} is neither {', '.join(named)} nor an existing PLY file")
    if not prompt.strip():
        raise UserError("the prompt is empty: say what to make, e.g. 'a red snowman'")
    if init in initializer_names():
        get_initializer(init, DreamConfig.init_model).check()  # its model is there, before anything loads
    elif init not in get_args(InitShape):
        from latent3d.io.ply import read_gaussian_ply

        read_gaussian_ply(init, plausible=True)  # a bad file is refused before the prior loads
    if lora is not None:
        from latent3d.priors.lora import check_lora_file, load_lora

        check_lora_file(lora)  # a missing file or one that is no LoRA is refused before the prior loads
    from latent3d.memory import check_dream_fits

    check_dream_fits(prior, views)
    t0 = time.time()
    dev = resolve_device(device)
    governor = ThreadGovernor(dev)  # measures what other processes take while the weights load
    seed_everything(seed)
    prior_model = load_prior(prior, dev)
    if lora is not None:
        load_lora(prior_model, lora)  # a LoRA of another base model is refused here
    t_load = time.time() - t0
    cfg = DreamConfig(prompt=prompt, negative=negative, method=method, recipe=recipe, iters=iters, views=views,
                      guidance_scale=guidance, init=init, seed=seed,
                      lora=None if lora is None else str(lora))  # fmt: skip
    res = optimise(prior_model, cfg, governor=governor)
    run = write_dream_outputs(res, Path(out), str(prior or "object-prior"),
                              extra={"device": str(dev), "seed": seed, "load_s": round(t_load, 3)}, started_at=t0)
    print(f"wrote {out}: {', '.join(run['files'])}" + (
        f"; vs ground truth: PSNR {run['ground_truth']['psnr']:.2f} dB, mask IoU {run['ground_truth']['mask_iou']:.3f}"
        if "ground_truth" in run else ""))  # fmt: skip
    return run
