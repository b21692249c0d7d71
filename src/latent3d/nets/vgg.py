"""VGG-19 features and the perceptual loss built on them (Simonyan & Zisserman 2015; Johnson et al. 2016), as
3DVADER uses them (supplement B: pyramidal VGG-19 perceptual loss at scales 1, 1/2, 1/4; its predecessor UVA takes
5 layers, weight 10 each, L1).

Weights cannot be downloaded here: :func:`load_vgg19` reads a local safetensors file with torchvision's key names
(``features.0.weight``, ``features.0.bias``, ... ``features.34.bias``), e.g. converted once from torchvision's
``vgg19`` ImageNet weights with ``safetensors.torch.save_file(model.features.state_dict() prefixed "features.")``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

# torchvision's VGG-19 "E" configuration: channels per 3x3 conv, "M" for a 2x2 max-pool
CONFIG = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M")
LAYERS = (3, 8, 17, 26, 35)  # torchvision indices of relu1_2, relu2_2, relu3_4, relu4_4, relu5_4 in ``features``
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class VGG19Features(nn.Module):
    """``forward(images [B, 3, H, W] in [0, 1]) -> [relu1_2, relu2_2, relu3_4, relu4_4, relu5_4]`` activations
    (ImageNet normalisation inside; frozen). ``features`` has torchvision's layer indices."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for c in CONFIG:
            if c == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(cin, int(c), 3, padding=1), nn.ReLU(inplace=False)]
                cin = int(c)
        self.features = nn.Sequential(*layers)
        self.requires_grad_(False)

    def forward(self, images: Tensor) -> list[Tensor]:
        mean = torch.tensor(IMAGENET_MEAN, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
        x = (images - mean) / std
        outs = []
        for i, layer in enumerate(self.features[: LAYERS[-1] + 1]):
            if isinstance(layer, nn.MaxPool2d) and min(x.shape[-2:]) < 2:
                break  # the image is too small for deeper layers
            x = layer(x)
            if i in LAYERS:
                outs.append(x)
        return outs


def load_vgg19(path: str | Path) -> VGG19Features:
    """VGG-19 features from a local safetensors file in torchvision's key layout; one-line error otherwise."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from latent3d.errors import UserError

    net = VGG19Features()
    try:
        sd = load_file(str(path))
        net.load_state_dict(sd)
    except (OSError, SafetensorError, RuntimeError) as e:
        raise UserError(f"--vgg {path}: not VGG-19 features in torchvision's layout ({str(e).splitlines()[0][:160]}); "
                        "pass a safetensors file with features.0.weight ... features.34.bias") from None  # fmt: skip
    return net.eval()


def perceptual_loss(vgg: VGG19Features, pred: Tensor, target: Tensor, scales: int = 3, weight: float = 10.0) -> Tensor:
    """Pyramidal perceptual loss (3DVADER supp. B): at scales 1, 1/2, ... (``scales`` of them, 2x2 average
    pooling), ``weight`` x the mean L1 distance of each VGG-19 layer's activations, summed over layers, averaged
    over scales. ``pred``, ``target``: [B, 3, H, W] in [0, 1]."""
    from latent3d.nets.losses import pyramid_mean

    def term(a: Tensor, b: Tensor) -> Tensor:
        with torch.no_grad():
            ref = vgg(b)
        return weight * sum((fa - fb).abs().mean() for fa, fb in zip(vgg(a), ref))

    return pyramid_mean(term, pred, target, scales)
