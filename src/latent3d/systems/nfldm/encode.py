"""``latent3d scene encode``: episodes encoded by a packed scene model's two auto-encoders (NF-LDM Sec. 3.1 and
3.2, frozen) into a latents run folder, the ``--latents`` of ``latent3d train scene-diffusion``: new diffusion
levels (with ``--bev``, say) trained on the latents the packed model's decoders understand, without retraining
the auto-encoders. The folder is that of ``latent3d train scene-latent-ae`` (:mod:`.train_latent_ae`):

    model/                 the packed latent auto-encoder, copied as it is (its card and weights)
    scene_ae/model/        the packed scene auto-encoder, copied; scene_ae/run.json: the command that trained it
    latents.safetensors    g, c, f (and code indices) of every episode; eval.json: reconstruction figures
    run.json               the latent auto-encoder's training command, the data, scene_ae/, and this command
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from latent3d.errors import UserError


def encode_episodes(model: str, data: str | Path, out_dir: str | Path, device: str = "auto",
                    command: str | None = None) -> dict:  # fmt: skip
    """Encode every episode under ``data`` with the auto-encoders of the packed scene model ``model`` and write the
    latents run ``out_dir`` (module docstring), atomically; returns eval.json's means. Inputs are checked before
    any weight loads."""
    from latent3d.io.atomic import atomic_dir
    from latent3d.io.model_folder import read_config, save_tensors
    from latent3d.runtime import resolve_device
    from latent3d.systems.nfldm.episodes import episode_folders, read_episodes
    from latent3d.systems.nfldm.scene_model import MODEL_FIX, resolve_model
    from latent3d.systems.nfldm.train_latent_ae import evaluate_latent_ae, load_scene_latent_ae, scene_grids
    from latent3d.systems.nfldm.train_scene_ae import load_scene_ae

    path, data, out_dir = resolve_model(model), Path(data), Path(out_dir)
    if not (path / "diffusion").is_dir():
        raise UserError(f"--model {model}: a training run; its --latents folder already holds the latents (give a "
                        "packed model: a bundled name or a `latent3d scene pack` folder)")  # fmt: skip
    if not data.is_dir():
        raise UserError(f"--data {data} is not a folder of episodes")
    episode_folders(data)
    commands = read_config(path / "config.json", MODEL_FIX).get("commands") or {}
    dev = resolve_device(device)
    scene_ae = load_scene_ae(path / "scene_ae").to(dev).eval()
    lae = load_scene_latent_ae(path / "latent_ae")
    episodes = read_episodes(data, scene_ae.cfg)
    if tuple(scene_ae.cfg.grid) != tuple(lae.grid):
        raise UserError(f"{path}: its auto-encoders do not fit each other; repack the model")
    report, z = evaluate_latent_ae(lae, scene_ae, episodes, scene_grids(scene_ae, episodes, dev), device)
    tensors = {"g": z.g_mean, "c": z.c, "c_indices": z.c_indices, "f": z.f, "f_indices": z.f_indices}
    meta = {"episodes": json.dumps([e.name for e in episodes]),
            **{f"{k}_shape": json.dumps(list(v.shape[1:])) for k, v in tensors.items()}}  # fmt: skip
    final = out_dir.resolve()
    with atomic_dir(out_dir) as tmp:
        shutil.copytree(path / "latent_ae" / "model", tmp / "model")
        shutil.copytree(path / "scene_ae" / "model", tmp / "scene_ae" / "model")
        (tmp / "scene_ae" / "run.json").write_text(json.dumps({"command": commands.get("scene_ae")}, indent=1))
        save_tensors(tensors, tmp / "latents.safetensors", metadata=meta)
        (tmp / "eval.json").write_text(json.dumps(report, indent=1))
        run = {"command": commands.get("latent_ae"), "data": str(data.resolve()), "scene_ae": str(final / "scene_ae"),
               "encoded_by": command, "model": str(path)}  # fmt: skip
        (tmp / "run.json").write_text(json.dumps(run, indent=1))
    return report["mean"]
