"""A whole NF-LDM scene generator (Kim et al. 2023, Fig. 2): the scene auto-encoder that renders a voxel grid
(Sec. 3.1), the latent auto-encoder that decodes latents into that grid (Sec. 3.2), the three denoisers of
p(g) p(c | g) p(f | g, c) (Sec. 3.3) and the camera (image size, intrinsics) of the frames it was trained on.

Two folders hold one:

- a ``latent3d train scene-diffusion`` run (``RUN3/{g,c,f}``, ``RUN3/run.json`` naming the latent auto-encoder run,
  whose run.json names the scene auto-encoder run and the episodes the camera is read from), as training leaves it;
- a packed scene model (``latent3d scene pack RUN3 --out DIR``; the bundled ``scene-tiny`` and ``vizdoom-tiny``):
  ``DIR/config.json`` (kind, camera, the three runs' provenance), ``DIR/scene_ae/model``, ``DIR/latent_ae/model``,
  ``DIR/diffusion/{g,c,f}``, optionally ``DIR/prior`` (the post-optimisation prior, ``latent3d train scene-prior``)
  and ``DIR/MODEL_CARD.md``: self-contained, no path outside it.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from latent3d.errors import UserError

KIND = "latent3d scene model"
FORMAT = 1
DEFAULT_MODEL = "scene-tiny"
MODEL_FIX = ("give a bundled scene model (scene-tiny, vizdoom-tiny), a folder of `latent3d scene pack` or the --out "
             "folder of `latent3d train scene-diffusion`")  # fmt: skip


@dataclass
class SceneModel:
    """What ``latent3d scene`` samples and renders with (module docstring)."""

    diffusion: object  # SceneDiffusion: g, c, f denoisers, the latent auto-encoder, the scene box
    scene_ae: object  # SceneAutoencoder: renders a decoded grid
    width: int  # the training frames' size in pixels
    height: int
    K: Tensor  # [3, 3] their intrinsics
    source: str  # the bundled name or the folder
    prior: Path | None = None  # a packed model's post-optimisation prior (``DIR/prior``), if it has one

    @property
    def box(self) -> tuple[Tensor, Tensor]:  # bbox_min, bbox_max [3]: the generated scene's box, centred at 0
        return self.diffusion.box  # type: ignore[attr-defined]


def resolve_model(model: str) -> Path:
    """The folder of ``--model``: an existing folder, else a bundled checkpoint's name; one UserError line when it is
    neither or holds no scene model (checked without reading any weight)."""
    from latent3d.weights import bundled_path

    path = Path(model)
    if not path.is_dir():
        if "/" in model or "\\" in model:
            raise UserError(f"--model {model}: no such folder; {MODEL_FIX}")
        path = bundled_path(model)
    if not ((path / "config.json").is_file() and (path / "diffusion").is_dir()) and not (path / "run.json").is_file():
        raise UserError(f"--model {model}: {path} holds no scene model; {MODEL_FIX}")
    return path


def _packed_camera(path: Path) -> tuple[int, int, Tensor]:
    """The camera entry of a packed model's config.json."""
    from latent3d.io.model_folder import get, read_config

    cfg = path / "config.json"
    doc = read_config(cfg, MODEL_FIX)
    found = get(doc, "latent3d.kind", str, cfg, MODEL_FIX)
    if found != KIND:
        raise UserError(f"{cfg}: holds a {found!r}, not a {KIND!r}; {MODEL_FIX}")
    w, h = get(doc, "camera.width", int, cfg, MODEL_FIX), get(doc, "camera.height", int, cfg, MODEL_FIX)
    K = get(doc, "camera.K", list, cfg, MODEL_FIX, items=list)
    return w, h, _intrinsics(K, w, h, cfg)


