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

import time
from dataclasses import asdict
from pathlib import Path

import torch
from torch import Tensor, nn

from latent3d.nets.embeddings import embedding_nbytes
from latent3d.nets.losses import pyramid_l1
from latent3d.render.volume import render_grid_views, render_grids
from latent3d.runtime import seeded
from latent3d.systems.autodecoder.config import AutodecoderConfig
from latent3d.systems.autodecoder.stage1.cameras import CameraRefiner
from latent3d.systems.autodecoder.stage1.decoder import Autodecoder
from latent3d.systems.autodecoder.stage1.run import export_run
from latent3d.systems.autodecoder.stage1.views import PatchBatch, ViewSet, sample_patches, split_views

class AutodecoderModel(nn.Module):
    """What the trainer optimises: the autodecoder and, optionally, one pose correction per training view.
    ``forward(ids [O], views [O V], viewmats [O V, 4, 4], Ks [O V, 3, 3], pixels [O V, R, 2]) -> (rgb [O V, R, 3],
    occupancy [O V, R], colour total variation [] of the decoded grids)``."""

    def __init__(self, num_objects: int, num_views: int, cfg: AutodecoderConfig):
        super().__init__()
        self.cfg = cfg
        self.decoder = Autodecoder(num_objects, cfg)
        self.refiner = CameraRefiner(num_views) if cfg.refine_cameras else None

    def forward(self, ids: Tensor, views: Tensor, viewmats: Tensor, Ks: Tensor,
                pixels: Tensor) -> tuple[Tensor, Tensor, Tensor]:  # fmt: skip
        if self.refiner is not None:
            viewmats = self.refiner(viewmats, views)
        density, rgb = self.decoder.decode(self.decoder.latent(ids))
        tv = total_variation(rgb) if self.cfg.tv_weight > 0 else rgb.new_zeros(())
        return (*render_grids(density, rgb, viewmats, Ks, pixels, self.cfg.box, self.cfg.samples), tv)


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
    objects = read_multiview_dataset(data)
    object_ids = [ov.object_id for ov in objects]
    captions = [ov.caption or "" for ov in objects]
    train_views, held = split_views(objects, cfg.holdout)
    del objects
    with seeded(cfg.seed):  # the networks' initialisation, without touching the caller's RNG
        model = AutodecoderModel(len(object_ids), len(train_views), cfg)

    def batch_fn(step: int, g: torch.Generator) -> PatchBatch:
        return sample_patches(train_views, cfg.objects_per_step, cfg.views_per_object, cfg.patch, g)

    vgg = None
    if cfg.vgg:
        from latent3d.nets.vgg import load_vgg19

        vgg = load_vgg19(cfg.vgg)  # frozen, not part of the trained model or its checkpoints

    def loss_fn(m: nn.Module, b: PatchBatch, g: torch.Generator) -> dict[str, Tensor]:
        dev = next(iter(m.parameters())).device
        rgb, occ, tv = m(b.ids.to(dev), b.views.to(dev), b.viewmats.to(dev), b.Ks.to(dev), b.pixels.to(dev))
        return autodecoder_loss(rgb, occ, b, cfg, vgg.to(dev) if vgg is not None else None, tv)

    res = train(model, batch_fn, loss_fn, tcfg)
    decoder = model.decoder.eval()
    main = process_state(device).is_main_process  # under `accelerate launch` only the main process writes
    t0 = time.time()
    report = evaluate_heldout(decoder, held, object_ids, cfg, out_dir if main else None)
    report.update(train_s=round(res.wall_s, 1), eval_s=round(time.time() - t0, 1), steps=res.step,
                  num_objects=len(object_ids), train_views=len(train_views), heldout_views=len(held),
                  embedding_bytes=embedding_nbytes(decoder.embedding))  # fmt: skip
    if main:
        export_run(out_dir, decoder, object_ids, cfg, data, report, command, captions)
    return report
