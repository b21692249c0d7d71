"""Seeded fuzzing of the file readers (issue 13): every mutated file either reads into finite values of the
documented type or raises one ``UserError``; no other exception type escapes, nothing hangs.

Mutations: random byte flips, truncation, a random chunk inserted or deleted, header bytes swapped for others. A few
hundred per reader, each file a few hundred bytes, so the whole module runs in seconds."""

from __future__ import annotations

import io

import numpy as np
import pytest

from latent3d.errors import UserError

N_CASES = 250


def _mutate(data: bytes, rng: np.random.Generator) -> bytes:
    b = bytearray(data)
    kind = rng.integers(5)
    if kind == 0:  # flip 1-8 random bytes
        for i in rng.integers(0, len(b), rng.integers(1, 9)):
            b[i] = int(rng.integers(256))
    elif kind == 1:  # truncate
        b = b[: int(rng.integers(0, len(b)))]
    elif kind == 2:  # insert a random chunk
        i = int(rng.integers(0, len(b)))
        b[i:i] = rng.integers(0, 256, int(rng.integers(1, 64))).astype(np.uint8).tobytes()
    elif kind == 3:  # delete a chunk
        i = int(rng.integers(0, len(b)))
        del b[i : i + int(rng.integers(1, 64))]
    else:  # corrupt the header (the first 64 bytes), where the lengths and types live
        for i in rng.integers(0, min(64, len(b)), rng.integers(1, 4)):
            b[i] = int(rng.integers(256))
    return bytes(b)


def _fuzz(tmp_path, seed_file: bytes, suffix: str, read, check) -> dict:
    rng = np.random.default_rng(12)
    seen = {"ok": 0, "refused": 0}
    path = tmp_path / f"fuzz{suffix}"
    for _ in range(N_CASES):
        path.write_bytes(_mutate(seed_file, rng))
        try:
            out = read(path)
        except UserError as e:
            assert "\n" not in str(e)  # one line
            seen["refused"] += 1
            continue
        check(out)
        seen["ok"] += 1
    return seen