def _intrinsics(K: list, w: int, h: int, where: Path) -> Tensor:  # -> [3, 3] float32
    t = torch.tensor(K, dtype=torch.float64) if all(len(r) == 3 for r in K) and len(K) == 3 else None
    sizes_ok = 1 <= w <= 4096 and 1 <= h <= 4096
    if t is None or not torch.isfinite(t).all() or not sizes_ok or min(t[0, 0], t[1, 1]) <= 0:
        raise UserError(f"{where}: camera K must be a 3x3 intrinsics matrix of a 1..4096 pixel image; {MODEL_FIX}")
    return t.float()


def _run_parts(path: Path) -> tuple[Path, Path, tuple[int, int, Tensor]]:
    """The latent auto-encoder run, scene auto-encoder run and camera of a scene-diffusion run folder."""
    from latent3d.io.model_folder import get, read_config
    from latent3d.systems.nfldm.episodes import episode_folders, read_episode

    latents = Path(get(read_config(path / "run.json", MODEL_FIX), "latents", str, path / "run.json", MODEL_FIX))
    doc = read_config(latents / "run.json", MODEL_FIX)
    scene_ae, data = (Path(get(doc, k, str, latents / "run.json", MODEL_FIX)) for k in ("scene_ae", "data"))
    if not data.is_dir():
        raise UserError(f"{latents / 'run.json'}: its episodes {data} are gone, and with them the camera the scenes "
                        "are rendered with; put them back or pack the model while they are there")  # fmt: skip
    ep = read_episode(episode_folders(data)[0], data)
    return latents, scene_ae, (int(ep.images.shape[2]), int(ep.images.shape[1]), ep.Ks[0].float())  # [N, H, W, 3]


def load_scene_model(model: str = DEFAULT_MODEL, device: str = "cpu") -> SceneModel:
    """The scene model ``model`` names (:func:`resolve_model`), on ``device``, in eval mode."""
    from latent3d.runtime import resolve_device
    from latent3d.systems.nfldm.train_scene_ae import load_scene_ae
    from latent3d.systems.nfldm.train_scene_diffusion import load_scene_diffusion

    path, dev = resolve_model(model), resolve_device(device)
    if (path / "diffusion").is_dir():
        w, h, K = _packed_camera(path)
        diffusion = load_scene_diffusion(path / "diffusion", dev, latents=path / "latent_ae")
        scene_ae = load_scene_ae(path / "scene_ae")
    else:
        latents, sae, (w, h, K) = _run_parts(path)
        diffusion = load_scene_diffusion(path, dev, latents=latents)
        scene_ae = load_scene_ae(sae)
    prior = path / "prior" if (path / "prior" / "config.json").is_file() else None
    source = str(path.resolve()) if Path(model).is_dir() else model  # what `scene edit` finds again from anywhere
    return SceneModel(diffusion, scene_ae.to(dev), w, h, K, source, prior)


def read_model_map(model: str, source: Path) -> tuple[Tensor, str]:
    """``latent3d scene --bev SOURCE``: the map ``[1, K, X, Y]`` in the classes of ``model``'s psi_c and psi_f
    (:func:`~latent3d.systems.nfldm.bev.read_bev`) and a line naming it, read from the model's config files before
    any weight loads; a model trained without maps, or a map it cannot read, is one UserError line."""
    from latent3d.io.model_folder import read_model_folder
    from latent3d.systems.nfldm.bev import BevVocabulary, read_bev
    from latent3d.systems.nfldm.config import SceneAEConfig, SceneDiffusionConfig
    from latent3d.systems.nfldm.train_scene_ae import KIND as SCENE_KIND
    from latent3d.systems.nfldm.train_scene_diffusion import KIND as DIFF_KIND

    path = resolve_model(model)
    packed = (path / "diffusion").is_dir()
    c = read_model_folder((path / "diffusion" if packed else path) / "c", DIFF_KIND, MODEL_FIX)
    if not c.config(SceneDiffusionConfig, "scene_diffusion").bev:
        raise UserError(f"--bev: the model {model} was trained without maps; use a model trained with `latent3d train "
                        "scene-diffusion --bev` (the bundled scene-tiny and vizdoom-tiny are)")  # fmt: skip
    vocab = BevVocabulary(c.get("bev.classes", list, items=str), c.get("bev.solid", list, items=str))
    K, X, Y = c.get("shapes.bev", list, items=int)
    sae_dir = path / "scene_ae" if packed else _run_parts(path)[1]
    sae = read_model_folder(sae_dir / "model", SCENE_KIND, MODEL_FIX).config(SceneAEConfig, "scene_ae")
    if not source.exists():
        raise UserError(f"--bev {source}: no such file or folder; give a PNG map or an episode folder")
    bev = read_bev(source, vocab, sae, X, Y)
    return bev[None], str(source)


