"""Fitting EDM's noise levels to the data (Karras et al. 2022, Sec. 5 and Table 1).

EDM's defaults (``sigma_data`` 0.5, ``ln sigma ~ N(-1.2, 1.2^2)``) are tuned to images scaled to standard deviation
0.5. On other data (latent volumes, scene latents) two things have to be measured instead of assumed:

- the data's standard deviation, which is EDM's ``sigma_data`` (the preconditioning's c_skip, c_out, c_in and the
  loss weight are derived from it, eq. 7 and Table 1);
- the noise levels at which samples of different conditions stop being distinguishable: the sampler decides the
  condition there, so the training distribution of ``ln sigma`` must put a real share of draws at those levels.
  :func:`condition_posterior` measures them as the posterior of the true condition of a noised training sample
  under the training set's own (empirical) mixture, the ideal denoiser's view of the data.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

REPORT_SIGMAS = (1.0, 5.0, 10.0, 20.0, 40.0, 80.0)


def data_std(x: Tensor) -> float:  # x [N, ...] -> the standard deviation of all values (EDM's sigma_data)
    """Standard deviation of every value of the training data, in float64 (EDM's ``sigma_data``, Table 1)."""
    return float(x.double().std())


def share_above(sigma: float, P_mean: float, P_std: float) -> float:
    """Probability that a training draw ``ln s ~ N(P_mean, P_std^2)`` has ``s > sigma`` (closed form)."""
    return 0.5 * math.erfc((math.log(sigma) - P_mean) / (P_std * math.sqrt(2.0)))


def condition_posterior(
    x: Tensor,  # [N, ...] training samples
    labels: list[str],  # [N] their conditions (captions)
    sigmas: tuple[float, ...] = REPORT_SIGMAS,
    draws: int = 4,
    generator: torch.Generator | None = None,
) -> dict[float, float]:
    """Mean posterior ``p(label_i | x_i + sigma n)`` of the true condition under the empirical mixture of the
    training samples, ``p(k | y) ∝ sum_{j: label_j = k} exp(-|y - x_j|^2 / (2 sigma^2))``, per noise level
    (``draws`` noise draws per sample). 1 where the noise leaves the condition readable; 1 / (number of
    conditions, weighted by their counts) where it does not."""
    flat = x.reshape(len(x), -1).double()
    names = sorted(set(labels))
    lab = torch.tensor([names.index(s) for s in labels])
    onehot = torch.nn.functional.one_hot(lab, len(names)).double()  # [N, K]
    sq = (flat**2).sum(1)  # [N]
    out = {}
    for sigma in sigmas:
        post = []
        for _ in range(draws):
            y = flat + sigma * torch.randn(flat.shape, generator=generator, dtype=torch.float64)
            d2 = (y**2).sum(1, keepdim=True) - 2 * y @ flat.T + sq  # [N, N] squared distances
            logw = -d2 / (2 * sigma**2)
            logw = logw - logw.amax(1, keepdim=True)
            w = logw.exp() @ onehot  # [N, K] unnormalised class posteriors
            post.append((w / w.sum(1, keepdim=True)).gather(1, lab[:, None]).squeeze(1))
        out[sigma] = float(torch.cat(post).mean())
    return out


def noise_report(
    x: Tensor,  # [N, C, ...] normalised training data
    labels: list[str] | None,  # [N] conditions, or None for unconditional data
    P_mean: float,
    P_std: float,
    sigma_data: float,
    generator: torch.Generator | None = None,
) -> dict:
    """What a training run should know about its noise levels: the data's std (overall and per channel), the
    ``sigma_data`` in use, the share of training draws above each of :data:`REPORT_SIGMAS`, and, for conditional
    data, the condition's posterior at those levels and ``decided_at``: the largest of them where the posterior is
    still above halfway between chance and 1 (where sampling decides the condition)."""
    per_channel = x.transpose(0, 1).reshape(x.shape[1], -1).double().std(1)
    rep: dict = {"std": data_std(x), "std_per_channel": [round(float(s), 4) for s in per_channel],
                 "sigma_data": sigma_data, "P_mean": P_mean, "P_std": P_std,
                 "share_above": {f"{s:g}": round(share_above(s, P_mean, P_std), 4) for s in REPORT_SIGMAS}}  # fmt: skip
    if labels is not None and len(set(labels)) > 1:
        post = condition_posterior(x, labels, generator=generator)
        chance = sum((labels.count(k) / len(labels)) ** 2 for k in set(labels))  # E[p(k_true)] with no information
        readable = [s for s, p in post.items() if p > 0.5 * (1 + chance)]
        rep["condition_posterior"] = {f"{s:g}": round(p, 4) for s, p in post.items()}
        rep["chance"] = round(chance, 4)
        rep["decided_at"] = max(readable) if readable else None
    return rep


def format_report(rep: dict) -> list[str]:
    """The report as a few printable lines."""
    lines = [f"training data: std {rep['std']:.3f} (per channel {min(rep['std_per_channel']):.2f}.."
             f"{max(rep['std_per_channel']):.2f}); EDM sigma_data {rep['sigma_data']:.3f}, ln sigma ~ "
             f"N({rep['P_mean']:g}, {rep['P_std']:g}^2)",
             "share of training draws above sigma " + ", ".join(f"{s}: {100 * p:.1f} %"
                                                                for s, p in rep["share_above"].items())]  # fmt: skip
    if "condition_posterior" in rep:
        lines.append("posterior of the true caption of a noised training sample at sigma "
                     + ", ".join(f"{s}: {p:.2f}" for s, p in rep["condition_posterior"].items())
                     + f" (chance {rep['chance']:.2f})")  # fmt: skip
    return lines


def share_learning_condition(rep: dict) -> float | None:
    """Share of training draws above half the level where the condition is decided (None when unknown): where a
    run learns the condition. Below a few per cent the sampler decides it from the seed."""
    s = rep.get("decided_at")
    return None if s is None else share_above(0.5 * s, rep["P_mean"], rep["P_std"])
