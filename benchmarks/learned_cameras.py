"""3DVADER with cameras learned from scratch (``train autodecoder --cameras learn``) against the same run with the
data's poses: procedural objects (`latent3d data objects`), their poses ignored by the learned runs and used only to
score them. Variants: ``given`` (the data's poses), ``learn`` (as shipped), ``average`` (the search phase's soft
minimum replaced by the plain mean over hypotheses: what the annealing adds), ``nosearch`` (``--search 0``: every
view assigned to a hypothesis of the untrained object at step 0, then jumps and gradient only). Printed per run:
rotation error of the learned training cameras after each object's best world rotation (median / mean / max over all
views, and per object), held-out PSNR (held-out views posed against the frozen object for the learned runs), mask
IoU and the wall time.

    python benchmarks/learned_cameras.py [--categories chair,car] [--objects 4] [--views 24] [--size 32]
                                         [--steps 1200] [--holdout 6] [--variants given,learn,average,nosearch]
                                         [--out /tmp/learned_cameras]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))


def main() -> None:
    import latent3d.systems.autodecoder.stage1.train as stage1
    from latent3d.systems.autodecoder.config import AutodecoderConfig
    from latent3d.systems.autodecoder.stage1.train import train_autodecoder

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--categories", default="chair,car")
    p.add_argument("--objects", type=int, default=4)
    p.add_argument("--views", type=int, default=24)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--steps", type=int, default=1200)
    p.add_argument("--holdout", type=int, default=6)
    p.add_argument("--variants", default="given,learn,average,nosearch")
    p.add_argument("--out", type=Path, default=Path("/tmp/learned_cameras"))
    a = p.parse_args()
    data = a.out / "data"
    if not data.exists():
        subprocess.run([sys.executable, "-m", "latent3d.cli", "data", "objects", "--out", str(data), "--categories",
                        a.categories, "--n-objects", str(a.objects), "--views", str(a.views), "--size", str(a.size)],
                       check=True, stderr=subprocess.DEVNULL)  # fmt: skip
    print("| variant | rotation error median / mean / max deg | held-out PSNR dB | mask IoU | train s |")
    print("|---|---|---|---|---|")
    soft = stage1.soft_min_loss  # the name the model calls
    for variant in a.variants.split(","):
        stage1.soft_min_loss = soft if variant != "average" else (lambda errors, T: stage1.torch.cat(errors).mean())
        kw = dict(cameras="given" if variant == "given" else "learn", search=0.0 if variant == "nosearch" else 0.4)
        cfg = AutodecoderConfig(steps=a.steps, holdout=a.holdout, samples=32, patch=24, embedding_dim=64,
                                latent_channels=16, **kw)  # fmt: skip
        t0 = time.time()
        ev = train_autodecoder(data, a.out / variant, cfg, device="cpu", progress=False)
        r = ev.get("cameras", {}).get("rotation_error_deg")
        rot = f"{r['median']} / {r['mean']} / {r['max']}" if r else "(given)"
        m = ev["mean"]
        print(f"| {variant} | {rot} | {m['psnr']:.2f} | {m['mask_iou']:.3f} | {time.time() - t0:.0f} |",
              flush=True)
        for k, v in ev.get("cameras", {}).get("per_object", {}).items():
            print(f"|   {k} | {v['median']} / {v['mean']} / {v['max']} | {ev['per_object'][k]['psnr']:.2f} | | |")


if __name__ == "__main__":
    main()
