"""Image metrics: PSNR, SSIM (scikit-image), mask IoU."""

from __future__ import annotations

import math

import numpy as np
from torch import Tensor


def psnr(pred: Tensor, target: Tensor, max_val: float = 1.0) -> float:
    """Peak signal-to-noise ratio over all pixels of ``[..., H, W, C]`` images in [0, max_val]."""
    mse = float((pred.float() - target.float()).pow(2).mean())
    return 10.0 * math.log10(max_val**2 / max(mse, 1e-12))


def ssim(pred: Tensor, target: Tensor) -> float:
    """Mean SSIM (Wang et al. 2004, scikit-image's Gaussian-window variant) over ``[N, H, W, 3]`` images in [0, 1]."""
    from skimage.metrics import structural_similarity

    vals = [
        structural_similarity(p.numpy(), t.numpy(), channel_axis=-1, data_range=1.0, gaussian_weights=True,
                              sigma=1.5, use_sample_covariance=False)  # fmt: skip
        for p, t in zip(pred.float().cpu(), target.float().cpu())
    ]
    return float(np.mean(vals))


def mask_iou(pred: Tensor, target: Tensor) -> float:
    """Intersection over union of two boolean masks (all pixels of all views pooled)."""
    inter = (pred & target).sum().item()
    union = (pred | target).sum().item()
    return inter / union if union else 1.0
