"""How latent3d's measuring nets (depth estimator, object/colour/view classifier, CLIP-style model) are fitted: on
the shared trainer (:func:`latent3d.train.trainer.train`), in memory, with one recipe.

The recipe: AdamW (weight decay 1e-4), the one-cycle learning-rate policy (Smith & Topin 2018, as torch's
``OneCycleLR``), no gradient clipping, on the CPU, the batches and augmentations of step ``k`` drawn from the
trainer's generator of ``(seed, k)``; the network's initial weights come from ``seed`` too, without touching the
global random state.
"""

from __future__ import annotations

from typing import Callable, TypeVar

from torch import nn

from latent3d.train.trainer import BatchFn, LossFn, TrainConfig, train

M = TypeVar("M", bound=nn.Module)


def fit_metric_net(
    net: M,
    batch_fn: BatchFn,
    loss_fn: LossFn,
    steps: int,
    lr: float,
    seed: int,
    pct_start: float,
    name: str,
    log: Callable[[str], None] | None = None,
) -> M:
    """Train ``net`` in place with the recipe above (``pct_start``: the rising fraction of the one-cycle schedule)
    and return it in eval mode; ``log`` (optional) gets a line every 100 steps."""

    def on_log(row: dict[str, float]) -> None:
        if log is not None:
            log(f"{name} step {int(row['step'])}/{steps} loss {row['loss']:.4f} ({row['wall_s']:.0f}s)")

    cfg = TrainConfig(out_dir=None, steps=steps, lr=lr, weight_decay=1e-4, warmup_steps=round(pct_start * steps),
                      lr_schedule="one_cycle", grad_clip=None, log_every=100, seed=seed, device="cpu",
                      progress=False, desc=name)  # fmt: skip
    train(net, batch_fn, loss_fn, cfg, on_log=on_log)
    return net.eval()
