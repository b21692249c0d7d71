"""Training NF-LDM's three latent diffusion models (Kim et al. 2023, Sec. 3.3; :mod:`.scene_diffusion`) on the latents
of a ``latent3d train scene-latent-ae`` run, and the run folder they leave:

    g/, c/, f/          one model folder per level (latent3d's model-folder format, kind "latent3d scene diffusion"):
                        config.json (settings, latent shapes, the diffusers DDIMScheduler settings, training summary),
                        model.safetensors (EMA weights and the standardisation statistics), MODEL_CARD.md
    training/<level>/   the shared trainer's checkpoints/, metrics.jsonl and config.json (``--resume`` goes on there)
    run.json            the latents run, its data and its scene auto-encoder (the same for every level)

The levels are independent: ``level="all"`` trains g, c, f one after the other in one process, a single level only
that one, so that three processes -- three GPUs (``CUDA_VISIBLE_DEVICES=k`` or ``--device cuda:k``; each may itself
be ``accelerate launch``-ed data parallel) -- train them at once into the same run folder. Each level is trained by
the shared diffusion recipe (:func:`latent3d.train.diffusion_recipe.fit_diffusion`): batches of training scenes,
the x0 objective (:class:`latent3d.diffusion.ddpm.DDPMLoss`, ``prediction_type="sample"``), and as ``condition`` the
coarser latents of the same scenes (g for c; g and c for f).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor

from latent3d.errors import UserError
from latent3d.systems.nfldm.bev import BevVocabulary, dataset_bevs
from latent3d.systems.nfldm.config import SceneAEConfig, SceneDiffusionConfig
from latent3d.systems.nfldm.scene_diffusion import (LEVELS, LevelDenoiser, SceneDiffusion, build_level,
                                                    diffusion_loss, scheduler_config)  # fmt: skip

KIND = "latent3d scene diffusion"
LATENTS_FIX = "pass the --out folder of a finished `latent3d train scene-latent-ae` run"


@dataclass
class SceneLatentData:
    """What the three levels train on: every training scene's latents (g, c, f and, for g, its trajectory)."""

    latents: dict[str, Tensor]  # g [N, G], c [N, Cc, Xc, Yc, Zc], f [N, F, X, Y], trajectory [N, K, 5] (level g),
    # bev [N, K', X, Y] (levels c and f with --bev: each scene's map, :mod:`.bev`)
    names: list[str]  # the episodes
    box: tuple[float, float, float]  # the scene auto-encoder's box: half-size in x and y, below, above
    run: dict  # latents, data, scene_ae (run.json)
    bev: BevVocabulary | None = None  # the maps' classes (with --bev)

    def shapes(self) -> dict[str, list[int]]:
        return {k: list(v.shape[1:]) for k, v in self.latents.items()}


def check_latents_run(latents_run: Path, cfg: SceneDiffusionConfig, levels: tuple[str, ...]) -> SceneLatentData:
    """The latents of ``latents_run`` (and, for level g, the trajectories of its episodes), read without any weights;
    a missing or foreign run, latents the settings do not fit, or a data folder that is gone is one UserError line."""
    from latent3d.io.model_folder import get, read_config, read_model_folder
    from latent3d.systems.nfldm.train_latent_ae import KIND as LATENT_KIND
    from latent3d.systems.nfldm.train_latent_ae import read_scene_latents
    from latent3d.systems.nfldm.train_scene_ae import KIND as SCENE_KIND

    read_model_folder(latents_run / "model", LATENT_KIND, LATENTS_FIX)
    tensors, names = read_scene_latents(latents_run)
    doc = read_config(latents_run / "run.json", LATENTS_FIX)
    data, scene_ae = (Path(get(doc, k, str, latents_run / "run.json", LATENTS_FIX)) for k in ("data", "scene_ae"))
    sae = read_model_folder(scene_ae / "model", SCENE_KIND, f"--latents {latents_run} names the scene auto-encoder "
                            f"{scene_ae}, which is gone or damaged").config(SceneAEConfig, "scene_ae")  # fmt: skip
    bad = list(cfg.check_latents(tuple(tensors["c"].shape[2:4]), tuple(tensors["f"].shape[2:4])))
    if bad:
        raise UserError(f"{bad[0]} (latents of {latents_run})")
    latents = {k: tensors[k].float() for k in ("g", "c", "f")}
    need_maps = cfg.bev and bool({"c", "f"} & set(levels))
    if ("g" in levels or need_maps) and not data.is_dir():
        raise UserError(f"--latents {latents_run} was made from {data}, which is not a folder any more: psi_g needs "
                        "its episodes' camera trajectories, --bev their maps; put the episodes back there")  # fmt: skip
    if "g" in levels:
        latents["trajectory"] = scene_trajectories(data, names, sae, cfg.trajectory_poses)
    vocab = None
    if need_maps:
        latents["bev"], vocab = dataset_bevs(data, names, sae, *latents["f"].shape[2:4])
    run = {"latents": str(latents_run.resolve()), "data": str(data), "scene_ae": str(scene_ae)}
    return SceneLatentData(latents, names, sae.box, run, vocab)


