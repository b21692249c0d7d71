"""Forward+backward time and peak memory of the Gaussian rasterizer.

Scene: N Gaussians uniformly in the unit cube [-0.5, 0.5]^3, random rotations, per-axis scales log-uniform in
[0.4, 1.2] x the mean spacing N^(-1/3) / 4 (0.0046..0.014 at 10k), opacities U(0.1, 0.9), RGB colours; C cameras
on a 4 m orbit (elevation 20 deg, azimuths spread over 360 deg), vertical fov 0.6 rad, square images.
The loss is a fixed random projection of colours and alphas so that every output gets a gradient.

    python benchmarks/rasterize.py                      # the full table (10k/100k x 128/256/512 x 1/4 cams)
    python benchmarks/rasterize.py --quick              # only the acceptance scene (10k, 256^2, 4 cameras)
    python benchmarks/rasterize.py --quick --profile    # + torch.profiler summary of that scene

On CUDA (and with gsplat installed) the same table is printed for the torch and gsplat backends.
Peak memory: CUDA max_memory_allocated; on CPU the peak RSS growth of the process measured with
tracemalloc-free sampling (resource.getrusage high-water mark), which only ever grows, so CPU rows are
run from small to large and the column shows the high-water mark so far.
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

from latent3d.render.camera import orbit_cameras  # noqa: E402
from latent3d.render.rasterize import rasterize  # noqa: E402


def make_scene(n: int, device: torch.device, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    spacing = n ** (-1.0 / 3.0)
    means = torch.rand(n, 3, generator=g) - 0.5
    quats = torch.randn(n, 4, generator=g)
    scales = spacing / 4 * torch.exp(torch.empty(n, 3).uniform_(math.log(0.4), math.log(1.2), generator=g))
    opac = torch.rand(n, generator=g) * 0.8 + 0.1
    colors = torch.rand(n, 3, generator=g)
    return [t.to(device).requires_grad_() for t in (means, quats, scales, opac, colors)]


def make_cameras(c: int, size: int, device: torch.device):
    az = torch.arange(c) * (360.0 / c) + 10.0
    V, K = orbit_cameras(4.0, 20.0, az, 0.6, size, size)
    return V.to(device), K.to(device)


def step(params, V, K, size, backend):
    img, alpha, _ = rasterize(*params, V, K, size, size, backend=backend)
    g = torch.Generator(device=img.device).manual_seed(1)
    loss = (img * torch.rand(img.shape, generator=g, device=img.device)).sum() + alpha.sum()
    loss.backward()


def peak_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def bench(n, size, c, device, backend, reps):
    params = make_scene(n, device)
    V, K = make_cameras(c, size, device)
    step(params, V, K, size, backend)  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(reps):
        for p in params:
            p.grad = None
        t0 = time.perf_counter()
        step(params, V, K, size, backend)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return min(times), peak_mb(device)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="only 10k Gaussians, 256^2, 4 cameras")
    ap.add_argument("--profile", action="store_true", help="torch.profiler summary of the acceptance scene")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    backends = ["torch"]
    if device.type == "cuda":
        try:
            import gsplat  # noqa: F401

            backends.append("gsplat")
        except ImportError:
            print("gsplat not installed: torch backend only")
    print(f"device={device} threads={torch.get_num_threads()} torch={torch.__version__}")
    grid = [(10_000, 256, 4)] if args.quick else [(n, s, c) for n in (10_000, 100_000) for s in (128, 256, 512) for c in (1, 4)]
    header = f"{'backend':8s} {'N':>7s} {'res':>5s} {'cams':>4s} {'fwd+bwd s':>10s} {'peak MB':>9s}"
    print(header)
    print("-" * len(header))
    for backend in backends:
        for n, s, c in grid:
            t, mem = bench(n, s, c, device, backend, args.reps)
            print(f"{backend:8s} {n:7d} {s:4d}² {c:4d} {t:10.3f} {mem:9.0f}", flush=True)
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        params = make_scene(10_000, device)
        V, K = make_cameras(4, 256, device)
        step(params, V, K, 256, "torch")
        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        with profile(activities=acts) as prof:
            step(params, V, K, 256, "torch")
        key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
        print(prof.key_averages().table(sort_by=key, row_limit=25))


if __name__ == "__main__":
    main()
