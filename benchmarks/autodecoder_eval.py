"""3DVADER's autodecoder ablation on latent3d's object data (Ntavelis et al. 2023, Sec. 4 / supplement B).

Builds (or reuses) an SRN folder of procedural objects, trains the autodecoder once per variant with
``--holdout 6`` and prints held-out PSNR / SSIM / mask IoU, steps per second and peak RSS:

- full: the ``latent3d train autodecoder`` defaults;
- no multi-frame: one view per object per step, its patch 2x wider (same objects and rays per step);
- no attention: no 3D self-attention at 8^3;
- fewer blocks: no residual block at 16^3 (8^3 latent -> head, voxel shuffle x4 to 32^3);
- small embedding: 32-d instead of 256-d;
- hash: hash embeddings instead of a dense table (with the bytes of each).

    python benchmarks/autodecoder_eval.py --objects 24 --views 12 --size 64 --steps 2000 [--variants full,hash]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from dataclasses import replace
from pathlib import Path

VARIANTS = {
    "full": {},
    "no multi-frame": {"views_per_object": 1, "patch": 48},
    "no attention": {"attention": ()},
    "fewer blocks": {"widths": (), "shuffle": 4},
    "small embedding": {"embedding_dim": 32},
    "hash": {"embedding": "hash"},
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="runs/bench_objects", help="SRN folder (made if missing)")
    ap.add_argument("--out", default="runs/bench_autodecoder")
    ap.add_argument("--objects", type=int, default=24)
    ap.add_argument("--views", type=int, default=12)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated names of VARIANTS")
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args(argv)

    import torch

    from latent3d.data.procedural.object_sets import write_multiview_dataset
    from latent3d.nets.embeddings import embedding_nbytes, make_embedding
    from latent3d.systems.autodecoder.config import AutodecoderConfig
    from latent3d.systems.autodecoder.stage1.decoder import Autodecoder
    from latent3d.systems.autodecoder.stage1.train import train_autodecoder

    data = Path(a.data)
    if not data.exists():
        write_multiview_dataset(data, ["chair", "table", "mushroom", "snowman"], a.objects, a.views, a.size, "srn", 0)
    rows = []
    for name in a.variants.split(","):
        cfg = replace(AutodecoderConfig(steps=a.steps, holdout=6), **VARIANTS[name])
        out = Path(a.out) / name.replace(" ", "_")
        t0 = time.time()
        rep = train_autodecoder(data, out, cfg, device=a.device, progress=False, checkpoint_every=10**9)
        wall = time.time() - t0
        emb = embedding_nbytes(Autodecoder(rep["num_objects"], cfg).embedding)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        rows.append({"variant": name, **{k: round(v, 4) for k, v in rep["mean"].items()},
                     "steps_per_s": round(rep["steps"] / rep["train_s"], 2), "wall_s": round(wall, 1),
                     "embedding_kb": round(emb / 1024, 1), "peak_rss_mb": round(rss)})  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    print("\n| variant | PSNR | SSIM | mask IoU | steps/s | embedding KB | peak RSS MB |\n|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['variant']} | {r['psnr']:.2f} | {r['ssim']:.3f} | {r['mask_iou']:.3f} | {r['steps_per_s']} | "
              f"{r['embedding_kb']} | {r['peak_rss_mb']} |")
    n = rows and rep["num_objects"]
    print(f"threads {torch.get_num_threads()}, {n} objects from {data} ({a.steps} steps per variant)")
    print("\n| objects | dense embedding MB | hash embedding MB (make_embedding defaults) |\n|---|---|---|")
    dim = AutodecoderConfig().embedding_dim
    for n in (24, 1_000, 100_000, 1_000_000):  # a dense table is n x dim float32: computed, not allocated
        print(f"| {n:,} | {n * dim * 4 / 2**20:.2f} | {embedding_nbytes(make_embedding('hash', n, dim)) / 2**20:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