def scene_trajectories(data: Path, names: list[str], sae: SceneAEConfig, k: int) -> Tensor:  # -> [N, K, 5]
    """Every named episode's trajectory (:func:`~latent3d.systems.nfldm.scene_diffusion.encode_trajectory` in the box
    its grid fills), one episode read at a time."""
    from latent3d.systems.nfldm.episodes import episode_folders, read_episode, scene_box
    from latent3d.systems.nfldm.scene_diffusion import encode_trajectory

    folders = {f.name: f for f in episode_folders(data)}
    missing = [n for n in names if n not in folders]
    if missing:
        raise UserError(f"{data}: episode {missing[0]!r} of the latents is missing; put it back or retrain the "
                        "latent auto-encoder")  # fmt: skip
    out = []
    for name in names:
        viewmats = read_episode(folders[name], data).viewmats
        out.append(encode_trajectory(viewmats, *scene_box(viewmats, sae), k))
    return torch.stack(out)


def _check_run_folder(out_dir: Path, run: dict) -> None:
    """Another level's run.json in ``out_dir`` must name the same latents (the three models share them)."""
    from latent3d.io.model_folder import read_config

    path = out_dir / "run.json"
    if path.is_file():
        before = read_config(path).get("latents")
        if before != run["latents"]:
            raise UserError(f"--out {out_dir} holds models of the latents {before}, not {run['latents']}: give "
                            "another --out")  # fmt: skip


def train_scene_diffusion(latents_run: str | Path, out_dir: str | Path, cfg: SceneDiffusionConfig,
                          level: str = "all", device: str = "auto", resume: bool = False, progress: bool = True,
                          checkpoint_every: int = 500, command: str | None = None) -> dict[str, dict]:  # fmt: skip
    """Train the levels ``level`` (g, c, f or all) on the latents of ``latents_run`` and write each model folder
    and ``run.json`` (module docstring); returns a summary per level. Every input and every resume is checked
    before anything trains."""
    from latent3d.io.atomic import write_text
    from latent3d.train.trainer import preflight, process_state

    latents_run, out_dir = Path(latents_run), Path(out_dir)
    levels = LEVELS if level == "all" else (level,)
    if not set(levels) <= set(LEVELS):
        raise UserError(f"--level {level}: give g, c, f or all")
    data = check_latents_run(latents_run, cfg, levels)
    _check_run_folder(out_dir, data.run)
    tcfgs = {lv: _train_config(lv, cfg, out_dir, device, resume, progress, checkpoint_every, data) for lv in levels}
    for tcfg in tcfgs.values():
        preflight(tcfg)  # a refused resume of any level trains none
    summaries = {}
    for lv in levels:
        model, res = fit_level(lv, data, cfg, tcfgs[lv])
        summaries[lv] = {"steps": res.step, "train_s": round(res.wall_s, 1), "final_loss": res.last_loss,
                         "scenes": len(data.names), "parameters": sum(p.numel() for p in model.parameters())}
        if process_state(device).is_main_process:
            export_level(out_dir / lv, model, data, summaries[lv], command, device)
            write_text(out_dir / "run.json", json.dumps(data.run, indent=1))
    return summaries


