"""Watching a command that runs in this process: its tqdm bars, its previews, and a way to stop it.

``latent3d app`` runs the very CLI commands in a worker thread (no second code path); this module is how it sees
them. Inside :func:`listening`, every tqdm bar of the command reports ``(description, n, total, seconds left)`` to a
:class:`Listener` and raises :class:`Cancelled` at its next update once the listener is cancelled (the loops update
their bars at least every 0.1 s). A loop that has something to show (``latent3d dream``'s current views) asks
:func:`preview_due` and hands an image to :func:`report_preview`; outside :func:`listening` both do nothing, so
the command line computes exactly what it computed before.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np


class Cancelled(Exception):
    """Raised inside a watched command when its listener was cancelled."""


@dataclass
class Snapshot:
    """What a watched command is doing now."""

    desc: str = ""
    n: int = 0
    total: int | None = None
    seconds_left: float | None = None
    preview: np.ndarray | None = None  # [H, W, 3] uint8, the newest one
    preview_count: int = 0

    def line(self) -> str:
        """``dream (ism): 120/600, 0:42 left``."""
        if not self.desc and not self.n:
            return "starting"
        count = f"{self.n}/{self.total}" if self.total else str(self.n)
        left = "" if self.seconds_left is None else f", {int(self.seconds_left) // 60}:{int(self.seconds_left) % 60:02d} left"
        return f"{self.desc or 'working'}: {count}{left}"


@dataclass
class Listener:
    """Receives a watched command's progress; ``cancel()`` stops the command at its next bar update."""

    preview_every: int = 0  # iterations between previews (0: none)
    _cancel: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _snap: Snapshot = field(default_factory=Snapshot)

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def snapshot(self) -> Snapshot:
        with self._lock:
            return Snapshot(**vars(self._snap))

    def on_bar(self, desc: str, n: int, total: int | None, elapsed: float) -> None:
        left = None
        if total and n > 0 and elapsed > 0:
            left = max(total - n, 0) * elapsed / n
        with self._lock:
            self._snap.desc, self._snap.n, self._snap.total, self._snap.seconds_left = desc, n, total, left

    def on_preview(self, image: np.ndarray) -> None:
        with self._lock:
            self._snap.preview = image
            self._snap.preview_count += 1


_active: Listener | None = None
_guard = threading.Lock()  # one watched command at a time


def _report(bar, check_cancel: bool = True) -> None:
    """Tell the listener where ``bar`` stands; raise :class:`Cancelled` first if the listener was cancelled."""
    listener = _active
    if listener is None:
        return
    if check_cancel and listener.cancelled:
        raise Cancelled("cancelled")
    if getattr(bar, "disable", True):  # a hidden inner loop: its outer bar reports
        return
    d = bar.format_dict
    listener.on_bar(str(d.get("prefix") or ""), int(d.get("n") or 0), d.get("total"),
                    float(d.get("elapsed") or 0.0))


@contextmanager
def listening(listener: Listener) -> Iterator[Listener]:
    """Route every tqdm bar created inside to ``listener`` (bars left at tqdm's ``disable=None`` are enabled: a
    server's stderr is no terminal); one watched command at a time in a process."""
    import tqdm.std

    global _active
    cls = tqdm.std.tqdm
    init, update, close = cls.__init__, cls.update, cls.close

    def init_watched(self, *args, **kwargs):
        if kwargs.get("disable", False) is None:
            kwargs["disable"] = False
        init(self, *args, **kwargs)
        _report(self)

    def update_watched(self, n=1):
        out = update(self, n)
        _report(self)
        return out

    def close_watched(self):
        _report(self, check_cancel=False)  # closing never raises: it runs while a Cancelled unwinds
        return close(self)

    with _guard:
        cls.__init__, cls.update, cls.close = init_watched, update_watched, close_watched
        _active = listener
        try:
            yield listener
        finally:
            cls.__init__, cls.update, cls.close = init, update, close
            _active = None


def preview_due(step: int) -> bool:
    """Whether a loop at ``step`` (1-based) should make a preview (never outside :func:`listening`)."""
    listener = _active
    return listener is not None and listener.preview_every > 0 and step % listener.preview_every == 0


def report_preview(image: np.ndarray) -> None:  # [H, W, 3] uint8
    """Hand the watching listener an image (ignored when nobody listens)."""
    listener = _active
    if listener is not None:
        listener.on_preview(np.ascontiguousarray(image))
        if listener.cancelled:
            raise Cancelled("cancelled")