HALF_MIN_NUMEL = 1024  # --half keeps smaller tensors (biases, norms, standardisation statistics) in float32


def halve_weights(path: Path) -> None:
    """Rewrite a ``model.safetensors`` with its float32 tensors of at least ``HALF_MIN_NUMEL`` elements in float16
    (loading casts them back into the float32 networks), metadata kept."""
    from latent3d.io.model_folder import load_tensors, read_metadata, save_tensors

    meta = read_metadata(path)
    t = {k: v.half() if v.dtype == torch.float32 and v.numel() >= HALF_MIN_NUMEL else v
         for k, v in load_tensors(path).items()}  # fmt: skip
    save_tensors(t, path, meta or None)


def pack_scene_model(run: str | Path, out: str | Path, card: str = "", prior: str | Path | None = None,
                     half: bool = False) -> Path:  # fmt: skip
    """Copy a ``latent3d train scene-diffusion`` run and the two auto-encoder runs it stands on (and, if given, the
    ``latent3d train scene-prior`` run ``prior``) into one self-contained folder (module docstring), written
    atomically; ``card`` heads its MODEL_CARD.md, followed by the parts' model cards. ``half``: the large weights of
    the latent3d model folders stored in float16 (:func:`halve_weights`; the prior's diffusers UNet stays float32)."""
    from latent3d.io.atomic import atomic_dir
    from latent3d.io.model_folder import read_config

    run = Path(run)
    if not (run / "run.json").is_file():
        raise UserError(f"{run}: not a `latent3d train scene-diffusion` run (no run.json); {MODEL_FIX}")
    latents, scene_ae, (w, h, K) = _run_parts(run)
    load_scene_model(str(run))  # every part must load before anything is written
    if prior is not None:
        from latent3d.systems.nfldm.scene_prior import load_scene_prior

        prior = Path(prior) / "model" if (Path(prior) / "model").is_dir() else Path(prior)
        load_scene_prior(prior)
    provenance = {p: read_config(d / "run.json", MODEL_FIX).get("command") for p, d in
                  (("scene_ae", scene_ae), ("latent_ae", latents))}  # fmt: skip
    doc = {"latent3d": {"kind": KIND, "format": FORMAT},
           "camera": {"width": w, "height": h, "K": K.double().tolist()}, "commands": provenance}  # fmt: skip
    cards = [card] if card else []
    with atomic_dir(Path(out)) as tmp:
        shutil.copytree(scene_ae / "model", tmp / "scene_ae" / "model")
        shutil.copytree(latents / "model", tmp / "latent_ae" / "model")
        for lv in ("g", "c", "f"):
            shutil.copytree(run / lv, tmp / "diffusion" / lv)
        if prior is not None:
            shutil.copytree(prior, tmp / "prior")
        if half:
            for part in ("scene_ae/model", "latent_ae/model", "diffusion/g", "diffusion/c", "diffusion/f", "prior"):
                if (tmp / part / "model.safetensors").is_file():
                    halve_weights(tmp / part / "model.safetensors")
        for part in ("scene_ae/model", "latent_ae/model", "diffusion/g", "diffusion/c", "diffusion/f", "prior"):
            md = tmp / part / "MODEL_CARD.md"
            if md.is_file():
                cards.append(f"## {part}\n\n" + md.read_text())
        (tmp / "config.json").write_text(json.dumps(doc, indent=1))
        (tmp / "MODEL_CARD.md").write_text("\n\n".join(cards))
    return Path(out)
