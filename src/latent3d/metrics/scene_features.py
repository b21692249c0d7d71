"""latent3d's own image features for scene frames: the in-domain stand-in for the Inception features of FID / KID
(Heusel et al. 2017; NF-LDM, Kim et al. 2023, Sec. 4 reports both on rendered frames).

A small CNN (:func:`~latent3d.metrics.classifier.conv_features`) learns to tell which episode a frame comes from
(every episode a class: instance discrimination, no labels needed, so VizDoom recordings and procedural scenes are
treated alike); its globally pooled trunk is the feature. Augmented with shifts, brightness and pixel noise so that
the mild noise of generated frames does not decide the class.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from latent3d.metrics.classifier import augmented, conv_features
from latent3d.metrics.fit import fit_metric_net
from latent3d.runtime import seeded


class SceneFeatureNet(nn.Module):
    """``conv_features(width)`` -> global mean pool (the feature, ``4 width`` wide) -> a linear head over episodes."""

    def __init__(self, classes: int, width: int = 32):
        super().__init__()
        self.features = conv_features(width)
        self.head = nn.Linear(4 * width, classes)

    def embed(self, images: Tensor) -> Tensor:  # [B, 3, H, W] in [0, 1] -> [B, 4 width]
        return self.features(images * 2 - 1).mean(dim=(2, 3))

    def forward(self, images: Tensor) -> Tensor:  # [B, 3, H, W] -> [B, classes] logits
        return self.head(self.embed(images))


def train_scene_features(
    images: Tensor,  # [N, 3, H, W] in [0, 1]
    labels: Tensor,  # [N] long: the episode of each frame
    steps: int = 600,
    batch_size: int = 64,
    width: int = 32,
    seed: int = 0,
) -> SceneFeatureNet:
    """Cross-entropy over episodes on the shared recipe (:func:`~latent3d.metrics.fit.fit_metric_net`: AdamW lr 2e-3,
    one-cycle rising over the first 30 %), augmented as the module docstring says; returns the net in eval mode."""
    with seeded(seed):
        net = SceneFeatureNet(int(labels.max()) + 1, width)

    def batch_fn(step: int, g: torch.Generator) -> tuple[Tensor, Tensor]:
        i = torch.randint(0, len(images), (batch_size,), generator=g)
        return augmented(images[i], g, 0.04), labels[i]

    def loss_fn(model: nn.Module, batch: tuple[Tensor, Tensor], g: torch.Generator) -> Tensor:
        return F.cross_entropy(model(batch[0]), batch[1])

    return fit_metric_net(net, batch_fn, loss_fn, steps, 2e-3, seed, 0.3, "scene features")


@torch.no_grad()
def embed_frames(net: SceneFeatureNet, images: Tensor, batch: int = 256) -> Tensor:  # [N, 3, H, W] -> [N, D] float64
    """Features of many frames, a batch at a time."""
    return torch.cat([net.embed(images[i:i + batch]).double() for i in range(0, len(images), batch)])
