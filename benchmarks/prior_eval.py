"""Does the object prior draw the prompted object, colour and view? (issue: bundled object prior)

Trains the object/colour/view classifier on renders (a different seed from the prior's training set), reports its
accuracy on held-out renders (the ceiling), then samples the prior for every object x some colours x 4 views and
reports the classifier's agreement with the prompts, plus the sampling speed.

    python benchmarks/prior_eval.py [--prior object-prior] [--per-prompt 2] [--steps 50] [--guidance G]
    python benchmarks/prior_eval.py --prompt "a red snowman, side view" --per-prompt 32
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from latent3d.data.procedural.captions import object_phrase
from latent3d.metrics.classifier import VIEWS, evaluate, train_classifier
from latent3d.priors import load_prior
from latent3d.priors.object_prior.config import ObjectPriorConfig
from latent3d.priors.object_prior.data import render_training_set
from latent3d.priors.sampling import resolve_guidance, sample_images


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prior", default=None)
    ap.add_argument("--per-prompt", type=int, default=2)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--guidance", type=float, default=None, help="default: the prior's recommendation")
    ap.add_argument("--colors", default="red,blue,white,yellow")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--prompt", default=None, help='score only this prompt, e.g. "a red snowman, side view"')
    ap.add_argument("--json", default=None, help="also write the figures to this file")
    a = ap.parse_args()

    prior = load_prior(a.prior, "cpu")
    a.guidance = resolve_guidance(prior, a.guidance)
    cfg = ObjectPriorConfig(resolution=prior.resolution)
    t0 = time.time()
    train_imgs, train_caps = render_training_set(ObjectPriorConfig(views=16, seed=101, resolution=prior.resolution))
    test_imgs, test_caps = render_training_set(ObjectPriorConfig(views=4, seed=202, resolution=prior.resolution))
    clf = train_classifier(train_imgs, train_caps, cfg.objects, cfg.colors)
    ceiling = evaluate(clf, test_imgs, test_caps)
    print(f"classifier: trained on {len(train_imgs)} renders in {time.time() - t0:.0f}s; "
          f"held-out renders ({ceiling.n}): object {ceiling.object:.3f} colour {ceiling.color:.3f} view {ceiling.view:.3f}")

    colors = a.colors.split(",")
    prompts = [f"{object_phrase(o, c)}, {v} view" for o in cfg.objects for c in colors for v in VIEWS]
    if a.prompt:
        prompts = [a.prompt]
    prompts = [p for p in prompts for _ in range(a.per_prompt)]
    g = torch.Generator().manual_seed(a.seed)
    t1 = time.time()
    samples = torch.cat([sample_images(prior, prompts[i:i + 64], a.steps, a.guidance, generator=g,
                                       disable_progress=True) for i in range(0, len(prompts), 64)])
    dt = time.time() - t1
    acc = evaluate(clf, samples, prompts)
    per_view = {v: evaluate(clf, samples[[i for i, p in enumerate(prompts) if p.endswith(f"{v} view")]],
                            [p for p in prompts if p.endswith(f"{v} view")]).view
                for v in VIEWS if any(p.endswith(f"{v} view") for p in prompts)}
    print(f"samples ({acc.n}, {a.steps} DDIM steps, guidance {a.guidance}): object {acc.object:.3f} "
          f"colour {acc.color:.3f} view {acc.view:.3f}  [{dt / len(prompts) * 1000:.0f} ms/sample]")
    print("view accuracy by prompted view: " + ", ".join(f"{v} {x:.2f}" for v, x in per_view.items()))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"renders": ceiling.as_dict(), "samples": acc.as_dict(), "per_view": per_view,
                       "ms_per_sample": dt / len(prompts) * 1000, "steps": a.steps, "guidance": a.guidance}, f, indent=1)


if __name__ == "__main__":
    main()
