"""Training NF-LDM's latent voxel auto-encoder (Kim et al. 2023, Sec. 3.2) on the grids of a frozen scene
auto-encoder, evaluating it and writing the run folder, stage 2's input:

    model/                 config.json + model.safetensors + MODEL_CARD.md (latent3d's model-folder format)
    latents.safetensors    g [N, G], c [N, Cc, X/ds, Y/ds, Z/dz] and f [N, F, X, Y] (quantised vectors) and their
                           code indices, of every training scene; the episode names in its metadata
    eval.json              voxel reconstruction error, renders of decoded vs original grids (PSNR on the training and
                           held-out frames), codebook usage; run.json: command, data, scene auto-encoder run

The grid of every training scene is made once (all its training frames encoded by the frozen scene auto-encoder,
no gradient) and kept in memory. Each step takes ``batch_size`` scenes: loss = voxel MSE of the normalised grid
(features, plus ``density_weight`` x density: the paper's 2.5) + ``image_weight`` x L1 between ``views`` training
frames of each scene and their renders from its decoded grid by the frozen scene auto-encoder + the quantisers'
codebook and commitment losses + ``kl_weight`` x KL(q(g) || N(0, I)).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from torch import Tensor

from latent3d.errors import UserError
from latent3d.systems.nfldm.config import SceneAEConfig, SceneLatentAEConfig
from latent3d.systems.nfldm.episodes import Episode, read_episodes
from latent3d.systems.nfldm.latent_ae import SceneLatentAutoencoder, SceneLatents
from latent3d.systems.nfldm.scene_ae import SceneAutoencoder

KIND = "latent3d scene latent autoencoder"
SCENE_AE_FIX = "pass the --out folder of a finished `latent3d train scene-ae` run"


def check_inputs(scene_ae_run: Path, data: Path | None, cfg: SceneLatentAEConfig) -> tuple[Path, SceneAEConfig]:
    """The data folder (``data``, else the one the scene auto-encoder was trained on) and the scene auto-encoder's
    settings, read without its weights; a missing or foreign run, missing data or a grid the settings do not divide
    is one UserError line."""
    from latent3d.io.model_folder import get, read_config, read_model_folder
    from latent3d.systems.nfldm.episodes import episode_folders
    from latent3d.systems.nfldm.train_scene_ae import KIND as SCENE_KIND

    saved = read_model_folder(scene_ae_run / "model", SCENE_KIND, SCENE_AE_FIX)
    sae = saved.config(SceneAEConfig, "scene_ae")
    if data is None:
        doc = read_config(scene_ae_run / "run.json", SCENE_AE_FIX)
        data = Path(get(doc, "data", str, scene_ae_run / "run.json", SCENE_AE_FIX))
        if not data.is_dir():
            raise UserError(f"--scene-ae {scene_ae_run} was trained on {data}, which is not a folder any more: "
                            "give the episodes with --data DIR")  # fmt: skip
    elif not data.is_dir():
        raise UserError(f"--data {data} is not a folder: give the episodes the scene auto-encoder was trained on")
    episode_folders(data)
    bad = list(cfg.check_grid(sae.grid))
    if bad:
        raise UserError(f"{bad[0]}; choose another value or a scene auto-encoder with another --grid")
    return data, sae


@torch.no_grad()
def scene_grids(scene_ae: SceneAutoencoder, episodes: list[Episode], device: torch.device) -> Tensor:
    """``[N, C + 1, X, Y, Z]``: every episode's grid from all its training frames (on the CPU)."""
    out = []
    for ep in episodes:
        tr = torch.tensor(ep.train)
        lo, hi = ep.bbox_min.to(device), ep.bbox_max.to(device)
        grid = scene_ae.encode(ep.images[tr].to(device), ep.viewmats[tr].to(device), ep.Ks[tr].to(device), lo, hi)
        out.append(grid.cpu())
    return torch.stack(out)


