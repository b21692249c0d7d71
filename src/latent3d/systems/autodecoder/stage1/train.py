"""Training 3DVADER's autodecoder from posed views and masks alone (Ntavelis et al. 2023, Sec. 3.1, supplement B).

One step: a few objects, several views of each (multi-frame batches), a pixel patch per view; G1 gives each object's
8^3 latent volume, G2 its radiance grid, which is ray-marched (:func:`latent3d.render.volume.render_volume`, white
background) at the patch pixels. Losses: pyramidal L1 between rendered and true patches at scales 1, 1/2, 1/4, plus
10 x L1 between rendered occupancy and the mask (the paper's foreground loss). Embeddings, decoder (and, with
``refine_cameras``, per-view pose corrections) train jointly with Adam on the shared trainer. At the end the run
folder holds ``model/`` (decoder, config.json), ``latents.safetensors`` (every object's latent volume: stage 2's
data), ``heldout/<object>/<view>.png``, ``eval.json`` (held-out PSNR / SSIM / mask IoU) and ``run.json`` (the command
and the data folder).
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch
from torch import Tensor, nn

from latent3d.errors import UserError
from latent3d.nets.embeddings import embedding_nbytes
from latent3d.nets.losses import pyramid_l1
from latent3d.render.volume import render_grid_views, render_grids
from latent3d.runtime import seeded
from latent3d.systems.autodecoder.config import AutodecoderConfig
from latent3d.systems.autodecoder.stage1.camera_search import (CAMERA_LR_SCALE, JUMP_EVERY, JUMP_UNTIL,
                                                               SEARCH_STEPS_PER_OBJECT,
                                                               OrbitCameras, SearchBatch, hypotheses,
                                                               hypothesis_errors, search_step, soft_min_loss,
                                                               temperature)
from latent3d.systems.autodecoder.stage1.cameras import CameraRefiner
from latent3d.systems.autodecoder.stage1.decoder import Autodecoder
from latent3d.systems.autodecoder.stage1.run import export_run
from latent3d.systems.autodecoder.stage1.views import PatchBatch, ViewSet, sample_patches, search_targets, split_views

class AutodecoderModel(nn.Module):
    """What the trainer optimises: the autodecoder and, optionally, one pose correction per training view
    (``refine_cameras``) or one learned camera per training view (``cameras="learn"``, :mod:`.camera_search`).
    ``forward(ids [O], views [O V], viewmats [O V, 4, 4], Ks [O V, 3, 3], pixels [O V, R, 2], search=None) -> dict``
    with rgb [O V, R, 3], occupancy [O V, R] and the colour total variation tv [] of the decoded grids; with a
    :class:`SearchBatch` of mode "soft", only ``search`` (the soft-minimum loss); of mode "assign" / "jump", the
    poses of its objects are searched first."""

    def __init__(self, num_objects: int, num_views: int, cfg: AutodecoderConfig):
        super().__init__()
        self.cfg = cfg
        self.decoder = Autodecoder(num_objects, cfg)
        self.refiner = CameraRefiner(num_views) if cfg.refine_cameras and cfg.cameras == "given" else None
        self.cameras = OrbitCameras(num_views, cfg.camera_radius) if cfg.cameras == "learn" else None
        az, el = hypotheses(cfg.search_azimuths, cfg.search_elevations)
        self.register_buffer("hyp_az", az, persistent=False)
        self.register_buffer("hyp_el", el, persistent=False)

    def forward(self, ids: Tensor | None = None, views: Tensor | None = None, viewmats: Tensor | None = None,
                Ks: Tensor | None = None, pixels: Tensor | None = None,
                search: SearchBatch | None = None) -> dict[str, Tensor]:  # fmt: skip
        cfg, out = self.cfg, {}
        if search is not None:
            out = self._search(search)
            if search.mode == "soft":
                return out
        if self.cameras is not None:
            viewmats = self.cameras(views)
        elif self.refiner is not None:
            viewmats = self.refiner(viewmats, views)
        density, rgb = self.decoder.decode(self.decoder.latent(ids))
        out["tv"] = total_variation(rgb) if cfg.tv_weight > 0 else rgb.new_zeros(())
        out["rgb"], out["occupancy"] = render_grids(density, rgb, viewmats, Ks, pixels, cfg.box, cfg.samples)
        return out

    def _search(self, b: SearchBatch) -> dict[str, Tensor]:
        cfg, samples = self.cfg, max(8, self.cfg.samples // 2)
        if b.mode == "soft":
            grids = self.decoder.decode(self.decoder.latent(b.ids))
            errors = hypothesis_errors(grids, b.Ks, b.targets, self.hyp_az, self.hyp_el, cfg.camera_radius, cfg.box,
                                       samples)  # fmt: skip
            return {"search": soft_min_loss(errors, b.temperature)}
        assert self.cameras is not None
        n = cfg.objects_per_step
        for s in range(0, len(b.ids), n):  # "assign" covers every object: a few at a time
            part = SearchBatch(b.mode, b.ids[s:s + n], b.views[s:s + n], b.targets[s:s + n], b.Ks[s:s + n])
            with torch.no_grad():
                grids = self.decoder.decode(self.decoder.latent(part.ids))
            search_step(self.cameras, grids, part, self.hyp_az, self.hyp_el, cfg.box, samples)
        return {}


def total_variation(grid: Tensor) -> Tensor:  # [B, C, X, Y, Z] -> []
    """Anisotropic total variation: the mean absolute difference of neighbouring voxels along x, y and z, summed."""
    return sum((grid.diff(dim=d)).abs().mean() for d in (2, 3, 4))  # type: ignore[return-value]


def autodecoder_loss(rgb: Tensor, occupancy: Tensor, batch: PatchBatch, cfg: AutodecoderConfig,
                     vgg: nn.Module | None = None, tv: Tensor | None = None) -> dict[str, Tensor]:  # fmt: skip
    """Pyramidal L1 reconstruction (supp. B: scales 1, 1/2, 1/4), plus the pyramidal VGG-19 perceptual term when
    ``vgg`` is given, + ``fg_weight`` x L1(occupancy, mask), + ``tv_weight`` x the colour grid's total variation
    ``tv`` when given."""
    M, P = batch.rgb.shape[:2]
    pred = rgb.reshape(M, P, P, 3).permute(0, 3, 1, 2)
    target = batch.rgb.permute(0, 3, 1, 2).to(pred)
    rec = pyramid_l1(pred, target, levels=cfg.pyramid)
    out = {}
    if vgg is not None:
        from latent3d.nets.vgg import perceptual_loss

        out["perceptual"] = perceptual_loss(vgg, pred, target, scales=cfg.pyramid)
        rec = rec + out["perceptual"]
    fg = (occupancy - batch.mask.reshape(M, -1).to(occupancy)).abs().mean()
    loss = rec + cfg.fg_weight * fg
    if tv is not None and cfg.tv_weight > 0:
        out["tv"] = tv
        loss = loss + cfg.tv_weight * tv
    return {"loss": loss, "rec": rec.detach(), "fg": fg.detach(),
            **{k: v.detach() for k, v in out.items()}}  # fmt: skip


@torch.no_grad()
def render_full_views(decoder: Autodecoder, latent: Tensor, viewmats: Tensor, Ks: Tensor, height: int, width: int,
                      cfg: AutodecoderConfig, chunk: int = 8192) -> tuple[Tensor, Tensor]:  # fmt: skip
    """Whole images of one object: ``latent [1, C, 8, 8, 8]``, V views -> rgb [V, H, W, 3], occupancy [V, H, W]
    (the grid is decoded once, then :func:`render_grid_views`)."""
    return render_grid_views(*decoder.decode(latent), viewmats, Ks, height, width, cfg.box, cfg.samples, chunk)


def evaluate_heldout(decoder: Autodecoder, held: ViewSet, object_ids: list[str], cfg: AutodecoderConfig,
                     out_dir: Path | None) -> dict:  # fmt: skip
    """Render every held-out view from its object's latent, write ``heldout/<object>/<view>`` when ``out_dir`` is
    given, and score them: PSNR, SSIM (on RGB) and mask IoU (occupancy > 0.5) per object and their mean."""
    from latent3d.io.image import save_image
    from latent3d.metrics.image import mask_iou, psnr, ssim

    dev = next(decoder.parameters()).device
    per: dict[str, dict] = {}
    for k, vidx in enumerate(held.per_object):
        if len(vidx) == 0:
            continue
        lat = decoder.latent(torch.tensor([k], device=dev))
        H, W = held.images.shape[1:3]
        rgb, occ = render_full_views(decoder, lat, held.viewmats[vidx].to(dev), held.Ks[vidx].to(dev), H, W, cfg)
        rgb, occ = rgb.cpu().clamp(0, 1), occ.cpu()
        true = held.images[vidx].float() / 255.0
        for j, v in enumerate(vidx.tolist()):
            if out_dir is not None:
                save_image(out_dir / "heldout" / object_ids[k] / held.names[v], rgb[j].numpy())
        per[object_ids[k]] = {"psnr": psnr(rgb, true), "ssim": ssim(rgb, true),
                              "mask_iou": mask_iou(occ > 0.5, held.masks[vidx]), "views": len(vidx)}  # fmt: skip
    keys = ("psnr", "ssim", "mask_iou")
    mean = {k: sum(p[k] for p in per.values()) / len(per) for k in keys} if per else {}
    return {"mean": mean, "per_object": per}


def _batch_fn(vs: ViewSet, cfg: AutodecoderConfig):
    """``batch_fn(step, g) -> (patches | None, search | None)``: patches of ``vs`` as always; with ``--cameras learn``
    the search phase's objects instead (the first ``search`` x steps), then every view's assignment, then pose
    searches of the step's objects every :data:`JUMP_EVERY` steps until ``JUMP_UNTIL`` x steps."""
    learn = cfg.cameras == "learn"
    n_search, jump_until = int(cfg.search * cfg.steps), int(JUMP_UNTIL * cfg.steps)
    targets, Ks = search_targets(vs, cfg.search_size) if learn else (None, None)

    def search(mode: str, ids: Tensor, T: float = 0.0) -> SearchBatch:
        views = [vs.per_object[int(k)] for k in ids]
        return SearchBatch(mode, ids, views, [targets[v] for v in views], Ks[[int(v[0]) for v in views]], T)

    def batch_fn(step: int, g: torch.Generator) -> tuple[PatchBatch | None, SearchBatch | None]:
        if learn and step < n_search:
            ids = torch.randperm(len(vs.per_object), generator=g)[: cfg.objects_per_step]
            return None, search("soft", ids, temperature(step, n_search))
        b = sample_patches(vs, cfg.objects_per_step, cfg.views_per_object, cfg.patch, g)
        if learn and step == n_search:
            return b, search("assign", torch.arange(len(vs.per_object)))
        if learn and step < jump_until and (step - n_search) % JUMP_EVERY == 0:
            return b, search("jump", b.ids)
        return b, None

    return batch_fn


