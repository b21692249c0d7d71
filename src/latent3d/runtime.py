"""Device selection and seeding shared by every command."""

from __future__ import annotations

import contextlib
import random
from typing import Iterator

import numpy as np
import torch

from latent3d.errors import UserError


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run the body under ``torch.manual_seed(seed)`` and give the caller's global CPU random state back afterwards
    (for code that draws from the global generator and takes none, such as module initialisation)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def hub_offline() -> bool:
    """Whether Hugging Face hub access is switched off (``HF_HUB_OFFLINE`` set to anything but 0/false/empty):
    then a hub id loads from the local cache only."""
    import os

    return os.environ.get("HF_HUB_OFFLINE", "0").strip().lower() not in ("0", "", "false")


def resolve_device(name: str = "auto") -> torch.device:
    """Turn ``"auto" | "cpu" | "cuda" | "cuda:N" | "mps"`` into a torch.device (auto: cuda if present)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError) as e:
        raise UserError(f"unknown device {name!r}: use auto, cpu, cuda or cuda:N") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {name!r} asked for but CUDA is not available here: use --device cpu")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"device {name!r} asked for but MPS is not available here: use --device cpu")
    return dev


def device_name(name: str = "auto") -> str:
    """What a model card says it was trained on: the GPU's name, or ``CPU (N threads)``."""
    dev = resolve_device(name)
    return torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"


def seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch; return a CPU generator seeded the same (for explicit noise draws)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


@contextlib.contextmanager
def num_threads(n: int) -> Iterator[None]:
    """Temporarily set torch's intra-op threads. Many small element-wise ops (the ray caster) run far faster on
    one thread than on two contended ones; big convolutions prefer all cores."""
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)