def voxel_errors(rec: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:  # rec, x [B, C + 1, X, Y, Z] normalised
    """Per scene ``[B]``: the MSE of the feature channels and of the density channel (normalised units)."""
    err = (rec - x).pow(2)
    return err[:, :-1].mean(dim=(1, 2, 3, 4)), err[:, -1].mean(dim=(1, 2, 3))


def latent_ae_loss(model, scene_ae: SceneAutoencoder, x: Tensor, eps: list[Episode], views: list[Tensor],
                   cfg: SceneLatentAEConfig, g: torch.Generator | None = None) -> dict[str, Tensor]:  # fmt: skip
    """The loss of one step (module docstring): normalised grids ``x [B, C + 1, X, Y, Z]`` of episodes ``eps``,
    rendered at frames ``views[b]`` of each."""
    rec, grid, z = model(x, g)
    feat, dens = voxel_errors(rec, x)
    voxel = feat.mean() + cfg.density_weight * dens.mean()
    image = x.new_zeros(())
    if cfg.image_weight > 0:
        H, W, dev = *eps[0].images.shape[-2:], x.device
        for b, (ep, v) in enumerate(zip(eps, views)):
            r = scene_ae.render(grid[b], ep.bbox_min.to(dev), ep.bbox_max.to(dev), ep.viewmats[v].to(dev),
                                ep.Ks[v].to(dev), H, W, generator=g)  # fmt: skip
            image = image + (r.rgb - ep.images[v].to(dev)).abs().mean() / len(eps)
    kl = z.kl()
    loss = voxel + cfg.image_weight * image + z.vq_loss + cfg.kl_weight * kl
    return {"loss": loss, "voxel": voxel.detach(), "density": dens.mean().detach(), "image": image.detach(),
            "vq": z.vq_loss.detach(), "kl": kl.detach(), **_usage(z, cfg)}  # fmt: skip


def _usage(z: SceneLatents, cfg: SceneLatentAEConfig) -> dict[str, Tensor]:
    from latent3d.nets.vq import codebook_usage

    uc, uf = codebook_usage(z.c_indices, cfg.codebook_coarse), codebook_usage(z.f_indices, cfg.codebook_fine)
    return {"usage_c": torch.tensor(uc["usage"]), "usage_f": torch.tensor(uf["usage"])}


def train_scene_latent_ae(scene_ae_run: str | Path, out_dir: str | Path, cfg: SceneLatentAEConfig,
                          data: str | Path | None = None, device: str = "auto", resume: bool = False,
                          progress: bool = True, checkpoint_every: int = 500,
                          command: str | None = None) -> dict:  # fmt: skip
    """Train on the grids of the scene auto-encoder run ``scene_ae_run`` with the shared trainer, evaluate and write
    the run folder (module docstring); returns the summary."""
    from dataclasses import asdict

    from latent3d.runtime import device_name, resolve_device, seeded
    from latent3d.systems.nfldm.train_scene_ae import load_scene_ae
    from latent3d.train.trainer import TrainConfig, preflight, process_state, train

    scene_ae_run, out_dir = Path(scene_ae_run), Path(out_dir)
    data, _ = check_inputs(scene_ae_run, Path(data) if data is not None else None, cfg)
    tcfg = TrainConfig(out_dir=out_dir, steps=cfg.steps, lr=cfg.lr, warmup_steps=min(100, cfg.steps // 10),
                       ckpt_every=checkpoint_every, seed=cfg.seed, device=device, resume=resume, progress=progress,
                       desc="train scene-latent-ae",
                       extra={"scene_latent_ae": asdict(cfg), "scene_ae": str(scene_ae_run.resolve()),
                              "data": str(data.resolve())})  # fmt: skip
    preflight(tcfg)
    dev = resolve_device(device)
    scene_ae = load_scene_ae(scene_ae_run).to(dev).requires_grad_(False)
    episodes = read_episodes(data, scene_ae.cfg)
    grids = scene_grids(scene_ae, episodes, dev)
    with seeded(cfg.seed):
        model = SceneLatentAutoencoder(cfg, grids.shape[1], tuple(grids.shape[2:]))
    model.set_statistics(grids)
    x_all = model.normalise(grids)

    def batch_fn(step: int, g: torch.Generator) -> tuple[Tensor, list[Tensor]]:
        n = len(episodes)
        scenes = torch.cat([torch.randperm(n, generator=g) for _ in range(math.ceil(cfg.batch_size / n))])
        scenes = scenes[: cfg.batch_size]
        views = [torch.tensor(episodes[e].train)[torch.randperm(len(episodes[e].train), generator=g)[: cfg.views]]
                 for e in scenes.tolist()]  # fmt: skip
        return scenes, views

    def loss_fn(m, batch, g: torch.Generator) -> dict[str, Tensor]:
        scenes, views = batch
        x = x_all[scenes].to(next(iter(m.parameters())).device)
        return latent_ae_loss(m, scene_ae, x, [episodes[e] for e in scenes.tolist()], views, cfg, g)

    res = train(model, batch_fn, loss_fn, tcfg)
    model.eval()
    summary = {"steps": res.step, "train_s": round(res.wall_s, 1), "final_loss": res.last_loss,
               "episodes": len(episodes), "parameters": sum(p.numel() for p in model.parameters()),
               "device": device_name(device), "command": command, "data": str(Path(data).resolve()),
               "scene_ae": str(Path(scene_ae_run).resolve())}  # fmt: skip
    if process_state(device).is_main_process:
        report, latents = evaluate_latent_ae(model, scene_ae, episodes, grids, device)
        summary["eval"] = report["mean"]
        export_latent_ae(out_dir, model, latents, [ep.name for ep in episodes], report, summary)
    return summary



@torch.no_grad()
def encode_all(model: SceneLatentAutoencoder, x: Tensor, chunk: int = 16) -> tuple[SceneLatents, Tensor]:
    """The latents (``g`` its mean) and the normalised reconstruction of normalised grids ``x [N, C + 1, X, Y, Z]``,
    ``chunk`` scenes at a time, on the CPU."""
    dev = next(model.parameters()).device
    parts, recs = [], []
    for s in range(0, len(x), chunk):
        z = model.encode(x[s:s + chunk].to(dev))
        recs.append(model.decode(z.g, z.c, z.f).cpu())
        parts.append(z)
    keys = ("g", "g_mean", "g_logvar", "c", "c_indices", "f", "f_indices")
    z = SceneLatents(**{k: torch.cat([getattr(p, k).cpu() for p in parts]) for k in keys},
                     vq_loss=torch.stack([p.vq_loss.cpu() for p in parts]).mean())  # fmt: skip
    return z, torch.cat(recs)


@torch.no_grad()
def _psnrs(scene_ae: SceneAutoencoder, ep: Episode, frames: list[int], grid: Tensor, decoded: Tensor,
           dev: torch.device, chunk: int = 8) -> dict[str, float]:  # grid, decoded [C + 1, X, Y, Z]  # fmt: skip
    """PSNR of the frames rendered from the original and the decoded grid against the frames, and between both."""
    from latent3d.metrics.image import psnr

    H, W = ep.images.shape[-2:]
    lo, hi = ep.bbox_min.to(dev), ep.bbox_max.to(dev)
    a, b = [], []
    for s in range(0, len(frames), chunk):
        v = torch.tensor(frames[s:s + chunk])
        for out, gr in ((a, grid), (b, decoded)):
            out.append(scene_ae.render(gr.to(dev), lo, hi, ep.viewmats[v].to(dev), ep.Ks[v].to(dev), H, W).rgb.cpu())
    orig, dec = torch.cat(a).permute(0, 2, 3, 1), torch.cat(b).permute(0, 2, 3, 1)
    target = ep.images[torch.tensor(frames)].permute(0, 2, 3, 1)
    return {"psnr_original": psnr(orig, target), "psnr_decoded": psnr(dec, target),
            "psnr_decoded_vs_original": psnr(dec, orig)}  # fmt: skip


def evaluate_latent_ae(model: SceneLatentAutoencoder, scene_ae: SceneAutoencoder, episodes: list[Episode],
                       grids: Tensor, device: str = "auto") -> tuple[dict, SceneLatents]:  # fmt: skip
    """The report of eval.json (module docstring) and the latents of every scene: per episode the voxel MSE
    (normalised units: features, density and the training's weighted sum) and the PSNRs of its training and
    held-out frames rendered from the decoded and the original grid; codebook usage and perplexity of c and f."""
    from latent3d.nets.vq import codebook_usage
    from latent3d.runtime import resolve_device

    dev = resolve_device(device)
    model, scene_ae = model.to(dev).eval(), scene_ae.to(dev).eval()
    x = model.normalise(grids.to(dev)).cpu()
    z, rec = encode_all(model, x)
    decoded = model.denormalise(rec.to(dev)).cpu()
    feat, dens = voxel_errors(rec, x)
    per: dict[str, dict[str, float]] = {}
    for i, ep in enumerate(episodes):
        row = {"voxel_mse": float(feat[i] + model.cfg.density_weight * dens[i]), "features_mse": float(feat[i]),
               "density_mse": float(dens[i])}  # fmt: skip
        for split, frames in (("train", ep.train), ("held", ep.held)):
            if frames:
                row |= {f"{split}_{k}": v for k, v in _psnrs(scene_ae, ep, frames, grids[i], decoded[i], dev).items()}
        per[ep.name] = row
    keys = sorted({k for row in per.values() for k in row})
    mean = {k: sum(r[k] for r in per.values() if k in r) / sum(k in r for r in per.values()) for k in keys}
    cb = {"coarse": {**codebook_usage(z.c_indices, model.cfg.codebook_coarse), "codes": model.cfg.codebook_coarse},
          "fine": {**codebook_usage(z.f_indices, model.cfg.codebook_fine), "codes": model.cfg.codebook_fine}}
    return {"mean": mean, "codebooks": cb, "episodes": per}, z


def export_latent_ae(out_dir: Path, model: SceneLatentAutoencoder, z: SceneLatents, names: list[str], report: dict,
                     summary: dict) -> Path:  # fmt: skip
    """``model/`` (latent3d's model-folder format), ``latents.safetensors``, ``eval.json`` and ``run.json``, each
    written atomically."""
    from latent3d.io.atomic import write_text
    from latent3d.io.model_folder import save_tensors, write_model_folder

    run_only = ("train_s", "command", "data", "device", "scene_ae")
    config = {"scene_latent_ae": model.cfg, "grid_channels": model.channels, "grid": list(model.grid),
              "training": {k: v for k, v in summary.items() if k not in run_only}}  # fmt: skip
    sd = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    write_model_folder(out_dir / "model", KIND, config, sd, _card(model, summary, report))
    tensors = {"g": z.g_mean, "c": z.c, "c_indices": z.c_indices, "f": z.f, "f_indices": z.f_indices}
    meta = {"episodes": json.dumps(names), **{f"{k}_shape": json.dumps(list(v.shape[1:])) for k, v in tensors.items()}}
    save_tensors(tensors, out_dir / "latents.safetensors", metadata=meta)
    write_text(out_dir / "eval.json", json.dumps(report, indent=1))
    run = {k: summary[k] for k in ("command", "data", "scene_ae")}
    write_text(out_dir / "run.json", json.dumps(run, indent=1))
    return out_dir / "model"


def _card(model: SceneLatentAutoencoder, s: dict, report: dict) -> str:
    cfg, ev, cb = model.cfg, report["mean"], report["codebooks"]
    X, Y, Z = model.grid
    held = (f" Held-out frames: {ev['held_psnr_decoded']:.2f} dB from decoded grids, {ev['held_psnr_original']:.2f} dB "
            "from the original grids." if "held_psnr_decoded" in ev else "")  # fmt: skip
    return f"""# latent3d scene latent auto-encoder (NeuralField-LDM, Sec. 3.2)

A scene auto-encoder's {X}x{Y}x{Z} grid ({model.channels} channels) -> global g ({cfg.global_dim}-d, KL weight
{cfg.kl_weight:g}), coarse c ({cfg.coarse_channels}x{X // cfg.downsample}x{Y // cfg.downsample}x{Z // cfg.downsample_z},
codebook {cfg.codebook_coarse}), fine BEV f ({cfg.fine_channels}x{X}x{Y}, codebook {cfg.codebook_fine}) -> the grid.

- Scene auto-encoder: `{s.get('scene_ae')}`; data: `{s.get('data')}`: {s['episodes']} scenes.
- Training: `{s.get('command') or 'latent3d train scene-latent-ae'}`: {s['steps']} steps in {s['train_s']} s on
  {s['device']}; final loss {s['final_loss']:.4f}.
- Voxel MSE (normalised units): features {ev['features_mse']:.4f}, density {ev['density_mse']:.4f}.
- Training frames rendered by the scene auto-encoder: {ev['train_psnr_decoded']:.2f} dB from decoded grids,
  {ev['train_psnr_original']:.2f} dB from the original grids.{held}
- Codebook usage: c {cb['coarse']['usage']:.2f} (perplexity {cb['coarse']['perplexity']:.1f}), f
  {cb['fine']['usage']:.2f} (perplexity {cb['fine']['perplexity']:.1f}).
- Networks: {s['parameters'] / 1e6:.2f}M parameters, width {cfg.width}, {cfg.blocks} residual block(s) per resolution.
"""


def load_scene_latent_ae(run_dir: str | Path) -> SceneLatentAutoencoder:
    """The latent auto-encoder of a finished ``latent3d train scene-latent-ae`` run (``run_dir/model``), in eval
    mode; a damaged or foreign folder is one UserError line before any weight is used."""
    from latent3d.io.model_folder import read_model_folder

    fix = "pass the --out folder of a finished `latent3d train scene-latent-ae` run (retrain or copy it again)"
    saved = read_model_folder(Path(run_dir) / "model", KIND, fix)
    cfg = saved.config(SceneLatentAEConfig, "scene_latent_ae")
    channels = saved.get("grid_channels", int)
    grid = tuple(saved.get("grid", list, items=int))
    tensors = saved.tensors()

    def build() -> SceneLatentAutoencoder:
        model = SceneLatentAutoencoder(cfg, channels, grid)  # type: ignore[arg-type]
        model.load_state_dict(tensors)
        return model

    return saved.build(build).eval()


def read_scene_latents(run_dir: str | Path) -> tuple[dict[str, Tensor], list[str]]:
    """``latents.safetensors`` of a ``latent3d train scene-latent-ae`` run: its tensors (g, c, c_indices, f,
    f_indices; first axis the scene) and the episode names; every problem is one UserError line."""
    from latent3d.io.model_folder import load_tensors, metadata_json, read_metadata

    path = Path(run_dir) / "latents.safetensors"
    fix = "pass the --out folder of a finished `latent3d train scene-latent-ae` run"
    if not path.is_file():
        raise UserError(f"{path}: not found; {fix}")
    names = metadata_json(read_metadata(path, fix), "episodes", list, path, fix, items=str)
    tensors = load_tensors(path, fix)
    missing = [k for k in ("g", "c", "c_indices", "f", "f_indices") if k not in tensors]
    if missing or any(len(v) != len(names) for v in tensors.values()):
        raise UserError(f"{path}: tensors {missing or 'of another count than the episodes'}; {fix}")
    return tensors, names
