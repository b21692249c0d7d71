"""How visible is the left/right seam of generated 360° panoramas? (issue: DepthFusion, panorama generation)

Samples the panorama model for a few prompts with and without circular width padding (same seeds) and prints the
seam score of RGB and depth (:func:`latent3d.systems.ldm3d.panorama.seam_score`: the wrap-around step over the mean
neighbouring-column step; about 1 = no seam), next to the score of exact renders of the same kind of places.

    python benchmarks/pano_seam.py [--model ldm3d-pano-tiny] [--seeds 4]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from latent3d.data.procedural.rgbd_sets import render_rgbd_set
from latent3d.systems.ldm3d.panorama import DEFAULT_PANO_MODEL, generate_panorama, seam_score
from latent3d.systems.ldm3d.pipeline import RGBDPipeline

PROMPTS = ("a sunny beach with palm trees", "a forest of trees", "a sunny desert with cacti and rocks",
           "a snowy landscape with trees and a snowman", "a street with houses and cars")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--seeds", type=int, default=4)
    a = ap.parse_args()
    torch.set_num_threads(1)

    ds = render_rgbd_set(12, 64, 128, seed=7, pano=True)
    ref_rgb = np.mean([seam_score(x.permute(1, 2, 0)) for x in ds.rgb])
    ref_d = np.mean([seam_score(x[0]) for x in ds.disparity])
    print(f"exact renders (12): seam rgb {ref_rgb:.2f}  depth {ref_d:.2f}")
    pipe = RGBDPipeline.from_pretrained(a.model or DEFAULT_PANO_MODEL)
    for circular in (False, True):
        rgb_s, d_s, t0 = [], [], time.time()
        for p in PROMPTS:
            for seed in range(a.seeds):
                _, _, info = generate_panorama(p, pipe, seed=seed, width=None, circular=circular,
                                               disable_progress=True)  # fmt: skip
                rgb_s.append(info["seam_score_rgb"])
                d_s.append(info["seam_score_depth"])
        n = len(rgb_s)
        print(f"generated ({n}), circular padding {'on ' if circular else 'off'}: seam rgb {np.mean(rgb_s):.2f} "
              f"(max {np.max(rgb_s):.2f})  depth {np.mean(d_s):.2f} (max {np.max(d_s):.2f})  "
              f"[{(time.time() - t0) / n:.2f} s/panorama]")


if __name__ == "__main__":
    main()
