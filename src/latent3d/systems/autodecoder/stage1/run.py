"""A finished ``latent3d train autodecoder`` run folder, 3DVADER stage 1's output and stage 2's input: written by
:func:`export_run`, read back by :func:`load_autodecoder` (a damaged run is one UserError line).

    model/config.json, model/model.safetensors   the decoder: what it is (no paths, no times) and its weights, in the
                           format of every latent3d model (:func:`latent3d.io.model_folder.write_model_folder`)
    latents.safetensors    every object's 8^3 latent volume, the object ids and captions in its metadata
    eval.json, run.json    held-out scores (and timings); the command and the data folder
    cameras.json           with ``--cameras learn``: every training view's learned world-to-camera matrix
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from latent3d.systems.autodecoder.config import AutodecoderConfig
from latent3d.systems.autodecoder.stage1.decoder import Autodecoder, saved_parts

KIND = "latent3d autodecoder"


def export_run(out_dir: Path, decoder: Autodecoder, object_ids: list[str], cfg: AutodecoderConfig, data, report: dict,
               command: str | None, captions: list[str] | None = None,
               cameras: dict | None = None) -> None:  # fmt: skip
    """``model/`` (decoder safetensors + config.json: what the model is, no paths or times), ``latents.safetensors``
    (latents [N, C, 8, 8, 8] float32, ids [N]; the object ids, their captions ("" where a folder has none) and the
    latent shape in its metadata), ``eval.json`` and ``run.json`` (the command and the data folder), each written
    atomically; the same run writes the same bytes (the timings in eval.json aside)."""
    from latent3d.io.atomic import write_text
    from latent3d.io.model_folder import save_tensors, write_model_folder

    dev = next(decoder.parameters()).device
    with torch.no_grad():
        lat = torch.cat([decoder.latent(torch.arange(s, min(s + 16, len(object_ids)), device=dev)).cpu()
                         for s in range(0, len(object_ids), 16)])  # fmt: skip
    meta = {"autodecoder": cfg, "num_objects": len(object_ids), "grid_size": decoder.grid_size,
            "latent_shape": list(lat.shape[1:]), "box": cfg.box}  # fmt: skip
    if decoder.parts:  # stage 3: the head's skinning channels
        meta["parts"] = decoder.parts
    write_model_folder(out_dir / "model", KIND, meta, decoder.cpu().state_dict())
    save_tensors({"latents": lat, "ids": torch.arange(len(object_ids))}, out_dir / "latents.safetensors",
                 metadata={"object_ids": json.dumps(object_ids), "latent_shape": json.dumps(list(lat.shape[1:])),
                           "captions": json.dumps(captions or [""] * len(object_ids))})  # fmt: skip
    write_text(out_dir / "eval.json", json.dumps(report, indent=1))
    write_text(out_dir / "run.json", json.dumps({"command": command, "data": str(data)}, indent=1))
    if cameras is not None:  # --cameras learn: {object: {view file: world-to-camera 4 x 4}}
        write_text(out_dir / "cameras.json", json.dumps(cameras))


def load_autodecoder(run_dir: str | Path) -> tuple[Autodecoder, dict]:
    """The decoder of a finished ``latent3d train autodecoder`` run and its model/config.json, with the run's
    ``command`` and ``data`` (run.json) added when it has them; a damaged run is one UserError line."""
    from latent3d.io.model_folder import read_model_folder

    fix = "pass the --out folder of a finished `latent3d train autodecoder` run (retrain or copy it again)"
    saved = read_model_folder(Path(run_dir) / "model", KIND, fix)
    cfg = saved.config(AutodecoderConfig, "autodecoder")
    n = saved.get("num_objects", int)
    parts = saved_parts(saved)
    tensors = saved.tensors()

    def build() -> Autodecoder:
        decoder = Autodecoder(n, cfg, parts)
        decoder.load_state_dict(tensors)
        return decoder

    decoder, meta = saved.build(build), saved.meta
    if parts:  # stage 3: the training videos' part motions travel with the decoder to the generator
        from latent3d.systems.autodecoder.stage3.motion import read_motions

        meta = meta | {"motions": read_motions(run_dir, parts)}
        if (Path(run_dir) / "posenet").is_dir():
            from latent3d.systems.autodecoder.stage3.posenet import load_pose_net

            meta["posenet"] = load_pose_net(Path(run_dir) / "posenet", parts)
    try:  # provenance only: a run without it (or with a damaged one) still loads
        run = json.loads((Path(run_dir) / "run.json").read_text())
        meta |= {k: run[k] for k in ("command", "data") if isinstance(run.get(k), str)}
    except (OSError, ValueError, AttributeError, RecursionError):
        pass
    return decoder.eval(), meta
