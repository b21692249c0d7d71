"""Training NF-LDM's scene auto-encoder (Kim et al. 2023, Sec. 3.1) on posed RGB-D episodes, evaluating it on held-out
frames and writing the run folder:

    model/                 config.json + model.safetensors + MODEL_CARD.md (latent3d's model-folder format)
    heldout/<episode>/<frame file>   each held-out frame rendered from the episode's other frames, input size
    eval.json              held-out PSNR, SSIM and depth AbsRel per episode and their mean; run.json: command, data

Each step takes one episode, encodes ``views_in`` of its training frames into its grid and renders ``views_out`` of
them: loss = L1 of the image + ``depth_weight`` x (MSE of the expected depth in units of ``far`` where the frame's
first surface lies in the box, plus the L1 of the rays' occupancy against whether their first surface lies in the
box: 1 there, 0 for the sky or a surface beyond the box). The paper's perceptual term needs VGG weights that cannot
be downloaded here; it is left out.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import Tensor

from latent3d.systems.nfldm.config import SceneAEConfig
from latent3d.systems.nfldm.episodes import Episode, pooled_depth, read_episodes
from latent3d.systems.nfldm.scene_ae import SceneAutoencoder

KIND = "latent3d scene autoencoder"


def scene_ae_loss(model: SceneAutoencoder, ep: Episode, ins: Tensor, outs: Tensor, dev: torch.device,
                  g: torch.Generator | None = None) -> dict[str, Tensor]:  # fmt: skip
    """The loss of one step (module docstring) on frames ``ins`` -> ``outs`` of ``ep``."""
    cfg = model.cfg
    lo, hi = ep.bbox_min.to(dev), ep.bbox_max.to(dev)
    grid = model.encode(ep.images[ins].to(dev), ep.viewmats[ins].to(dev), ep.Ks[ins].to(dev), lo, hi)
    H, W = ep.images.shape[-2:]
    r = model.render(grid, lo, hi, ep.viewmats[outs].to(dev), ep.Ks[outs].to(dev), H, W, generator=g)
    rgb = (r.rgb - ep.images[outs].to(dev)).abs().mean()
    gt = pooled_depth(ep.depths[outs], cfg.downsample).to(dev)
    has = gt < r.exit  # the first surface lies inside the box (inf: no depth)
    depth = ((r.depth - torch.where(has, gt, 0)) / cfg.far).pow(2)[has].mean() if has.any() else rgb * 0
    # the rendered depth is normalised by the occupancy, so it alone lets every ray stay nearly empty (the decoder
    # then paints from the ray's elevation and ignores the grid): the occupancy is supervised on every ray
    occ = (r.occupancy - has.to(r.occupancy.dtype)).abs().mean()
    return {"loss": rgb + cfg.depth_weight * (depth + occ), "l1": rgb.detach(), "depth": depth.detach(),
            "occupancy": occ.detach()}


def train_scene_ae(data: str | Path, out_dir: str | Path, cfg: SceneAEConfig, device: str = "auto",
                   resume: bool = False, progress: bool = True, checkpoint_every: int = 500,
                   command: str | None = None) -> dict:  # fmt: skip
    """Train on the episodes under ``data`` with the shared trainer, evaluate the held-out frames and write the run
    folder (module docstring); returns the summary."""
    from dataclasses import asdict

    from latent3d.runtime import device_name, seeded
    from latent3d.train.trainer import TrainConfig, preflight, process_state, train

    out_dir = Path(out_dir)
    tcfg = TrainConfig(out_dir=out_dir, steps=cfg.steps, lr=cfg.lr, warmup_steps=min(100, cfg.steps // 10),
                       ckpt_every=checkpoint_every, seed=cfg.seed, device=device, resume=resume, progress=progress,
                       desc="train scene-ae", extra={"scene_ae": asdict(cfg), "data": str(Path(data).resolve())})
    preflight(tcfg)
    episodes = read_episodes(data, cfg)
    with seeded(cfg.seed):
        model = SceneAutoencoder(cfg)

    def batch_fn(step: int, g: torch.Generator) -> tuple[int, Tensor, Tensor]:
        e = int(torch.randint(0, len(episodes), (1,), generator=g))
        train_idx = torch.tensor(episodes[e].train)
        ins = train_idx[torch.randperm(len(train_idx), generator=g)[: cfg.views_in]]
        outs = train_idx[torch.randperm(len(train_idx), generator=g)[: cfg.views_out]]
        return e, ins, outs

    def loss_fn(m, batch, g: torch.Generator) -> dict[str, Tensor]:
        e, ins, outs = batch
        dev = next(iter(m.parameters())).device
        return scene_ae_loss(m, episodes[e], ins, outs, dev, g)

    res = train(model, batch_fn, loss_fn, tcfg)
    model.eval()
    summary = {"steps": res.step, "train_s": round(res.wall_s, 1), "final_loss": res.last_loss,
               "episodes": len(episodes), "frames": sum(len(e.train) + len(e.held) for e in episodes),
               "parameters": sum(p.numel() for p in model.parameters()), "device": device_name(device),
               "command": command, "data": str(Path(data).resolve())}  # fmt: skip
    if process_state(device).is_main_process:
        report = evaluate_heldout(model, episodes, out_dir, device)
        summary["eval"] = report["mean"]
        export_scene_ae(out_dir, model, summary)
    return summary


@torch.no_grad()
def evaluate_heldout(model: SceneAutoencoder, episodes: list[Episode], out_dir: Path, device: str = "auto") -> dict:
    """Render every held-out frame from its episode's training frames; write ``heldout/<episode>/<file>`` and
    ``eval.json`` (PSNR, SSIM, depth AbsRel where the frame has depth, per episode and the mean)."""
    from latent3d.io.atomic import write_text
    from latent3d.io.image import save_image
    from latent3d.metrics.image import psnr, ssim
    from latent3d.runtime import resolve_device

    dev = resolve_device(device)
    model = model.to(dev)
    per: dict[str, dict[str, float]] = {}
    for ep in episodes:
        if not ep.held:
            continue
        lo, hi = ep.bbox_min.to(dev), ep.bbox_max.to(dev)
        tr, held = torch.tensor(ep.train), torch.tensor(ep.held)
        grid = model.encode(ep.images[tr].to(dev), ep.viewmats[tr].to(dev), ep.Ks[tr].to(dev), lo, hi)
        H, W = ep.images.shape[-2:]
        r = model.render(grid, lo, hi, ep.viewmats[held].to(dev), ep.Ks[held].to(dev), H, W)
        pred, target = r.rgb.cpu().permute(0, 2, 3, 1), ep.images[held].permute(0, 2, 3, 1)
        for k, i in enumerate(ep.held):
            save_image(out_dir / "heldout" / ep.name / ep.files[i], pred[k])
        gt = pooled_depth(ep.depths[held], model.cfg.downsample)
        has = gt < r.exit.cpu()
        absrel = float(((r.depth.cpu() - gt).abs() / gt)[has].mean()) if has.any() else float("nan")
        per[ep.name] = {"psnr": psnr(pred, target), "ssim": ssim(pred, target), "depth_absrel": absrel,
                        "frames": len(ep.held)}  # fmt: skip
    keys = ("psnr", "ssim", "depth_absrel")
    mean = {k: sum(v[k] for v in per.values()) / len(per) for k in keys} if per else {}
    report = {"mean": mean, "episodes": per}
    write_text(out_dir / "eval.json", json.dumps(report, indent=1))
    return report


def export_scene_ae(out_dir: Path, model: SceneAutoencoder, summary: dict) -> Path:
    """``out_dir/model`` in latent3d's model-folder format and ``run.json`` (the command and the data)."""
    from latent3d.io.atomic import write_text
    from latent3d.io.model_folder import write_model_folder

    run_only = ("train_s", "command", "data", "device")
    config = {"scene_ae": model.cfg, "training": {k: v for k, v in summary.items() if k not in run_only}}
    sd = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    write_model_folder(out_dir / "model", KIND, config, sd, _card(model.cfg, summary))
    write_text(out_dir / "run.json", json.dumps({"command": summary["command"], "data": summary["data"]}, indent=1))
    return out_dir / "model"