def _train_config(level: str, cfg: SceneDiffusionConfig, out_dir: Path, device: str, resume: bool, progress: bool,
                  checkpoint_every: int, data: SceneLatentData):  # -> TrainConfig  # fmt: skip
    from latent3d.train.trainer import TrainConfig

    return TrainConfig(out_dir=out_dir / "training" / level, steps=cfg.steps, lr=cfg.lr,
                       warmup_steps=min(100, cfg.steps // 10), ema_decay=cfg.ema_decay, ckpt_every=checkpoint_every,
                       seed=cfg.seed, device=device, resume=resume, progress=progress,
                       desc=f"train scene-diffusion {level}",
                       extra={"scene_diffusion": asdict(cfg), "level": level, "latents": data.run["latents"]})


def fit_level(level: str, data: SceneLatentData, cfg: SceneDiffusionConfig, tcfg) -> tuple[LevelDenoiser, object]:
    """Build the denoiser of ``level`` (seeded), measure its standardisation on the training latents and train it
    with :func:`~latent3d.train.diffusion_recipe.fit_diffusion` (x0 objective, weighting ``cfg.weighting``), the
    item's coarser latents as its condition; returns the model (EMA weights, CPU, eval mode) and the trainer's
    result."""
    from latent3d.runtime import seeded
    from latent3d.train.diffusion_recipe import fit_diffusion

    with seeded(cfg.seed):
        model = build_level(level, cfg, data.shapes())
    model.fit_statistics(data.latents)
    x = model.encode(data.latents)  # [N, *shape]
    cond = model.condition(data.latents)  # standardised coarser latents of every scene (and its map)

    def condition(rows: Tensor, dev: torch.device, u: Tensor | None = None) -> dict[str, Tensor]:
        out = {k: v[rows].to(dev) for k, v in cond.items()}  # rows: the batch's scenes
        if u is not None and "bev" in out:  # the empty map, the mean g (0 standardised) for the dropped scenes
            keep_map, keep_g = (u[:, 0] >= cfg.bev_dropout).to(dev), (u[:, 1] >= cfg.bev_global_dropout).to(dev)
            out["bev"] = out["bev"] * keep_map.to(out["bev"].dtype)[:, None, None, None]
            out["g"] = out["g"] * keep_g.to(out["g"].dtype)[:, None]
        return out

    p = 1.0 if "bev" in cond else 0.0  # the draws of condition(); its own rates decide
    res = fit_diffusion(model, len(x), lambda i, g: x[i], diffusion_loss(cfg), tcfg, cfg.batch_size,
                        cond_drop=p, condition=condition)  # fmt: skip
    return model.cpu().eval(), res


def export_level(folder: Path, model: LevelDenoiser, data: SceneLatentData, summary: dict, command: str | None,
                 device: str) -> Path:  # fmt: skip
    """One level's model folder (latent3d's model-folder format, written atomically)."""
    from latent3d.io.model_folder import write_model_folder

    config = {"scene_diffusion": model.cfg, "level": model.level, "shapes": data.shapes(), "box": list(data.box),
              "scheduler": scheduler_config(model.cfg), "training": summary}  # fmt: skip
    if getattr(model, "bev", None) is not None:
        config["bev"] = asdict(data.bev)
    sd = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    return write_model_folder(folder, KIND, config, sd, _card(model, data, summary, command, device))


def _card(model: LevelDenoiser, data: SceneLatentData, s: dict, command: str | None, device: str) -> str:
    from latent3d.runtime import device_name

    cfg = model.cfg
    what = {"g": f"psi_g: an MLP with skip connections ({cfg.mlp_blocks} blocks, width {cfg.mlp_width}) over g and "
                 f"a trajectory of {cfg.trajectory_poses} camera poses",
            "c": "psi_c(c_t, g): a 2-D UNet (c's vertical axis folded into channels), g by conditional group norm",
            "f": "psi_f(f_t, g, c): a 2-D UNet over the BEV latent, c concatenated, g by conditional group norm"}
    return f"""# latent3d scene diffusion, level {model.level} (NeuralField-LDM, Sec. 3.3)

{what[model.level]}; x0 objective, {cfg.weighting} weighting, {cfg.beta_schedule} schedule over 1000 steps; latents
{model.shape} per scene.

- Latents: `{data.run['latents']}` ({s['scenes']} scenes; episodes from `{data.run['data']}`).
- Training: `{command or 'latent3d train scene-diffusion'}`: {s['steps']} steps in {s['train_s']} s on
  {device_name(device)}; final loss {s['final_loss']:.4f}; {s['parameters'] / 1e6:.2f}M parameters.
- Sampling: DDIM, {cfg.sample_steps} trailing steps, eta {cfg.eta:g} (`sample_scene_latents`).
"""


# ------------------------------------------------------------------------------------------------- loading
def load_level(run_dir: str | Path, level: str) -> LevelDenoiser:
    """The ``level`` denoiser of a ``latent3d train scene-diffusion`` run (``run_dir/<level>``), in eval mode; a
    missing, damaged or foreign folder is one UserError line before any weight is used."""
    from latent3d.io.model_folder import read_model_folder

    fix = f"train it with `latent3d train scene-diffusion --level {level} --out {run_dir}`"
    saved = read_model_folder(Path(run_dir) / level, KIND, fix)
    if saved.get("level", str) != level:
        raise UserError(f"{saved.config_path}: holds level {saved.get('level', str)!r}, not {level!r}; {fix}")
    cfg = saved.config(SceneDiffusionConfig, "scene_diffusion")
    keys = ("g", "c", "f", "bev") if cfg.bev and level != "g" else ("g", "c", "f")
    shapes = {k: saved.get(f"shapes.{k}", list, items=int) for k in keys}
    tensors = saved.tensors()

    def build() -> LevelDenoiser:
        model = build_level(level, cfg, shapes)
        model.load_state_dict(tensors)
        return model

    return saved.build(build).eval()


def load_scene_diffusion(run_dir: str | Path, device: str = "cpu", latents: str | Path | None = None) -> SceneDiffusion:
    """The three denoisers of a run and the latent auto-encoder of its latents (``latents``, by default the run
    its run.json names), on ``device``, for
    :func:`~latent3d.systems.nfldm.scene_diffusion.sample_scene_latents`; models that do not fit that latent
    auto-encoder are one UserError line."""
    from latent3d.io.model_folder import get, read_config, read_model_folder
    from latent3d.runtime import resolve_device
    from latent3d.systems.nfldm.train_latent_ae import load_scene_latent_ae

    run_dir, dev = Path(run_dir), resolve_device(device)
    fix = "pass the --out folder of a finished `latent3d train scene-diffusion` run"
    if latents is None:
        latents = get(read_config(run_dir / "run.json", fix), "latents", str, run_dir / "run.json", fix)
    g, c, f = (load_level(run_dir, lv).to(dev) for lv in LEVELS)
    lae = load_scene_latent_ae(latents).to(dev)
    X, Y, _ = lae.grid
    fits = (g.global_dim == lae.cfg.global_dim and list(f.shape) == [lae.cfg.fine_channels, X, Y]
            and list(c.shape) == [lae.cfg.coarse_channels, X // lae.cfg.downsample, Y // lae.cfg.downsample,
                                  lae.coarse_z])  # fmt: skip
    if not fits:
        raise UserError(f"{run_dir}: the models do not fit the latent auto-encoder of {latents}; retrain them")
    box = read_model_folder(run_dir / "g", KIND, fix).get("box", list, items=float)
    if len(box) != 3:
        raise UserError(f"{run_dir / 'g' / 'config.json'}: 'box' must hold 3 numbers; {fix}")
    half, below, above = box
    ext = torch.tensor([half, half, (below + above) / 2], dtype=torch.float32)
    return SceneDiffusion(g, c, f, lae, (-ext, ext), read_vocabulary(run_dir, c, f),  # type: ignore[arg-type]
                          (below - above) / 2)


def read_vocabulary(run_dir: Path, c: LevelDenoiser, f: LevelDenoiser) -> BevVocabulary | None:
    """The map classes of the levels trained with --bev (c, f or both; a psi_f without maps follows a map through
    the c it is given), the same for both, else one UserError line; None when neither takes maps."""
    from latent3d.io.model_folder import read_model_folder

    fix = "train c and f on maps of the same episodes"
    vocabs = []
    for lv, model in (("c", c), ("f", f)):
        if model.cfg.bev:
            saved = read_model_folder(run_dir / lv, KIND, fix)
            vocab = BevVocabulary(saved.get("bev.classes", list, items=str), saved.get("bev.solid", list, items=str))
            if len(vocab.classes) != model.bev_shape[0]:
                raise UserError(f"{run_dir / lv}: {len(vocab.classes)} map classes for a model of "
                                f"{model.bev_shape[0]}; retrain it")  # fmt: skip
            vocabs.append(vocab)
    if len(vocabs) == 2 and vocabs[0] != vocabs[1]:
        raise UserError(f"{run_dir}: levels c and f were trained on maps of other classes; {fix}")
    return vocabs[0] if vocabs else None
