"""NF-LDM's scene auto-encoder on posed RGB-D episodes (Kim et al. 2023, Sec. 3.1; the voxel-size ablation of the
appendix): trains ``latent3d train scene-ae`` once per grid size with ``--holdout 6`` and prints held-out PSNR / SSIM /
depth AbsRel, steps per second, the whole run's wall time (reading, training, evaluation) and peak RSS. Each grid
trains in its own process, so that each peak RSS is its own.

    python benchmarks/scene_ae_eval.py --data runs/bench_scenes [--grids 16,16,4/32,32,8/64,64,16] [--steps 2000]
    python benchmarks/scene_ae_eval.py --data runs/vizdoom4 --grids 32,32,8        # `latent3d data vizdoom` episodes

After the table it prints, for the first grid, the held-out PSNR of baselines that need no auto-encoder (the mean
training image, the previous frame) and of the decoder fed an empty or another episode's grid.

A missing ``--data`` folder is made with ``latent3d data scenes`` (``--episodes`` x ``--frames`` at ``--size``).

With ``--scene-ae RUN`` (a finished ``train scene-ae`` run) it trains the latent voxel auto-encoder (Sec. 3.2) on that
run's grids instead, once per coarse downsampling factor (the paper's Table 13), and prints the voxel reconstruction
error, the PSNR of the frames rendered from decoded against original grids, codebook usage and perplexity:

    python benchmarks/scene_ae_eval.py --scene-ae runs/scene-ae [--downsamples 4,8,16] [--steps 2000]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path


def baselines(run: str, data: str) -> dict:
    """Held-out PSNR of what needs no auto-encoder, beside the run's grid: each episode's mean training image, the
    training frame just before each held-out one (consecutive frames overlap strongly), and the run's own decoder
    fed an empty grid or another episode's grid (how much of the image comes from the grid at all)."""
    import torch

    from latent3d.metrics.image import psnr
    from latent3d.systems.nfldm.episodes import read_episodes
    from latent3d.systems.nfldm.train_scene_ae import load_scene_ae

    model = load_scene_ae(run)
    eps = read_episodes(data, replace(model.cfg, holdout=6))
    out: dict[str, list[float]] = {"empty grid": [], "another episode's grid": [], "mean training image": [],
                                   "previous frame": []}  # fmt: skip
    with torch.no_grad():
        grids = [model.encode(e.images[e.train], e.viewmats[e.train], e.Ks[e.train], e.bbox_min, e.bbox_max)
                 for e in eps]  # fmt: skip
        for k, e in enumerate(eps):
            held = torch.tensor(e.held)
            target = e.images[held].permute(0, 2, 3, 1)
            for name, grid in (("empty grid", grids[k] * 0), ("another episode's grid", grids[(k + 1) % len(eps)])):
                r = model.render(grid, e.bbox_min, e.bbox_max, e.viewmats[held], e.Ks[held], *e.images.shape[-2:])
                out[name].append(psnr(r.rgb.permute(0, 2, 3, 1), target))
            mean = e.images[e.train].mean(0).permute(1, 2, 0)
            out["mean training image"].append(psnr(mean.expand_as(target), target))
            out["previous frame"].append(psnr(e.images[held - 1].permute(0, 2, 3, 1), target))
    return {k: round(sum(v) / len(v), 2) for k, v in out.items()}