def _png(arr: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def test_load_image_refuses_every_bad_byte_with_one_error(tmp_path):
    from latent3d.io.image import load_image

    rgb = (np.random.default_rng(0).random((12, 10, 3)) * 255).astype(np.uint8)

    def check(x):
        assert x.dtype == np.float32 and x.ndim == 3 and x.shape[2] == 3
        assert np.isfinite(x).all() and x.min() >= 0 and x.max() <= 1

    for seed_file, suffix in ((_png(rgb), ".png"), (_jpeg(rgb), ".jpg")):
        seen = _fuzz(tmp_path, seed_file, suffix, load_image, check)
        assert seen["refused"] > 50  # the fuzzer does reach the error paths
    assert np.array_equal((load_image(_write(tmp_path / "ok.png", _png(rgb))) * 255).round(), rgb)


def _jpeg(rgb: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG")
    return buf.getvalue()


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


def test_read_depth_png16_refuses_every_bad_byte_with_one_error(tmp_path):
    from latent3d.io.depth import read_depth_png16, write_depth_png16

    d = np.random.default_rng(1).integers(0, 65536, (9, 14)).astype(np.uint16)
    write_depth_png16(tmp_path / "d.png", d)

    def check(x):
        assert x.dtype == np.uint16 and x.ndim == 2

    seen = _fuzz(tmp_path, (tmp_path / "d.png").read_bytes(), ".png", read_depth_png16, check)
    assert seen["refused"] > 50
    assert np.array_equal(read_depth_png16(tmp_path / "d.png"), d)
    # an 8-bit or colour PNG is not a 16-bit depth map
    for arr in (d.astype(np.uint8), np.zeros((4, 4, 3), np.uint8)):
        with pytest.raises(UserError, match="16-bit greyscale"):
            read_depth_png16(_write(tmp_path / "x.png", _png(arr)))


@pytest.mark.parametrize("fmt", ["binary_little_endian", "ascii"])
def test_read_gaussian_ply_refuses_every_bad_byte_with_one_error(tmp_path, fmt):
    from plyfile import PlyData

    from latent3d.io.ply import GaussianPLY, read_gaussian_ply, write_gaussian_ply

    rng = np.random.default_rng(2)
    g = GaussianPLY(means=rng.standard_normal((5, 3)).astype(np.float32),
                    sh=rng.standard_normal((5, 4, 3)).astype(np.float32),
                    opacity_logits=rng.standard_normal(5).astype(np.float32),
                    log_scales=(rng.standard_normal((5, 3)) - 3).astype(np.float32),
                    quats=rng.standard_normal((5, 4)).astype(np.float32))  # fmt: skip
    write_gaussian_ply(tmp_path / "g.ply", g)
    if fmt == "ascii":
        ply = PlyData.read(str(tmp_path / "g.ply"), mmap=False)
        ply.text = True
        ply.write(str(tmp_path / "g.ply"))

    def check(r):
        for name in ("means", "sh", "opacity_logits", "log_scales", "quats"):
            x = getattr(r, name)
            assert x.dtype == np.float32 and np.isfinite(x).all() and len(x) == r.num >= 1

    seen = _fuzz(tmp_path, (tmp_path / "g.ply").read_bytes(), ".ply",
                 lambda p: read_gaussian_ply(p, plausible=True), check)  # fmt: skip
    assert seen["refused"] > 50


def _ply_variant(tmp_path, header_edit=None, nan=False, n=3):
    from latent3d.io.ply import GaussianPLY, write_gaussian_ply

    g = GaussianPLY(means=np.zeros((n, 3), np.float32), sh=np.full((n, 1, 3), 0.5, np.float32),
                    opacity_logits=np.zeros(n, np.float32), log_scales=np.full((n, 3), -3.0, np.float32),
                    quats=np.tile(np.float32([1, 0, 0, 0]), (n, 1)))  # fmt: skip
    if nan:
        g.means[1, 2] = np.nan
    path = write_gaussian_ply(tmp_path / "v.ply", g)
    if header_edit:
        raw = path.read_bytes()
        end = raw.index(b"end_header\n")
        path.write_bytes(header_edit(raw[:end]) + raw[end:])
    return path


def test_read_gaussian_ply_refuses_nan_wrong_byte_order_retyped_and_empty(tmp_path):
    from latent3d.io.ply import read_gaussian_ply

    with pytest.raises(UserError, match="NaN or infinite means"):
        read_gaussian_ply(_ply_variant(tmp_path, nan=True))
    with pytest.raises(UserError, match="0 Gaussians"):
        read_gaussian_ply(_ply_variant(tmp_path, n=0))
    swapped = _ply_variant(tmp_path, lambda h: h.replace(b"binary_little_endian", b"binary_big_endian"))
    with pytest.raises(UserError, match="byte order"):
        read_gaussian_ply(swapped, plausible=True)
    # retyping one property to uchar changes the record size: the body no longer parses, or the type is refused
    retyped = _ply_variant(tmp_path, lambda h: h.replace(b"property float opacity", b"property uchar opacity"))
    with pytest.raises(UserError):
        read_gaussian_ply(retyped)
    ok = read_gaussian_ply(_ply_variant(tmp_path), plausible=True)
    assert ok.num == 3 and np.isfinite(ok.means).all()


# ------------------------------------------------------------------------------------------- dataset manifests
_BAD_VALUES = [None, [], {}, [1], "", "..", "../../../../etc/passwd", "/etc/passwd", float("nan"), float("inf"),
               -1, 0, 1e308, -1e308, True, "x" * 300, [[1, 2], [3]], {"a": 1}, 3.5, "images/../../x.png"]


def _mutate_json(doc, rng: np.random.Generator):
    """Replace one value anywhere in the document by a hostile one, or delete a key / list entry."""
    import copy

    doc = copy.deepcopy(doc)
    spots = []

    def walk(x):
        if isinstance(x, dict):
            for k in x:
                spots.append((x, k))
                walk(x[k])
        elif isinstance(x, list):
            for i in range(len(x)):
                spots.append((x, i))
                walk(x[i])

    walk(doc)
    for _ in range(int(rng.integers(1, 3))):
        parent, key = spots[int(rng.integers(len(spots)))]
        try:
            if rng.random() < 0.15:
                del parent[key]
            else:
                parent[key] = _BAD_VALUES[int(rng.integers(len(_BAD_VALUES)))]
        except (KeyError, IndexError):
            pass
    return doc


def _fuzz_manifest(folder, manifest: str, read, check, n: int = 150) -> dict:
    import json

    path = folder / manifest
    good = json.loads(path.read_text())
    rng = np.random.default_rng(5)
    seen = {"ok": 0, "refused": 0}
    try:
        for case in range(n):
            if case % 5 == 4:  # raw byte damage too
                path.write_bytes(_mutate(json.dumps(good).encode(), rng))
            else:
                path.write_text(json.dumps(_mutate_json(good, rng)))
            try:
                out = read(folder)
            except UserError as e:
                assert "\n" not in str(e)
                seen["refused"] += 1
                continue
            check(out)
            seen["ok"] += 1
    finally:
        path.write_text(json.dumps(good))
    return seen


def _tiny_views(n=2, h=6, w=8):
    import torch

    from latent3d.render.camera import intrinsics_from_fov, look_at

    g = torch.Generator().manual_seed(0)
    eyes = torch.tensor([[2.0, 0.0, 0.5], [0.0, 2.0, 0.5]])[:n]
    viewmats = look_at(eyes, torch.zeros(n, 3))
    Ks = intrinsics_from_fov(torch.full((n,), 0.8), w, h)
    return torch.rand(n, h, w, 3, generator=g), viewmats, Ks, 1 + torch.rand(n, h, w, generator=g)


def test_transforms_reader_refuses_hostile_manifests_and_stays_inside_the_folder(tmp_path):
    from file_spy import outside, touched

    from latent3d.data import read_transforms_dataset, write_transforms_dataset

    imgs, vm, Ks, depth = _tiny_views()
    write_transforms_dataset(tmp_path / "ds", imgs, vm, Ks, depth, depth > 1.5, ["a", "b"])
    (tmp_path / "secret.png").write_bytes((tmp_path / "ds" / "images" / "00000.png").read_bytes())

    def check(ds):
        assert ds.images.isfinite().all() and ds.Ks.isfinite().all() and ds.viewmats.isfinite().all()
        assert (ds.Ks[:, 0, 0] > 0).all() and (ds.Ks[:, 1, 1] > 0).all()
        if ds.depths is not None:
            assert not ds.depths.isnan().any() and (ds.depths > 0).all()

    with touched() as log:  # every open and listing, by an audit hook (PIL and numpy included)
        seen = _fuzz_manifest(tmp_path / "ds", "transforms.json", read_transforms_dataset, check)
    assert outside(log, tmp_path / "ds", tmp_path) == [] and len(log) > 100
    assert outside(log, tmp_path / "ds", "/etc") == []
    assert seen["refused"] > 40 and seen["ok"] > 5  # both branches are exercised
    # the classic traversal: a mask or depth path pointing out of the folder is one error, never opened
    import json

    doc = json.loads((tmp_path / "ds" / "transforms.json").read_text())
    for key, value in (("mask_path", "../secret.png"), ("depth_file_path", "../../../../etc/passwd"),
                       ("file_path", "/etc/passwd")):  # fmt: skip
        bad = json.loads(json.dumps(doc))
        bad["frames"][0][key] = value
        (tmp_path / "ds" / "transforms.json").write_text(json.dumps(bad))
        with pytest.raises(UserError, match="leaves the dataset folder|absolute"):
            read_transforms_dataset(tmp_path / "ds")


def test_rgbd_set_reader_refuses_hostile_manifests(tmp_path):
    import torch

    from latent3d.data.formats.rgbd import RGBDSet, read_rgbd_set, write_rgbd_set

    imgs, _, Ks, depth = _tiny_views()
    disp = (1 / depth - (1 / depth).amin((1, 2), keepdim=True))
    disp = disp / disp.amax((1, 2), keepdim=True)
    write_rgbd_set(tmp_path / "set", RGBDSet(imgs.permute(0, 3, 1, 2), disp[:, None], depth[:, None], Ks, ["a", "b"]))

    def check(s):
        assert s.rgb.isfinite().all() and s.disparity.isfinite().all() and len(s.captions) == len(s)
        assert not torch.isinf(s.depth).any() or True  # inf = sky is allowed; nan = relative set
        assert ((s.depth > 0) | s.depth.isnan()).all()
        if s.K is not None:
            assert s.K.isfinite().all()

    seen = _fuzz_manifest(tmp_path / "set", "rgbd.json", read_rgbd_set, check)
    assert seen["refused"] > 40 and seen["ok"] > 5


# --------------------------------------------------------------------------- cameras (issue 30: checked in one place)
N_CAMERA_CASES = 500  # per format; each read is two 8x8 views, so a format takes a few seconds
_HUGE_TINY = [1e29, -1e29, 1e20, 1e308, -1e308, 1e-300, 1e-39, 1e-10, 1e10, 0.0, -0.0, float("nan"), float("inf"),
              -float("inf"), 1e4, 1e5]


def _rotation(rng: np.random.Generator) -> np.ndarray:  # [3, 3] uniform-ish proper rotation
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def _camera_pose(rng: np.random.Generator) -> np.ndarray:  # [4, 4] camera-to-world, about half of them hostile
    m = np.eye(4)
    m[:3, :3], m[:3, 3] = _rotation(rng), rng.uniform(-4, 4, 3)
    kind = int(rng.integers(14))
    if kind == 1:
        m = np.diag([1e20, 1e20, 1e-39, 1.0])
    elif kind == 2:  # fuzz finding: a scaled "rotation" far away (inf in the cameras, training exited 0)
        m[:3, :3], m[:3, 3] = np.diag([1e-10, 1e10, 1.0]), 1e29
    elif kind == 3:
        m = np.zeros((4, 4))
    elif kind == 4:  # not affine
        m[3] = rng.choice([0.0, 1.0, 0.5, 1e-3, 2.0], 4)
    elif kind == 5:  # scaled rotation
        m[:3, :3] *= rng.choice([0.5, 0.99, 1.01, 2.0, 1e3])
    elif kind == 6:
        m[int(rng.integers(4))] = 1e29
    elif kind == 7:
        m[int(rng.integers(4)), int(rng.integers(4))] = rng.choice(_HUGE_TINY)
    elif kind == 8:  # a mirror
        m[:3, 0] *= -1
    elif kind == 9:  # far away: 10^3.5 .. 10^5 units, some inside the 1e4 bound
        m[:3, 3] *= 10 ** rng.uniform(2.9, 4.4)
    elif kind == 10:  # noise of 1e-7 .. 1e-1: float-print round-off (fine) up to a sheared matrix (refused)
        m[:3, :3] += rng.standard_normal((3, 3)) * 10 ** rng.uniform(-7, -1)
    elif kind == 11:
        m = np.full((4, 4), rng.choice([1e-300, 1e29]))
    elif kind == 12:  # shear
        m[:3, :3] = m[:3, :3] @ np.array([[1.0, rng.uniform(-1, 1), 0], [0, 1, 0], [0, 0, 1]])
    return m  # kinds 0 and 13: an ordinary pose


def _cameras_ok(viewmats, Ks, hw: tuple[int, int]) -> None:
    """The camera checks' criteria, written out again: finite, rigid, bounded translation, sane pinhole. The reader
    inverts camera-to-world in float64 and casts to float32, which moves R^T R by ~4 tol^2 + 1e-7: hence 1.1e-3."""
    v, k = viewmats.double().numpy(), Ks.double().numpy()
    assert np.isfinite(v).all() and np.isfinite(k).all()
    assert np.abs(v[:, 3] - [0, 0, 0, 1]).max() <= 1e-6
    R, t = v[:, :3, :3], v[:, :3, 3]
    assert np.abs(R.transpose(0, 2, 1) @ R - np.eye(3)).max() <= 1.1e-3 and (np.linalg.det(R) > 0).all()
    assert np.linalg.norm(t, axis=1).max() <= 1.01e4
    side = max(hw)
    for f in (k[:, 0, 0], k[:, 1, 1]):
        assert (f >= side / 1e4 * 0.999).all() and (f <= side * 1e4 * 1.001).all()
    assert (np.abs(k[:, :2, 2]) <= side * 1e4 * 1.001).all()


def _fuzz_cameras(folder, cases, readers) -> dict:
    """Apply each case (a function of the rng that spoils ``folder``), run every reader, restore; count outcomes."""
    import shutil
    import traceback

    backup = folder.parent / (folder.name + ".orig")
    shutil.copytree(folder, backup)
    rng = np.random.default_rng(30)
    seen = {"mutations": 0, "accepted": 0, "refused": 0, "other": []}
    for _ in range(N_CAMERA_CASES):
        shutil.rmtree(folder)
        shutil.copytree(backup, folder)
        cases(folder, rng)
        seen["mutations"] += 1
        for read, check in readers:
            try:
                out = read(folder)
            except UserError as e:
                assert "\n" not in str(e)
                seen["refused"] += 1
                continue
            except Exception as e:  # noqa: BLE001 -- counted, then asserted absent
                seen["other"].append(f"{type(e).__name__}: {e}\n{traceback.format_exc()}")
                continue
            check(out)
            seen["accepted"] += 1
    return seen


def _fmt(v: float) -> str:
    return repr(float(v))


def test_srn_reader_fuzzed_cameras_are_refused_or_sane(tmp_path):
    from latent3d.data.formats.multiview import read_object_folder

    obj = tmp_path / "ds" / "obj"
    (obj / "pose").mkdir(parents=True)
    (obj / "rgb").mkdir()
    (obj / "intrinsics.txt").write_text("10. 4. 4. 0.\n0. 0. 0.\n1.\n8 8\n")
    for i in range(2):
        _write(obj / "rgb" / f"00000{i}.png", _png(np.full((8, 8, 3), 60 * i, np.uint8)))
        c2w = np.eye(4)
        c2w[:3, :3], c2w[:3, 3] = _rotation(np.random.default_rng(i)), (0.0, -2.0, 0.5)
        (obj / "pose" / f"00000{i}.txt").write_text(" ".join(_fmt(v) for v in c2w.ravel()))
    read_object_folder(obj)  # intact
    good_intr = ["10.", "4.", "4.", "0."]

    def spoil(folder, rng):
        kind = rng.random()
        pose = folder / "pose" / f"00000{int(rng.integers(2))}.txt"
        if kind < 0.55:  # a camera
            pose.write_text(" ".join(_fmt(v) for v in _camera_pose(rng).ravel()) + "\n")
        elif kind < 0.8:  # the intrinsics: f cx cy / H W, or the world2cam flag
            vals = list(good_intr)
            hw = ["8", "8"]
            j = int(rng.integers(6))
            bad = _fmt(rng.choice(_HUGE_TINY + [0.5, -8.0, 2e6]))
            (vals if j < 3 else hw)[j if j < 3 else j - 3 - (j == 5)] = bad
            extra = "\n1" if rng.random() < 0.2 else ""
            (folder / "intrinsics.txt").write_text(f"{' '.join(vals)}\n0. 0. 0.\n1.\n{' '.join(hw)}{extra}\n")
        elif kind < 0.9:  # raw text damage of a pose or the intrinsics
            target = pose if rng.random() < 0.5 else folder / "intrinsics.txt"
            target.write_bytes(_mutate(target.read_bytes(), rng))
        else:  # one entry of a pose as text the float parser takes: 1e400, -nan, 0x10, ...
            vals = pose.read_text().split()
            vals[int(rng.integers(16))] = str(rng.choice(["1e400", "-nan", "0x10", "1_0", "1e-400", "+inf", "٣"]))
            pose.write_text(" ".join(vals))

    seen = _fuzz_cameras(obj, spoil, [(lambda f: read_object_folder(f, root=f.parent),
                                       lambda ov: _cameras_ok(ov.viewmats, ov.Ks, ov.images.shape[1:3]))])
    assert seen["other"] == [], seen["other"][0]
    assert seen["mutations"] >= 500 and seen["refused"] > 150 and seen["accepted"] > 60, seen


def test_transforms_readers_fuzzed_cameras_are_refused_or_sane(tmp_path):
    import copy
    import json

    from latent3d.data import read_transforms_dataset, write_transforms_dataset
    from latent3d.data.formats.multiview import read_object_folder

    imgs, vm, Ks, _ = _tiny_views()
    obj = tmp_path / "ds" / "obj"
    write_transforms_dataset(obj, imgs, vm, Ks)
    good = json.loads((obj / "transforms.json").read_text())

    def spoil(folder, rng):
        doc = copy.deepcopy(good)
        f = doc["frames"][int(rng.integers(len(doc["frames"])))]
        kind = rng.random()
        if kind < 0.5:
            f["transform_matrix"] = _camera_pose(rng).tolist()
            if rng.random() < 0.1:
                del f["transform_matrix"][3]  # 3x4: the bottom row is implied
        elif kind < 0.75:  # one intrinsics value, shared or per frame
            where = doc if rng.random() < 0.5 else f
            key = str(rng.choice(["fl_x", "fl_y", "cx", "cy", "w", "h"]))
            where[key] = float(rng.choice(_HUGE_TINY + [0.5, 2e6, -8.0, 1e-3]))
        elif kind < 0.85:  # NeRF-blender's field of view instead of focal lengths
            for k in ("fl_x", "fl_y"):
                doc.pop(k)
            doc["camera_angle_x"] = float(rng.choice([1e-300, 1e-9, 0.8, 3.0999, 3.1, 1e29, float("nan")]))
        elif kind < 0.93:
            doc = _mutate_json(doc, rng)
        text = json.dumps(doc)
        if kind >= 0.93:
            text = _mutate(text.encode(), rng).decode("latin-1")
        (folder / "transforms.json").write_text(text)

    def check_ds(ds):
        assert ds.images.isfinite().all()
        _cameras_ok(ds.viewmats, ds.Ks, ds.images.shape[1:3])

    def check_ov(ov):
        _cameras_ok(ov.viewmats, ov.Ks, ov.images.shape[1:3])

    seen = _fuzz_cameras(obj, spoil, [(lambda f: read_object_folder(f, root=f.parent), check_ov),
                                      (read_transforms_dataset, check_ds)])
    assert seen["other"] == [], seen["other"][0]
    assert seen["mutations"] >= 500 and seen["refused"] > 300 and seen["accepted"] > 100, seen
