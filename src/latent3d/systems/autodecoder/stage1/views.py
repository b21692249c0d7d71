"""The posed views an autodecoder trains on, flat across objects, and the pixel patches of one step.

Views of every object are kept as uint8 (lossless for PNG data, a quarter of float32); ``--holdout K`` takes out the
views with index ``i % K == K - 1`` of every object (views sorted by file name), which are rendered and scored at the
end of training.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from latent3d.errors import UserError


@dataclass
class ViewSet:
    images: Tensor  # [M, H, W, 3] uint8
    masks: Tensor  # [M, H, W] bool
    viewmats: Tensor  # [M, 4, 4] world-to-camera (OpenCV)
    Ks: Tensor  # [M, 3, 3]
    obj: Tensor  # [M] long, the object index of each view
    names: list[str]  # the view's image file name
    per_object: list[Tensor]  # view indices (into this set) of each object

    def __len__(self) -> int:
        return len(self.names)


def split_views(objects: list, holdout: int) -> tuple[ViewSet, ViewSet]:
    """(training views, held-out views) of :class:`latent3d.data.formats.multiview.ObjectViews` objects."""
    if not objects:
        raise UserError("the dataset has no objects")
    size = tuple(objects[0].images.shape[1:3])
    parts: dict[bool, list] = {False: [], True: []}
    for k, ov in enumerate(objects):
        if tuple(ov.images.shape[1:3]) != size:
            raise UserError(f"object {ov.object_id}: views of {tuple(ov.images.shape[1:3])} pixels, the first object's "
                            f"are {size}: resize the dataset to one size")  # fmt: skip
        for i in range(len(ov.view_names)):
            parts[holdout > 0 and i % holdout == holdout - 1].append((k, ov, i))
        if holdout and not any(i % holdout != holdout - 1 for i in range(len(ov.view_names))):
            raise UserError(f"object {ov.object_id} has {len(ov.view_names)} view(s): --holdout {holdout} leaves none "
                            "to train on")  # fmt: skip
    return _stack(parts[False], len(objects)), _stack(parts[True], len(objects))


def _stack(items: list, n_objects: int) -> ViewSet:
    if not items:
        e = torch.empty
        return ViewSet(e(0, 0, 0, 3, dtype=torch.uint8), e(0, 0, 0, dtype=torch.bool), e(0, 4, 4), e(0, 3, 3),
                       e(0, dtype=torch.long), [], [e(0, dtype=torch.long) for _ in range(n_objects)])  # fmt: skip
    obj = torch.tensor([k for k, _, _ in items])
    return ViewSet(
        images=torch.stack([(ov.images[i] * 255).round().to(torch.uint8) for _, ov, i in items]),
        masks=torch.stack([ov.masks[i] for _, ov, i in items]),
        viewmats=torch.stack([ov.viewmats[i] for _, ov, i in items]).float(),
        Ks=torch.stack([ov.Ks[i] for _, ov, i in items]).float(),
        obj=obj, names=[ov.view_names[i] for _, ov, i in items],
        per_object=[torch.nonzero(obj == k)[:, 0] for k in range(n_objects)],
    )  # fmt: skip


@dataclass
class PatchBatch:
    ids: Tensor  # [O] object indices
    views: Tensor  # [O * V] training-view indices (for camera refinement)
    viewmats: Tensor  # [O * V, 4, 4]
    Ks: Tensor  # [O * V, 3, 3]
    pixels: Tensor  # [O * V, P * P, 2] pixel centres (column, row)
    rgb: Tensor  # [O * V, P, P, 3] float in [0, 1]
    mask: Tensor  # [O * V, P, P] float


def sample_patches(vs: ViewSet, objects: int, views: int, patch: int, g: torch.Generator) -> PatchBatch:
    """``objects`` distinct objects, ``views`` of their training views each (multi-frame batches, 3DVADER supp. B)
    and one ``patch x patch`` crop per view, centred on a random foreground pixel half of the time."""
    n_obj = len(vs.per_object)
    ids = torch.randperm(n_obj, generator=g)[: min(objects, n_obj)]
    counts = torch.tensor([len(vs.per_object[int(k)]) for k in ids])
    pick = (torch.rand(len(ids), views, generator=g) * counts[:, None]).long()  # with replacement
    vidx = torch.stack([vs.per_object[int(k)][p] for k, p in zip(ids, pick)]).reshape(-1)
    H, W = vs.images.shape[1:3]
    P = min(patch, H, W)
    weights = vs.masks[vidx].reshape(len(vidx), -1).float() + 1e-6  # an empty mask still draws uniformly
    centre = torch.multinomial(weights, 1, generator=g)[:, 0]
    cy, cx = centre // W, centre % W
    uy = (torch.rand(len(vidx), generator=g) * (H - P + 1)).long()
    ux = (torch.rand(len(vidx), generator=g) * (W - P + 1)).long()
    on_obj = torch.rand(len(vidx), generator=g) < 0.5
    y0 = torch.where(on_obj, (cy - P // 2).clamp(0, H - P), uy)
    x0 = torch.where(on_obj, (cx - P // 2).clamp(0, W - P), ux)
    ar = torch.arange(P)
    rows = (y0[:, None] + ar)[:, :, None].expand(-1, P, P)  # [M, P, P]
    cols = (x0[:, None] + ar)[:, None, :].expand(-1, P, P)
    m = torch.arange(len(vidx))[:, None, None]
    pixels = torch.stack([cols, rows], dim=-1).reshape(len(vidx), P * P, 2).float() + 0.5
    return PatchBatch(ids, vidx, vs.viewmats[vidx], vs.Ks[vidx], pixels,
                      vs.images[vidx][m, rows, cols].float() / 255.0, vs.masks[vidx][m, rows, cols].float())  # fmt: skip


def search_targets(vs: ViewSet, size: int) -> tuple[Tensor, Tensor]:  # -> [M, R, R, 4] float, Ks [M, 3, 3]
    """Every view as RGB + mask at ``size`` x ``size`` (at most H x W) and its intrinsics at that size, 256 views at
    a time (:func:`.camera_search.downsample_views`)."""
    from latent3d.systems.autodecoder.stage1.camera_search import downsample_views

    parts = [downsample_views(torch.cat([vs.images[s:s + 256].float() / 255.0, vs.masks[s:s + 256, ..., None].float()],
                                        dim=-1), vs.Ks[s:s + 256], size) for s in range(0, len(vs), 256)]  # fmt: skip
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