def _one(data: str, out: str, grid: str, steps: int, device: str) -> dict:
    """One training run in this process; its figures."""
    from latent3d.systems.nfldm.config import SceneAEConfig
    from latent3d.systems.nfldm.train_scene_ae import train_scene_ae

    cfg = SceneAEConfig(grid=tuple(int(v) for v in grid.split(",")), steps=steps, holdout=6)  # type: ignore[arg-type]
    t0 = time.time()
    s = train_scene_ae(data, out, cfg, device=device, progress=False, checkpoint_every=10**9)
    return {"grid": grid, **{k: round(v, 4) for k, v in s["eval"].items()}, "steps": s["steps"],
            "steps_per_s": round(s["steps"] / s["train_s"], 2), "wall_s": round(time.time() - t0, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "episodes": s["episodes"], "frames": s["frames"]}  # fmt: skip


def _one_latent(scene_ae: str, out: str, ds: int, steps: int, device: str) -> dict:
    """One latent auto-encoder run at coarse downsampling ``ds`` in this process; its figures."""
    from latent3d.systems.nfldm.config import SceneLatentAEConfig
    from latent3d.systems.nfldm.train_latent_ae import train_scene_latent_ae

    t0 = time.time()
    s = train_scene_latent_ae(scene_ae, out, SceneLatentAEConfig(downsample=ds, steps=steps), device=device,
                              progress=False, checkpoint_every=10**9)  # fmt: skip
    cb = json.loads((Path(out) / "eval.json").read_text())["codebooks"]
    return {"downsample": ds, **{k: round(v, 4) for k, v in s["eval"].items()},
            **{f"{k}_{m}": round(cb[k][m], 3) for k in ("coarse", "fine") for m in ("usage", "perplexity")},
            "steps_per_s": round(s["steps"] / s["train_s"], 2), "wall_s": round(time.time() - t0, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}  # fmt: skip


def _run_one(a: argparse.Namespace, setting: str, extra: list[str]) -> dict:
    """One setting in a fresh process (its own peak RSS); its JSON row, also printed."""
    cmd = [sys.executable, __file__, "--one", setting, *extra, "--out", a.out, "--steps", str(a.steps),
           "--device", a.device]  # fmt: skip
    line = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
    print(line, flush=True)
    return json.loads(line)


def _latent_table(rows: list[dict]) -> None:
    print("\n| coarse downsampling | voxel MSE | held-out PSNR decoded / original grid | usage c / f | perplexity c / f "
          "| steps/s | wall s | peak RSS MB |\n|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['downsample']} | {r['voxel_mse']:.4f} | {r.get('held_psnr_decoded', float('nan')):.2f} / "
              f"{r.get('held_psnr_original', float('nan')):.2f} | {r['coarse_usage']:.2f} / {r['fine_usage']:.2f} | "
              f"{r['coarse_perplexity']:.1f} / {r['fine_perplexity']:.1f} | {r['steps_per_s']} | {r['wall_s']} | "
              f"{r['peak_rss_mb']} |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="runs/bench_scenes", help="episodes folder (procedural ones made if missing)")
    ap.add_argument("--out", default="runs/bench_scene_ae")
    ap.add_argument("--grids", default="16,16,4/32,32,8/64,64,16", help="grid sizes X,Y,Z separated by /")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--episodes", type=int, default=6)
    ap.add_argument("--frames", type=int, default=48)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--scene-ae", help="a finished `train scene-ae` run: benchmark the latent auto-encoder on it")
    ap.add_argument("--downsamples", default="4,8,16", help="coarse downsampling factors of the latent auto-encoder")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one setting in this process, print its JSON row
    a = ap.parse_args(argv)
    if a.one:
        row = (_one_latent(a.scene_ae, f"{a.out}/latent_ds{a.one}", int(a.one), a.steps, a.device) if a.scene_ae
               else _one(a.data, f"{a.out}/{a.one.replace(',', 'x')}", a.one, a.steps, a.device))  # fmt: skip
        print(json.dumps(row), flush=True)
        return 0
    if a.scene_ae:
        rows = [_run_one(a, ds, ["--scene-ae", a.scene_ae]) for ds in a.downsamples.split(",")]
        _latent_table(rows)
        return 0
    if not Path(a.data).exists():
        from latent3d.data.procedural.trajectories import write_scene_episodes
        from latent3d.data.procedural.trajectory_config import SceneEpisodesConfig

        write_scene_episodes(a.data, SceneEpisodesConfig(episodes=a.episodes, frames=a.frames, size=a.size), 0)
    rows = []
    for grid in a.grids.split("/"):
        rows.append(_run_one(a, grid, ["--data", a.data]))
    print("\n| grid | held-out PSNR | SSIM | depth AbsRel | steps/s | wall s | peak RSS MB |\n|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['grid'].replace(',', 'x')} | {r['psnr']:.2f} | {r['ssim']:.3f} | {r['depth_absrel']:.3f} | "
              f"{r['steps_per_s']} | {r['wall_s']} | {r['peak_rss_mb']} |")
    import torch

    r = rows[0]
    print(f"threads {torch.get_num_threads()}, {r['episodes']} episodes / {r['frames']} frames from {a.data}, "
          f"{a.steps} steps per grid")
    first = f"{a.out}/{rows[0]['grid'].replace(',', 'x')}"
    print(f"held-out PSNR without the auto-encoder, beside {first}'s {rows[0]['psnr']:.2f} dB:",
          json.dumps(baselines(first, a.data)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
