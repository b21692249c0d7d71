"""``latent3d dream``: argument checks, prior loading, optimisation, outputs."""

from __future__ import annotations

import time
from pathlib import Path

from latent3d.errors import UserError


def dream_command(prompt: str, out: Path, method: str, prior_spec: str | None, iters: int | None, views: int,
                  guidance: float | None, init: str, seed: int, device: str) -> dict:
    from latent3d.priors.loading import load_prior
    from latent3d.runtime import resolve_device, seed_everything
    from latent3d.systems.lucid_dreamer.export import write_dream_outputs
    from latent3d.systems.lucid_dreamer.dream import DreamConfig, dream

    if method not in ("ism", "sds"):
        raise UserError(f"--method must be ism or sds, got {method!r}")
    if iters is not None and iters < 1 or views < 1:
        raise UserError("--iters and --views must be >= 1")
    if init not in ("sphere", "box") and not Path(init).is_file():
        raise UserError(f"--init {init!r} is neither sphere, box nor an existing PLY file")
    if not prompt.strip():
        raise UserError("the prompt is empty: say what to make, e.g. 'a red snowman'")
    if init not in ("sphere", "box"):
        from latent3d.io.ply import read_gaussian_ply

        read_gaussian_ply(init, plausible=True)  # a bad file is refused before the prior loads
    t0 = time.time()
    dev = resolve_device(device)
    seed_everything(seed)
    prior = load_prior(prior_spec, dev)
    t_load = time.time() - t0
    cfg = DreamConfig(prompt=prompt, method=method, iters=iters, views=views, guidance_scale=guidance, init=init,
                      seed=seed)  # fmt: skip
    res = dream(prior, cfg)
    run = write_dream_outputs(res, Path(out), str(prior_spec or "object-prior"),
                              extra={"device": str(dev), "seed": seed, "load_s": round(t_load, 3)}, started_at=t0)
    print(f"wrote {out}: {', '.join(run['files'])}" + (
        f"; vs ground truth: PSNR {run['ground_truth']['psnr']:.2f} dB, mask IoU {run['ground_truth']['mask_iou']:.3f}"
        if "ground_truth" in run else ""))  # fmt: skip
    return run
