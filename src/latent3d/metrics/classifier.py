"""A small object / colour / view classifier trained on latent3d's renders, used to score generated images.

The in-domain stand-in for the pretrained classifiers papers use to evaluate generators: it tells whether a sample
shows the prompted object, in the prompted colour, from the prompted view. Its accuracy on held-out renders is the
ceiling a generator is compared against.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from latent3d.metrics.fit import fit_metric_net
from latent3d.runtime import seeded

VIEWS = ("front", "side", "back", "overhead")


def parse_caption(text: str) -> tuple[str, str, str]:
    """``"a red snowman, side view"`` -> ``("snowman", "red", "side")``."""
    head, _, view = text.partition(",")
    words = head.split()
    return words[-1], words[-2], view.strip().split()[0]


def conv_features(width: int) -> nn.Sequential:  # [B, 3, H, W] -> [B, 4 * width, H / 8, W / 8]
    """Four stages of 3x3 conv, GroupNorm, SiLU, with 2x average pooling after the first three: the small image
    trunk of latent3d's in-domain measuring nets."""
    chans = [3, width, 2 * width, 4 * width, 4 * width]
    layers: list[nn.Module] = []
    for i in range(4):
        layers += [nn.Conv2d(chans[i], chans[i + 1], 3, padding=1), nn.GroupNorm(8, chans[i + 1]), nn.SiLU()]
        if i < 3:
            layers.append(nn.AvgPool2d(2))
    return nn.Sequential(*layers)


def augmented(x: Tensor, g: torch.Generator, noise: float) -> Tensor:  # [b, 3, H, W] in [0, 1] -> the same
    """The augmentation of latent3d's measuring nets: one shift of up to 2 px (rolled), brightness x U(0.9, 1.1) per
    image, and pixel noise of a std drawn from U(0, ``noise``) per image."""
    b = len(x)
    dx, dy = (int(v) for v in torch.randint(-2, 3, (2,), generator=g))
    x = torch.roll(x, (dy, dx), dims=(2, 3))
    x = x * (0.9 + 0.2 * torch.rand(b, 1, 1, 1, generator=g))
    return (x + noise * torch.rand(b, 1, 1, 1, generator=g) * torch.randn(x.shape, generator=g)).clamp(0, 1)


class ObjectViewClassifier(nn.Module):
    """Four conv blocks -> global pooling -> three linear heads (object, colour, view)."""

    def __init__(self, objects: tuple[str, ...], colors: tuple[str, ...], width: int = 32):
        super().__init__()
        self.objects, self.colors = tuple(objects), tuple(colors)
        self.features = conv_features(width)
        self.heads = nn.ModuleList(nn.Linear(4 * width, k) for k in (len(objects), len(colors), len(VIEWS)))

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor]:  # [B, 3, H, W] in [0, 1] -> 3 x [B, k]
        f = self.features(images * 2 - 1).mean(dim=(2, 3))
        return tuple(h(f) for h in self.heads)  # type: ignore[return-value]

    def labels(self, captions: list[str]) -> Tensor:  # -> [B, 3] long (object, colour, view) indices
        rows = [parse_caption(c) for c in captions]
        return torch.tensor([[self.objects.index(o), self.colors.index(c), VIEWS.index(v)] for o, c, v in rows])


@dataclass
class Accuracy:
    object: float
    color: float
    view: float
    n: int

    def as_dict(self) -> dict:
        return {"object": round(self.object, 4), "color": round(self.color, 4), "view": round(self.view, 4), "n": self.n}


def train_classifier(
    images: Tensor,  # [N, 3, H, W] in [0, 1]
    captions: list[str],
    objects: tuple[str, ...],
    colors: tuple[str, ...],
    steps: int = 800,
    batch_size: int = 64,
    seed: int = 0,
) -> ObjectViewClassifier:
    """Cross-entropy on the three heads, on the shared trainer (:func:`~latent3d.metrics.fit.fit_metric_net`: AdamW
    lr 2e-3, one-cycle rising over the first 30 %); augmentation: shifts of up to 2 px, brightness jitter, and pixel
    noise (sigma up to 0.06) so that the mild noise of generated samples does not decide the label."""
    with seeded(seed):
        clf = ObjectViewClassifier(objects, colors)
    y = clf.labels(captions)

    def batch_fn(step: int, g: torch.Generator) -> tuple[Tensor, Tensor]:  # -> [b, 3, H, W], [b, 3] labels
        i = torch.randint(0, len(images), (batch_size,), generator=g)
        return augmented(images[i], g, 0.06), y[i]

    def loss_fn(model: nn.Module, batch: tuple[Tensor, Tensor], g: torch.Generator) -> Tensor:
        return sum(F.cross_entropy(logits, batch[1][:, k]) for k, logits in enumerate(model(batch[0])))

    return fit_metric_net(clf, batch_fn, loss_fn, steps, 2e-3, seed, 0.3, "classifier")


@torch.no_grad()
def evaluate(clf: ObjectViewClassifier, images: Tensor, captions: list[str]) -> Accuracy:
    """Fraction of images whose predicted object / colour / view equals their caption's."""
    y = clf.labels(captions)
    acc = [(logits.argmax(-1) == y[:, k]).float().mean().item() for k, logits in enumerate(clf(images))]
    return Accuracy(*acc, n=len(images))
