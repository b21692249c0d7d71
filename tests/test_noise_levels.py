"""EDM noise levels fitted to the data (diffusion/noise_levels.py): the share of training draws above a level equals
EDM's own sampler's frequency, the condition posterior equals a per-sample loop of the mixture formula, and the
object generator's training warns when its noise levels never reach the ones where the captions are decided."""

from __future__ import annotations

import math

import torch

from latent3d.diffusion.edm import edm_sample_sigma
from latent3d.diffusion.noise_levels import condition_posterior, noise_report, share_above, share_learning_condition


def test_share_above_is_the_frequency_of_edms_training_draws():
    g = torch.Generator().manual_seed(0)
    s = edm_sample_sigma((200_000,), 1.0, 1.6, g)
    for level in (1.0, 10.0, 20.0, 80.0):
        p = share_above(level, 1.0, 1.6)
        assert abs(float((s > level).double().mean()) - p) < 4 * math.sqrt(p * (1 - p) / len(s)) + 1e-6, level
    assert share_above(12.0, -1.2, 1.2) < 0.002  # EDM's image setting almost never trains sigma > 12 (issue 29)


def test_condition_posterior_is_the_empirical_mixtures_posterior():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(6, 2, 3, generator=g) * 2
    labels = ["a", "a", "b", "c", "b", "a"]
    for sigma in (0.5, 3.0, 30.0):
        got = condition_posterior(x, labels, (sigma,), draws=1, generator=torch.Generator().manual_seed(7))[sigma]
        noise = torch.randn(6, 6, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
        ref = []
        for i in range(6):  # p(label_i | y_i) = sum over j with label_i of w_j / sum over all j of w_j
            y = x[i].flatten().double() + sigma * noise[i]
            w = [math.exp(-float(((y - x[j].flatten().double()) ** 2).sum()) / (2 * sigma**2)) for j in range(6)]
            ref.append(sum(wj for wj, lj in zip(w, labels) if lj == labels[i]) / sum(w))
        assert abs(got - sum(ref) / 6) < 1e-9, sigma


def test_the_report_finds_where_conditions_are_decided_and_flags_image_noise_levels():
    g = torch.Generator().manual_seed(2)
    centres = torch.randn(4, 8, 4, 4, 4, generator=g) * 1.4  # 4 conditions, 512 dims, ~45 apart
    x = centres.repeat(8, 1, 1, 1, 1) + 0.3 * torch.randn(32, 8, 4, 4, 4, generator=g)
    labels = [f"c{k % 4}" for k in range(32)]
    rep = noise_report(x, labels, 1.0, 1.6, 1.4, generator=g)
    post = list(rep["condition_posterior"].values())
    assert post[0] > 0.99 and post[-1] < 0.5 and rep["chance"] == 0.25
    assert rep["decided_at"] in (10.0, 20.0, 40.0)  # between the sigma where it is readable and where it is not
    assert share_learning_condition(rep) > 0.05  # the generator's defaults train there
    image = noise_report(x, labels, -1.2, 1.2, 0.5, generator=g)
    assert share_learning_condition(image) < 0.01  # EDM's image defaults do not: training warns