def _param_groups(model: AutodecoderModel) -> list[dict]:
    """Learned cameras' angles and radii move at ``CAMERA_LR_SCALE`` x the learning rate; the rest at 1 x."""
    fast = [model.cameras.angles, model.cameras.log_radius] if model.cameras is not None else []
    rest = [p for p in model.parameters() if all(p is not f for f in fast)]
    return [{"params": rest}] + ([{"params": fast, "lr_scale": CAMERA_LR_SCALE}] if fast else [])


def train_autodecoder(data: str | Path, out_dir: str | Path, cfg: AutodecoderConfig, device: str = "auto",
                      resume: bool = False, progress: bool = True, checkpoint_every: int = 500,
                      command: str | None = None) -> dict:  # fmt: skip
    """Read the posed views in ``data`` (SRN / pixelNeRF or transforms.json object folders), train, evaluate the
    held-out views and export the run (see the module docstring); returns ``eval.json``'s content."""
    from latent3d.data.formats.multiview import read_multiview_dataset
    from latent3d.train.trainer import TrainConfig, preflight, process_state, train

    out_dir = Path(out_dir)
    tcfg = TrainConfig(out_dir=out_dir, steps=cfg.steps, lr=cfg.lr, betas=(0.5, 0.999), ckpt_every=checkpoint_every,
                       seed=cfg.seed, device=device, resume=resume, progress=progress, desc="train autodecoder",
                       extra={"autodecoder": asdict(cfg), "data": str(Path(data).resolve())})  # fmt: skip
    preflight(tcfg)  # before the data is read
    if cfg.cameras == "learn" and process_state(device).num_processes > 1:
        raise UserError("--cameras learn runs in one process (each view's pose search moves that process's cameras): "
                        "start it without `accelerate launch`")  # fmt: skip
    objects = read_multiview_dataset(data, unposed_fov_y=cfg.fov_y if cfg.cameras == "learn" else None)
    object_ids = [ov.object_id for ov in objects]
    captions = [ov.caption or "" for ov in objects]
    train_views, held = split_views(objects, cfg.holdout)
    if cfg.cameras == "learn":
        for k, vidx in enumerate(train_views.per_object):
            if not torch.allclose(train_views.Ks[vidx], train_views.Ks[vidx[:1]], rtol=1e-4):
                raise UserError(f"object {object_ids[k]}: its views have different intrinsics; --cameras learn needs "
                                "one camera (field of view, image size) per object")  # fmt: skip
        per_object = cfg.steps * cfg.search * min(cfg.objects_per_step, len(object_ids)) / len(object_ids)
        if per_object < SEARCH_STEPS_PER_OBJECT:
            print(f"latent3d: warning: --cameras learn searches each object's poses for ~{per_object:.0f} steps "
                  f"(--steps x --search x --objects-per-step / objects); below {SEARCH_STEPS_PER_OBJECT} the search "
                  "often ends in a wrong pose: raise --steps or --search", file=sys.stderr)  # fmt: skip
    del objects
    with seeded(cfg.seed):  # the networks' initialisation, without touching the caller's RNG
        model = AutodecoderModel(len(object_ids), len(train_views), cfg)

    batch_fn = _batch_fn(train_views, cfg)
    vgg = None
    if cfg.vgg:
        from latent3d.nets.vgg import load_vgg19

        vgg = load_vgg19(cfg.vgg)  # frozen, not part of the trained model or its checkpoints

    def loss_fn(m: nn.Module, b: tuple[PatchBatch | None, SearchBatch | None], g: torch.Generator) -> dict[str, Tensor]:
        patches, search = b
        dev = next(iter(m.parameters())).device
        search = search.to(dev) if search is not None else None
        if patches is None:  # the search phase of --cameras learn
            loss = m(search=search)["search"]
            zero = loss.detach() * 0
            return {"loss": loss, "rec": zero, "fg": zero, "search": loss.detach()}
        out = m(patches.ids.to(dev), patches.views.to(dev), patches.viewmats.to(dev), patches.Ks.to(dev),
                patches.pixels.to(dev), search=search)  # fmt: skip
        terms = autodecoder_loss(out["rgb"], out["occupancy"], patches, cfg, vgg.to(dev) if vgg is not None else None,
                                 out["tv"])  # fmt: skip
        return terms | ({"search": terms["loss"].detach() * 0} if cfg.cameras == "learn" else {})

    res = train(model, batch_fn, loss_fn, tcfg, param_groups=_param_groups(model))
    decoder = model.decoder.eval()
    main = process_state(device).is_main_process  # under `accelerate launch` only the main process writes
    t0 = time.time()
    cameras = None
    if cfg.cameras == "learn":
        from latent3d.systems.autodecoder.stage1.camera_eval import learned_camera_report, pose_heldout

        model.eval()
        camera_report, cameras = learned_camera_report(model, train_views, object_ids)
        held = pose_heldout(model, held, cfg) if len(held) else held
    report = evaluate_heldout(decoder, held, object_ids, cfg, out_dir if main else None)
    if cameras is not None:
        report["cameras"] = camera_report
    report.update(train_s=round(res.wall_s, 1), eval_s=round(time.time() - t0, 1), steps=res.step,
                  num_objects=len(object_ids), train_views=len(train_views), heldout_views=len(held),
                  embedding_bytes=embedding_nbytes(decoder.embedding))  # fmt: skip
    if main:
        export_run(out_dir, decoder, object_ids, cfg, data, report, command, captions, cameras)
    return report
