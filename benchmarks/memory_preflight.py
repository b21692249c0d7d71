"""The memory preflight's estimates (:mod:`latent3d.memory`) beside measured peaks: each case runs in a fresh process
and reports its peak RSS above the process's state just before the work (``ru_maxrss``), and the estimate of the
same settings. An estimate below the measurement is a preflight that lets a run reach the allocator.

    python benchmarks/memory_preflight.py [--steps 2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile

CHILD = r'''
import json, resource, sys, tempfile
case, kw, steps = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
import torch
from latent3d import memory
tuples = {k: tuple(v) if isinstance(v, list) else v for k, v in kw.items()}
if case == "data objects":
    from latent3d.data.procedural.generate import object_views
    from latent3d.data.procedural.objects import make_object
    obj = make_object("chair", "red", seed=0, variation=1.0)
    object_views(obj, 1, 16, 16)
    est = memory.data_objects_bytes(kw["views"], kw["size"])
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    object_views(obj, kw["views"], kw["size"], kw["size"])
elif case == "train autodecoder":
    import latent3d.systems.autodecoder.stage1.train as T
    from latent3d.systems.autodecoder.config import AutodecoderConfig
    cfg = AutodecoderConfig(steps=steps, **tuples)
    est = memory.autodecoder_train_bytes(cfg, memory.meta_params(lambda: T.AutodecoderModel(1, 1, cfg)))
    T.evaluate_heldout = lambda *a, **k: {"mean": {}}
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    T.train_autodecoder(sys.argv[4], tempfile.mkdtemp(), cfg, device="cpu", progress=False, checkpoint_every=10**6)
elif case == "object-diffusion step":
    from latent3d.systems.autodecoder.config import ObjectDiffusionConfig
    from latent3d.systems.autodecoder.stage2.denoiser import build_unet
    cfg = ObjectDiffusionConfig(**tuples)
    net = build_unet(cfg, 16, 64)
    est = memory.object_diffusion_train_bytes(cfg, memory.meta_params(lambda: build_unet(cfg, 16, 64)), 16)
    opt = torch.optim.Adam(net.parameters())
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    for _ in range(steps):
        x = torch.randn(cfg.batch_size, 16, 8, 8, 8)
        out = net(x, torch.zeros(cfg.batch_size), torch.randn(cfg.batch_size, 8, 64), None)
        out.square().mean().backward()
        opt.step(); opt.zero_grad()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"measured": peak - base, "estimate": est}))
'''

CASES = [
    ("data objects", {"views": 24, "size": 64}),
    ("data objects", {"views": 16, "size": 256}),
    ("data objects", {"views": 4, "size": 512}),
    ("train autodecoder", {}),
    ("train autodecoder", {"samples": 256}),
    ("train autodecoder", {"patch": 64}),
    ("train autodecoder", {"widths": [64, 32]}),
    ("train autodecoder", {"latent_channels": 256, "base_channels": 512}),
    ("object-diffusion step", {"batch_size": 16}),
    ("object-diffusion step", {"batch_size": 64, "model_channels": 64}),
    ("object-diffusion step", {"batch_size": 16, "attention": [8, 4]}),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=2)
    args = ap.parse_args()
    data = tempfile.mkdtemp()
    subprocess.run([sys.executable, "-m", "latent3d.cli", "data", "objects", "--out", data, "--n-objects", "4",
                    "--views", "8"], check=True, capture_output=True)  # fmt: skip
    print(f"{'case':24s} {'settings':44s} {'measured MB':>12s} {'estimate MB':>12s} {'est/meas':>9s}")
    for case, kw in CASES:
        r = subprocess.run([sys.executable, "-c", CHILD, case, json.dumps(kw), str(args.steps), data],
                           capture_output=True, text=True, env={"OMP_NUM_THREADS": "2", "PATH": ""})  # fmt: skip
        if r.returncode:
            print(f"{case:24s} {json.dumps(kw):44s} failed: {r.stderr.strip().splitlines()[-1]}")
            continue
        res = json.loads(r.stdout.strip().splitlines()[-1])
        m, e = res["measured"] / 1e6, res["estimate"] / 1e6
        print(f"{case:24s} {json.dumps(kw):44s} {m:12.0f} {e:12.0f} {e / max(m, 1e-9):9.2f}")


if __name__ == "__main__":
    main()
