"""Forward+backward time of the voxel-grid volume renderer (render/volume.py).

Scene: B random grids of N^3 voxels (softplus density, sigmoid RGB) filling [-1, 1]^3, each rendered from one camera
on a 3 m orbit (elevation 20 deg, vertical fov 0.8 rad) at 32x32 = 1024 unit-direction pixel rays, 128 samples per ray
(3DVADER's setting). The loss is a fixed random projection of rgb, occupancy and depth.

    OMP_NUM_THREADS=1 python benchmarks/volume_render.py                 # 4 x 1024 rays x 128 samples, 32^3 x 4
    python benchmarks/volume_render.py --grid 64 --size 64 --device cuda
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

from latent3d.render.camera import orbit_cameras, pixel_rays
from latent3d.render.volume import render_volume


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--grid", type=int, default=32)
    ap.add_argument("--size", type=int, default=32, help="image side; rays per grid = size^2")
    ap.add_argument("--samples", type=int, default=128)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    dev = torch.device(args.device)
    g = torch.Generator().manual_seed(0)
    B, N = args.batch, args.grid
    raw = torch.randn(B, 4, N, N, N, generator=g).to(dev).requires_grad_()
    az = torch.arange(B) * (360.0 / B) + 10.0
    V, K = orbit_cameras(3.0, 20.0, az, 0.8, args.size, args.size)
    o, d = pixel_rays(V, K, args.size, args.size)
    o, d = o.reshape(B, -1, 3).to(dev), d.reshape(B, -1, 3).to(dev)
    R = o.shape[1]
    proj = torch.randn(B, R, 5, generator=g).to(dev)

    def step():
        out = render_volume(torch.nn.functional.softplus(raw[:, :1]), torch.sigmoid(raw[:, 1:]), (-1, -1, -1),
                            (1, 1, 1), o, d, n_samples=args.samples)
        loss = (torch.cat([out.rgb, out.occupancy[..., None], out.depth[..., None]], -1) * proj).sum()
        raw.grad = None
        loss.backward()
        return out

    out = step()  # warm-up
    times = []
    for _ in range(args.reps):
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    hit = float((out.occupancy > 0).float().mean())
    print(f"{B} x {R} rays x {args.samples} samples, grid {N}^3 x 4, {dev}, threads {torch.get_num_threads()}: "
          f"forward+backward median {sorted(times)[len(times) // 2]:.3f} s (min {min(times):.3f}), hit rays {hit:.0%}")


if __name__ == "__main__":
    main()
