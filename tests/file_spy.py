"""Which paths a piece of code lists or opens, seen by a Python audit hook (``open``, ``os.scandir``,
``os.listdir``): the hook sees ``builtins.open``, ``os.open``, ``io.open`` and PIL's and numpy's file access alike,
which monkeypatching one function does not.

Import as ``from file_spy import touched`` (pytest puts ``tests/`` on ``sys.path``, as for ``tolerances``).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

_EVENTS = ("open", "os.scandir", "os.listdir")
_active: list[list[tuple[str, str]]] = []  # the recorders of the open `touched` blocks
_installed = False


def _hook(event: str, args: tuple) -> None:
    if not _active or event not in _EVENTS or not args:
        return
    p = args[0]
    if isinstance(p, (str, bytes, os.PathLike)):
        _active[-1].append((event, os.fsdecode(p)))


@contextlib.contextmanager
def touched() -> Iterator[list[tuple[str, str]]]:
    """Record ``(event, path)`` for every file opened and folder listed in the block (audit hooks cannot be removed:
    one hook is installed for the process, idle outside these blocks)."""
    global _installed
    if not _installed:
        sys.addaudithook(_hook)
        _installed = True
    log: list[tuple[str, str]] = []
    _active.append(log)
    try:
        yield log
    finally:
        _active.pop()


def outside(log: list[tuple[str, str]], root: str | os.PathLike, under: str | os.PathLike) -> list[tuple[str, str]]:
    """The entries of ``log`` whose path resolves (links followed) below ``under`` but not below ``root``."""
    real_root, real_under = os.path.realpath(root), os.path.realpath(under)

    def below(p: str, top: str) -> bool:
        return os.path.commonpath([top, p]) == top

    out = []
    for event, p in log:
        real = os.path.realpath(p)
        if below(real, real_under) and not below(real, real_root):
            out.append((event, p))
    return out
