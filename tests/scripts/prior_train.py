"""`latent3d train prior` (the real :func:`train_object_prior` path) on tiny settings, for tests/test_resume.py.

``--kill-before-checkpoint N`` SIGKILLs the process when the trainer is about to write checkpoint N: the steps since
the previous checkpoint are lost, as in a real crash, and nothing gets a chance to clean up. A UserError is printed
as the CLI prints it (one ``latent3d: error:`` line, exit 2).
"""

import argparse
import os
import signal
import sys
from pathlib import Path

from latent3d.errors import UserError
from latent3d.priors.object_prior.config import ObjectPriorConfig


def tiny_config(**kw) -> ObjectPriorConfig:
    """16 renders of 16x16 pixels, a warm-up longer than the run (the learning rate changes every step), EMA."""
    base = dict(resolution=16, objects=("snowman", "chair"), colors=("red", "blue"), views=4, supersample=1,
                block_out_channels=(16, 32), text_dim=32, text_layers=1, steps=20, batch_size=8, lr=1e-3,
                warmup_steps=30, ema_decay=0.9)  # fmt: skip
    return ObjectPriorConfig(**{**base, **kw})


def main() -> None:
    import latent3d.train.trainer as trainer
    from latent3d.priors.object_prior.train import train_object_prior

    p = argparse.ArgumentParser()
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--checkpoint-every", type=int, default=5)
    p.add_argument("--kill-before-checkpoint", type=int, default=-1)
    p.add_argument("--resume", action="store_true")
    a = p.parse_args()

    save = trainer.save_checkpoint

    def save_or_die(root, step, *args, **kw):
        if step == a.kill_before_checkpoint:
            os.kill(os.getpid(), signal.SIGKILL)
        return save(root, step, *args, **kw)

    trainer.save_checkpoint = save_or_die
    try:
        train_object_prior(a.out, tiny_config(steps=a.steps, batch_size=a.batch_size), device="cpu", resume=a.resume,
                           progress=False, checkpoint_every=a.checkpoint_every)  # fmt: skip
    except UserError as e:
        print(f"latent3d: error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)


if __name__ == "__main__":
    main()
