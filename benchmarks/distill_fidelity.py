"""ISM vs SDS at the same budget: renders of the distilled Gaussians vs exact renders of the named object.

Our reproduction of LucidDreamer's ISM-vs-SDS claim (Liang et al. 2023, Sec. 4) on the bundled object prior: for
several fixed named objects, distil with each method (same seed, iterations, views, guidance defaults of each
method), then compare 16 held-out views with the ground truth (PSNR, SSIM on white background, mask IoU) and report
seconds per iteration.

With ``--inits sphere,object`` each run also starts from a ``latent3d object`` sample of the same prompt (3DVADER's
generator, ``dream --init object``; LucidDreamer starts from Point-E), on the prompts both bundled models know.

    python benchmarks/distill_fidelity.py [--prompts "a red snowman;a blue chair"] [--iters 300] [--json out.json]
    python benchmarks/distill_fidelity.py --inits sphere,object --methods ism
"""

from __future__ import annotations

import argparse
import json

import torch

from latent3d.priors import load_prior
from latent3d.systems.lucid_dreamer.export import named_object, score_against_ground_truth
from latent3d.systems.lucid_dreamer.dream import DreamConfig, dream

DEFAULT_PROMPTS = "a red snowman;a blue chair;a red mushroom;a white rocket;a green tree"
INIT_PROMPTS = "a blue chair;a red mushroom;a green chair;a yellow mushroom"  # named by both bundled models


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prior", default=None)
    ap.add_argument("--prompts", default=None, help="';'-separated prompts naming bundled objects (default: "
                    f"{DEFAULT_PROMPTS!r}; with --inits ...object: {INIT_PROMPTS!r})")
    ap.add_argument("--iters", type=int, default=None)
    ap.add_argument("--methods", default="ism,sds")
    ap.add_argument("--inits", default="sphere", help="comma-separated dream --init values to compare (sphere, box, "
                    "object)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    inits = a.inits.split(",")
    a.prompts = a.prompts or (INIT_PROMPTS if "object" in inits else DEFAULT_PROMPTS)
    torch.set_num_threads(1)
    prior = load_prior(a.prior, "cpu")
    rows = []
    print(f"{'prompt':<20} {'method':<6} {'init':<6} {'PSNR':>6} {'SSIM':>6} {'IoU':>6} {'s/iter':>7} {'gaussians':>9}")
    for prompt in a.prompts.split(";"):
        named = named_object(prompt)
        if named is None:
            raise SystemExit(f"prompt {prompt!r} names no bundled object")
        for method, init in [(m, i) for m in a.methods.split(",") for i in inits]:
            cfg = DreamConfig(prompt=prompt, method=method, iters=a.iters, seed=a.seed, init=init)
            res = dream(prior, cfg, progress=False)
            gt = score_against_ground_truth(res, *named)
            row = {"prompt": prompt, "method": method, "init": init, **gt, "s_per_iter": res.timings["s_per_iter"],
                   "gaussians": res.model.num}  # fmt: skip
            rows.append(row)
            print(f"{prompt:<20} {method:<6} {init:<6} {gt['psnr']:>6.2f} {gt['ssim']:>6.3f} {gt['mask_iou']:>6.3f} "
                  f"{row['s_per_iter']:>7.3f} {row['gaussians']:>9d}", flush=True)
    for method, init in [(m, i) for m in a.methods.split(",") for i in inits]:
        mine = [r for r in rows if r["method"] == method and r["init"] == init]
        mean = {k: sum(r[k] for r in mine) / len(mine) for k in ("psnr", "ssim", "mask_iou", "s_per_iter")}
        print(f"{'mean':<20} {method:<6} {init:<6} {mean['psnr']:>6.2f} {mean['ssim']:>6.3f} {mean['mask_iou']:>6.3f} "
              f"{mean['s_per_iter']:>7.3f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