def _card(cfg: SceneAEConfig, s: dict) -> str:
    ev = s.get("eval") or {}
    held = (f"Held-out frames: PSNR {ev['psnr']:.2f} dB, SSIM {ev['ssim']:.3f}, depth AbsRel {ev['depth_absrel']:.3f}."
            if ev else "No frames were held out.")  # fmt: skip
    return f"""# latent3d scene auto-encoder (NeuralField-LDM, Sec. 3.1)

Posed RGB images of a scene -> a {cfg.grid[0]}x{cfg.grid[1]}x{cfg.grid[2]} voxel grid ({cfg.features} features + density)
in a box of +-{cfg.box[0]:g} m around the trajectory ({cfg.box[1]:g} m below, {cfg.box[2]:g} m above the eye) -> any
camera's image and depth.

- Data: `{s.get('data')}`: {s['episodes']} episodes, {s['frames']} frames.
- Training: `{s.get('command') or 'latent3d train scene-ae'}`: {s['steps']} steps in {s['train_s']} s on {s['device']};
  final loss {s['final_loss']:.4f}. {held}
- Networks: {s['parameters'] / 1e6:.2f}M parameters; {cfg.depth_bins} depth bins from {cfg.near:g} to {cfg.far:g} m,
  encoder / decoder width {cfg.width}, rendered at 1/{cfg.downsample} of the input size, {cfg.samples} samples per ray.
"""


def load_scene_ae(run_dir: str | Path) -> SceneAutoencoder:
    """The scene auto-encoder of a finished ``latent3d train scene-ae`` run (``run_dir/model``), in eval mode; a
    damaged or foreign folder is one UserError line before any weight is used."""
    from latent3d.io.model_folder import read_model_folder

    fix = "pass the --out folder of a finished `latent3d train scene-ae` run (retrain or copy it again)"
    saved = read_model_folder(Path(run_dir) / "model", KIND, fix)
    cfg = saved.config(SceneAEConfig, "scene_ae")
    tensors = saved.tensors()

    def build() -> SceneAutoencoder:
        model = SceneAutoencoder(cfg)
        model.load_state_dict(tensors)
        return model

    return saved.build(build).eval()
