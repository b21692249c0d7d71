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


def _busy_seconds(stat_path: str = "/proc/stat") -> float | None:
    """CPU seconds all processes have spent busy since boot (``/proc/stat``: every column but idle and iowait);
    None where the file does not exist (not Linux)."""
    import os

    try:
        with open(stat_path, encoding="ascii") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu" or len(fields) < 6:
        return None
    jiffies = [int(x) for x in fields[1:9]]
    return (sum(jiffies) - jiffies[3] - jiffies[4]) / os.sysconf("SC_CLK_TCK")


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity), at least 1."""
    import os

    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


class ThreadGovernor:
    """latent3d's own choice of torch's intra-op threads for long CPU loops: as many as the cores that other
    processes leave free, measured (not an environment variable the user must know).

    Between two calls of :meth:`update` it takes the machine's busy CPU time (``/proc/stat``) minus this process's
    own and sets ``threads = cores - round(others' cores)``, at least 1. On a quiet 2-core machine two threads run
    ``latent3d dream`` 1.1-1.4x faster than one; beside one busy process they fight it for a core and every OpenMP
    barrier waits for the thread pushed off its core: 351 s with two threads, 122 s with the governor's one.
    Off (torch's setting kept) when ``OMP_NUM_THREADS`` is set, on CUDA, or without ``/proc/stat``.
    """

    def __init__(self, device: torch.device | str = "cpu", every: int = 20, stat_path: str = "/proc/stat"):
        import os

        self.every, self.stat_path, self.cores = every, stat_path, usable_cores()
        self.enabled = (torch.device(device).type == "cpu" and "OMP_NUM_THREADS" not in os.environ
                        and self.cores > 1 and _busy_seconds(stat_path) is not None)  # fmt: skip
        self.threads = torch.get_num_threads()
        self.others = 0.0  # cores busy with other processes in the last window
        self._calls = 0
        self._mark = self._sample()

    def _sample(self) -> tuple[float, float, float]:  # (wall, machine busy s, own cpu s)
        import time

        return time.perf_counter(), _busy_seconds(self.stat_path) or 0.0, time.process_time()

    def update(self) -> int:
        """Call once per iteration: every ``every`` calls (and at the first) re-measure and set the thread count;
        returns the count in use."""
        self._calls += 1
        if not self.enabled or (self._calls - 1) % self.every:
            return self.threads
        now = self._sample()
        wall = now[0] - self._mark[0]
        if wall > 0.05:  # /proc/stat ticks are 10 ms: shorter windows are noise
            own = now[2] - self._mark[2]
            self.others = max(0.0, (now[1] - self._mark[1] - own) / wall)
            self.threads = max(1, min(self.cores, self.cores - round(self.others)))
            torch.set_num_threads(self.threads)
            self._mark = now
        return self.threads
