"""Opening dataset files without trusting them: regular files only, and folder walks that never leave the dataset.

Every reader of a dataset file opens it through :func:`open_regular`: a FIFO, a device, a socket or a folder with a
dataset file's name is one :class:`~latent3d.errors.UserError`, never a read that blocks forever (the file is opened
non-blocking, checked with ``fstat`` on the open descriptor -- no race with a swap after the check -- and only then
switched back to blocking reads). :func:`walk_inside` lists a folder tree but refuses a symbolic link that leads out
of the dataset folder before anything behind it is listed.
"""

from __future__ import annotations

import os
import stat
from typing import BinaryIO

from latent3d.errors import UserError

_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def open_regular(path: str | os.PathLike, what: str, fix: str = "") -> BinaryIO:
    """Open ``path`` for binary reading if it is a regular file (symbolic links followed), else one
    :class:`UserError` ``"<path>: the <what> is a FIFO ..., not a regular file; <fix>"``."""
    tail = f"; {fix}" if fix else ""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)  # non-blocking: opening a FIFO without a writer returns at once
    except FileNotFoundError:
        raise UserError(f"{path}: {what} not found{tail}") from None
    except OSError as e:  # permission denied, a folder on Windows, a loop of links, ...
        raise UserError(f"{path}: cannot open the {what} ({e.strerror or type(e).__name__}){tail}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = next((k for test, k in _KINDS if test(mode)), "not a regular file")
            raise UserError(f"{path}: the {what} is {kind}, not a regular file{tail}")
        if flags & getattr(os, "O_NONBLOCK", 0):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular_bytes(path: str | os.PathLike, what: str, fix: str = "") -> bytes:
    """The bytes of a regular file (see :func:`open_regular`); a failing read is one :class:`UserError`."""
    with open_regular(path, what, fix) as fh:
        try:
            return fh.read()
        except OSError as e:
            raise UserError(f"{path}: cannot read the {what} ({e.strerror or type(e).__name__})") from None


def is_inside(path: str | os.PathLike, real_root: str) -> bool:
    """Whether ``path`` resolves (all links followed) to ``real_root`` (itself already resolved) or below it."""
    real = os.path.realpath(path)
    return os.path.commonpath([real_root, real]) == real_root


def walk_inside(folder: str | os.PathLike, root: str | os.PathLike) -> None:
    """Check that ``folder`` and everything below it (links followed) stay inside ``root``: each entry's resolved
    path is checked *before* it is listed, so a link to ``/`` is refused without listing anything behind it.
    A folder reached twice (links inside the dataset) is listed once."""
    real_root = os.path.realpath(root)

    def refuse(p: str) -> UserError:
        return UserError(f"{p}: a symbolic link to {os.path.realpath(p)}, which leaves the dataset folder {root}; "
                         "refused (copy the files into the dataset instead)")

    if not is_inside(folder, real_root):
        raise refuse(os.fspath(folder))
    seen: set[str] = set()
    stack = [os.fspath(folder)]
    while stack:
        d = stack.pop()
        real = os.path.realpath(d)
        if real in seen:
            continue
        seen.add(real)
        try:
            entries = list(os.scandir(d))
        except OSError as e:
            raise UserError(f"{d}: cannot list the folder ({e.strerror or type(e).__name__})") from None
        for e in entries:
            if e.is_symlink() and not is_inside(e.path, real_root):
                raise refuse(e.path)
            if e.is_dir():  # follows a link, which now points inside the dataset
                stack.append(e.path)

