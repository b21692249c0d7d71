"""Dataset folders and files that must not hang, flood or escape the readers (issue 30, "Bad input handled by
construction"): object folders linked out of the dataset are refused before anything behind the link is listed,
FIFOs with a dataset file's name are refused instead of waited on, and a small .npz declaring a huge grid is refused
from its headers before anything is decompressed."""

from __future__ import annotations

import os
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from file_spy import outside, touched

from latent3d.data.formats.multiview import read_multiview_dataset, read_object_folder
from latent3d.errors import UserError


def _srn_object(folder: Path) -> Path:
    """A valid two-view SRN object (8x8 pixels)."""
    from PIL import Image

    (folder / "pose").mkdir(parents=True)
    (folder / "rgb").mkdir()
    (folder / "intrinsics.txt").write_text("10. 4. 4. 0.\n0. 0. 0.\n1.\n8 8\n")
    for i, eye in enumerate(((0.0, -2.0, 0.0), (2.0, 0.0, 0.5))):
        Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(folder / "rgb" / f"00000{i}.png")
        c2w = np.eye(4)
        c2w[:3, 3] = eye
        (folder / "pose" / f"00000{i}.txt").write_text(" ".join(repr(float(v)) for v in c2w.ravel()))
    return folder


def _many_folders(top: Path, n: int = 40) -> Path:
    for i in range(n):
        (top / f"d{i:02d}" / "inner").mkdir(parents=True)
        (top / f"d{i:02d}" / "inner" / "secret.txt").write_text("do not read")
    return top


@pytest.mark.parametrize("where", ["object folder", "rgb folder"])
def test_link_out_of_the_dataset_is_refused_before_listing_behind_it(tmp_path, where):
    ds = tmp_path / "ds"
    _srn_object(ds / "a_plain")
    away = _many_folders(tmp_path / "away")
    if where == "object folder":
        os.symlink(away, ds / "b_linked")
    else:
        _srn_object(ds / "b_linked")
        os.rename(ds / "b_linked" / "rgb", away / "rgb")
        os.symlink(away / "rgb", ds / "b_linked" / "rgb")
    read_object_folder(ds / "a_plain", root=ds)  # the plain object reads
    with touched() as log, pytest.raises(UserError) as e:
        read_multiview_dataset(ds)
    msg = str(e.value)
    assert "\n" not in msg and "b_linked" in msg and "leaves the dataset folder" in msg, msg
    assert outside(log, ds, tmp_path) == []  # nothing behind the link listed or opened
    assert any(event == "os.scandir" for event, _ in log)  # the spy does see the walk of the plain object


def _no_hang(fn, fifo: Path, timeout: float = 10.0) -> BaseException | None:
    """Run ``fn`` in a thread; a reader blocked on ``fifo`` past ``timeout`` is released (a writer opens and
    closes the FIFO) and the test fails. Returns what ``fn`` raised."""
    box: dict = {}

    def run():
        try:
            fn()
        except BaseException as e:  # noqa: BLE001 -- handed to the test
            box["exc"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        try:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))  # unblocks the reader (it reads EOF)
        except OSError:
            pass
        t.join(5)
        pytest.fail(f"the reader blocked on the FIFO {fifo} for {timeout} s")
    return box.get("exc")


FIFO_CASES = {
    "volume.npz": lambda d: (d / "volume.npz", lambda: _read_volume(d / "volume.npz")),
    "SRN pose": lambda d: (_srn_object(d / "obj") / "pose" / "000001.txt", lambda: read_object_folder(d / "obj")),
    "SRN intrinsics": lambda d: (_srn_object(d / "obj") / "intrinsics.txt", lambda: read_object_folder(d / "obj")),
    "SRN rgb": lambda d: (_srn_object(d / "obj") / "rgb" / "000000.png", lambda: read_object_folder(d / "obj")),
    "transforms.json": lambda d: (_srn_object(d / "obj") / "transforms.json", lambda: read_object_folder(d / "obj")),
}


def _read_volume(path):
    from latent3d.io.volume import read_volume_npz

    return read_volume_npz(path)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
@pytest.mark.parametrize("case", sorted(FIFO_CASES))
def test_fifo_with_a_dataset_file_name_is_refused_not_waited_on(tmp_path, case):
    path, read = FIFO_CASES[case](tmp_path)
    path.unlink(missing_ok=True)
    os.mkfifo(path)
    exc = _no_hang(read, path)
    assert isinstance(exc, UserError), repr(exc)
    msg = str(exc)
    assert "\n" not in msg and path.name in msg and "FIFO" in msg, msg


def _bomb(path: Path, shape: tuple[int, ...]) -> Path:
    """A volume .npz whose density member really holds ``prod(shape)`` float32 zeros, deflated to a few hundred KB."""
    from numpy.lib import format as npf

    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        with zf.open("density.npy", "w", force_zip64=True) as m:
            npf.write_array_header_1_0(m, {"descr": "<f4", "fortran_order": False, "shape": shape})
            chunk = bytes(1 << 24)
            left = int(np.prod(shape)) * 4
            while left > 0:
                m.write(chunk[: min(left, len(chunk))])
                left -= len(chunk)
        for name, a in (("rgb", np.zeros((3, 2, 2, 2), np.float32)), ("bbox_min", -np.ones(3)),
                        ("bbox_max", np.ones(3)), ("axes", np.array("xyz")), ("up", np.array("+z"))):
            with zf.open(f"{name}.npy", "w") as m:
                npf.write_array(m, a)
    return path


def test_npz_bomb_is_refused_from_its_headers_before_decompressing(tmp_path):
    import tracemalloc

    from latent3d.io.volume import MAX_VOLUME_BYTES, read_volume_npz

    shape = (512, 512, 512)  # 512 MiB of float32 zeros
    path = _bomb(tmp_path / "bomb.npz", shape)
    assert path.stat().st_size < 4 << 20 and 4 * 512**3 > MAX_VOLUME_BYTES
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        with pytest.raises(UserError) as e:
            read_volume_npz(path)
        seconds, (_, peak) = time.perf_counter() - t0, tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    msg = str(e.value)
    assert "\n" not in msg and "[512, 512, 512]" in msg and "before decompressing" in msg, msg
    assert peak < 16 << 20, peak  # numpy's and zlib's buffers are traced: nothing near 512 MiB was allocated
    assert seconds < 5.0, seconds  # decompressing 512 MiB alone takes about a second
    # a grid under the cap still reads (the check counts every member, the small ones too)
    small = _bomb(tmp_path / "small.npz", (2, 2, 2))
    assert read_volume_npz(small)["density"].shape == (2, 2, 2)
