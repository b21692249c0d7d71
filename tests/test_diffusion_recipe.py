"""The one diffusion-training recipe (latent3d.train.diffusion_recipe) and its configured losses: captions with the
empty prompt last, caption dropout at its rate, each network call conditioned on its own item, the EMA weights
left in the model, and DDPMLoss / EDMLoss drawing their noise as the functional losses do."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from latent3d.diffusion.ddpm import DDPMLoss, ddpm_loss
from latent3d.diffusion.edm import EDMLoss, EDMPrecond, edm_loss
from latent3d.diffusion.schedules import alphas_cumprod
from latent3d.nets.text_denoiser import tokenize
from latent3d.priors.vocab import build_word_tokenizer
from latent3d.train.diffusion_recipe import Captions, fit_diffusion
from latent3d.train.trainer import TrainConfig

CAPTIONS = ["a red cube", "a blue ball", "a green cone"]


class Toy(nn.Module):
    """x -> w x + b (any rank); records the keywords of every call."""

    def __init__(self):
        super().__init__()
        self.w, self.b = nn.Parameter(torch.ones(1)), nn.Parameter(torch.zeros(1))
        self.calls: list[dict] = []

    def forward(self, x, t, **cond):
        self.calls.append({"x": x.detach().clone(), **{k: v.clone() for k, v in cond.items()}})
        return self.w * x + self.b


def test_captions_end_with_the_empty_prompt_and_dropout_replaces_rows_at_its_rate():
    tok = build_word_tokenizer(CAPTIONS + [""], 8)
    caps = Captions.tokenized(tok, CAPTIONS, 8)
    ids, mask = tokenize(tok, CAPTIONS + [""], 8)
    assert torch.equal(caps.ids, ids) and torch.equal(caps.mask, mask) and caps.empty == 3
    assert int(caps.mask[caps.empty].sum()) == 2  # [BOS] [EOS]: the empty prompt is one real row, not padding
    g = torch.Generator().manual_seed(0)
    i = torch.randint(0, 3, (20000,), generator=g)
    rows = caps.dropout(i, 0.1, g)
    dropped = rows == caps.empty
    assert torch.equal(rows[~dropped], i[~dropped])
    n, p = len(i), 0.1
    assert abs(int(dropped.sum()) - n * p) < 4 * (n * p * (1 - p)) ** 0.5
    assert torch.equal(caps.dropout(i, 0.0, g), i) and (caps.dropout(i, 1.0, g) == caps.empty).all()


def test_each_call_sees_its_items_caption_or_the_empty_prompt_and_the_ema_weights_stay():
    tok = build_word_tokenizer(CAPTIONS + [""], 8)
    caps = Captions.tokenized(tok, CAPTIONS, 8)
    data = torch.arange(3.0)[:, None, None].expand(3, 2, 2)  # item k is all k: the network sees which item it got
    model = Toy()

    def loss(net, x0, generator, **cond):
        return (net(x0, None, **cond) - 2 * x0 - 1).pow(2).mean()

    tcfg = TrainConfig(out_dir=None, steps=40, lr=0.05, ema_decay=0.9, seed=3, device="cpu", progress=False)
    res = fit_diffusion(model, 3, lambda i, g: data[i], loss, tcfg, 16, caps, cond_drop=0.25)
    x = torch.cat([c["x"][:, 0, 0] for c in model.calls]).long()
    got = torch.cat([c["input_ids"] for c in model.calls])
    empty = (got == caps.ids[caps.empty]).all(1)
    assert torch.equal(got[~empty], caps.ids[x[~empty]])  # a kept caption is the item's own
    n, p = len(x), 0.25
    assert n == 640 and abs(int(empty.sum()) - n * p) < 4 * (n * p * (1 - p)) ** 0.5
    for k in ("w", "b"):  # the model leaves with the EMA's weights, not the last step's
        assert torch.equal(getattr(model, k).detach(), res.ema.shadow[k]), k
    assert abs(float(model.w.detach()) - 1) > 0.1  # and training moved them


def test_without_captions_the_condition_is_of_the_item_itself():
    """NF-LDM's use: the condition is the item's own coarser latent, no dropout draw."""
    data = torch.arange(5.0)[:, None].expand(5, 3)
    coarse = 10 * torch.arange(5.0)[:, None]
    model = Toy()

    def loss(net, x0, generator, **cond):
        return net(x0, None, **cond).pow(2).mean()

    tcfg = TrainConfig(out_dir=None, steps=6, lr=1e-3, seed=0, device="cpu", progress=False)
    fit_diffusion(model, 5, lambda i, g: data[i], loss, tcfg, 8, condition=lambda rows, dev: {"g": coarse[rows]})
    for c in model.calls:
        assert torch.equal(c["g"][:, 0], 10 * c["x"][:, 0])


def _net(x, t, c=None):  # a fixed "network" of x, the noise level and a condition
    return 0.3 * x + 0.1 * t.float().reshape(-1, *[1] * (x.dim() - 1)) + c


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_ddpm_loss_object_draws_t_then_eps_from_the_generator(prediction_type):
    abar = alphas_cumprod("scaled_linear").float()
    x0 = torch.randn(4, 2, 3, 3, generator=torch.Generator().manual_seed(0))
    c = torch.randn(4, 1, 1, 1)
    got = DDPMLoss(abar, prediction_type)(_net, x0, torch.Generator().manual_seed(5), c=c)
    g = torch.Generator().manual_seed(5)
    t = torch.randint(0, len(abar), (4,), generator=g)
    eps = torch.randn(x0.shape, generator=g)
    assert torch.equal(got, ddpm_loss(_net, x0, t, eps, abar, prediction_type, c=c))


def test_edm_loss_object_is_edm_loss_of_its_settings_and_its_precond_the_sampling_denoiser():
    x0 = torch.randn(4, 2, 3, 3, 3, generator=torch.Generator().manual_seed(0))
    c = torch.randn(4, 1, 1, 1, 1)
    loss = EDMLoss(sigma_data=1.4, P_mean=0.5, P_std=1.5)
    got = loss(_net, x0, torch.Generator().manual_seed(2), c=c)
    ref = edm_loss(_net, x0, 1.4, torch.Generator().manual_seed(2), P_mean=0.5, P_std=1.5, c=c)
    assert torch.equal(got, ref)
    assert got != edm_loss(_net, x0, 0.5, torch.Generator().manual_seed(2), P_mean=0.5, P_std=1.5, c=c)
    sigma = torch.tensor([0.3, 1.0, 4.0, 20.0])
    assert torch.equal(loss.precond(_net)(x0, sigma, c=c), EDMPrecond(_net, 1.4)(x0, sigma, c=c))
