"""What ``--cameras learn`` found, scored: every training view's learned camera against the data's poses (rotation
error after each object's best world rotation, :mod:`latent3d.metrics.poses`) and the held-out views posed against
the frozen objects (:func:`.camera_search.pose_views`) so that their PSNR can be measured as with given cameras."""

from __future__ import annotations

from dataclasses import replace

import torch

from latent3d.metrics.poses import rotation_errors, summary
from latent3d.systems.autodecoder.stage1.camera_search import pose_views
from latent3d.systems.autodecoder.stage1.views import ViewSet


@torch.no_grad()
def learned_camera_report(model, train_views: ViewSet, object_ids: list[str]) -> tuple[dict, dict]:
    """(``eval.json``'s "cameras" entry: rotation errors in degrees, median / mean / max over all training views and
    per object; ``cameras.json``: each object's views with their learned world-to-camera matrices)."""
    dev = model.cameras.angles.device
    per, errs, cams = {}, [], {}
    for k, vidx in enumerate(train_views.per_object):
        if len(vidx) == 0:
            continue
        learned = model.cameras(vidx.to(dev)).cpu()
        cams[object_ids[k]] = {train_views.names[v]: learned[j].tolist() for j, v in enumerate(vidx.tolist())}
        true = train_views.viewmats[vidx]
        if torch.isfinite(true).all():  # views without poses (NaN) have nothing to be scored against
            e = rotation_errors(learned, true)
            per[object_ids[k]] = summary(e)
            errs.append(e)
    if not errs:
        return {"note": "the data has no poses to score the learned cameras against"}, cams
    report = {"rotation_error_deg": summary(torch.cat(errs)), "per_object": per,
              "note": "against the data's poses, after each object's best world rotation"}  # fmt: skip
    return report, cams


def pose_heldout(model, held: ViewSet, cfg) -> ViewSet:
    """``held`` with every view's camera fitted against its frozen object (:func:`pose_views`)."""
    dev = model.cameras.angles.device
    viewmats = held.viewmats.clone()
    for k, vidx in enumerate(held.per_object):
        if len(vidx) == 0:
            continue
        with torch.no_grad():
            grids = model.decoder.decode(model.decoder.latent(torch.tensor([k], device=dev)))
        targets = torch.cat([held.images[vidx].float() / 255.0, held.masks[vidx, ..., None].float()], dim=-1)
        viewmats[vidx] = pose_views(grids, targets.to(dev), held.Ks[vidx].to(dev), model.hyp_az, model.hyp_el,
                                    cfg.camera_radius, cfg.box, cfg.samples, seed=cfg.seed + k).cpu()  # fmt: skip
    return replace(held, viewmats=viewmats)
