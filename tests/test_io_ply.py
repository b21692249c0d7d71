"""3DGS PLY (INRIA layout) and coloured point clouds."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from latent3d.errors import UserError
from latent3d.io import ply as P

INRIA_DEG0 = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2", "opacity",
              "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]


def _random_gaussians(n: int, k: int, seed: int = 0) -> P.GaussianPLY:
    rng = np.random.default_rng(seed)

    def f(*shape):  # awkward float32 values: negatives, tiny, huge, exact binary fractions
        return (rng.standard_normal(shape) * 10.0 ** rng.integers(-30, 30, shape)).astype(np.float32)

    return P.GaussianPLY(means=f(n, 3), sh=f(n, k, 3), opacity_logits=f(n), log_scales=f(n, 3), quats=f(n, 4))


def _inria_save_ply(path, g: P.GaussianPLY) -> None:
    """A transcription of INRIA's ``GaussianModel.save_ply`` (numpy + plyfile), as the reference writer."""
    from plyfile import PlyData, PlyElement

    n, k = g.num, g.sh.shape[1]
    f_dc = g.sh[:, :1, :].transpose(0, 2, 1).reshape(n, -1)  # _features_dc [N,1,3] -> transpose(1,2).flatten
    f_rest = g.sh[:, 1:, :].transpose(0, 2, 1).reshape(n, -1)
    attrs = ["x", "y", "z", "nx", "ny", "nz"] + [f"f_dc_{i}" for i in range(3)]
    attrs += [f"f_rest_{i}" for i in range(3 * (k - 1))] + ["opacity"] + [f"scale_{i}" for i in range(3)]
    attrs += [f"rot_{i}" for i in range(4)]
    elements = np.empty(n, dtype=[(a, "f4") for a in attrs])
    cat = np.concatenate([g.means, np.zeros_like(g.means), f_dc, f_rest, g.opacity_logits[:, None], g.log_scales,
                          g.quats], axis=1)
    elements[:] = list(map(tuple, cat))
    PlyData([PlyElement.describe(elements, "vertex")]).write(str(path))


def test_attribute_names_and_order_are_inria_for_degree_0_and_3(tmp_path):
    from plyfile import PlyData

    deg3 = INRIA_DEG0[:9] + [f"f_rest_{i}" for i in range(45)] + INRIA_DEG0[9:]
    for k, names in ((1, INRIA_DEG0), (16, deg3)):
        g = _random_gaussians(5, k)
        P.write_gaussian_ply(tmp_path / "g.ply", g)
        ply = PlyData.read(str(tmp_path / "g.ply"))
        assert ply.byte_order == "<" and not ply.text
        assert [e.name for e in ply.elements] == ["vertex"]
        props = ply["vertex"].properties
        assert [p.name for p in props] == names
        assert all(p.val_dtype in ("f4", "float32") for p in props)
        assert len(ply["vertex"].data) == 5 and g.sh_degree == {1: 0, 16: 3}[k]


def test_bytes_identical_to_inria_reference_writer(tmp_path):
    for k in (1, 4, 16):
        g = _random_gaussians(7, k, seed=k)
        P.write_gaussian_ply(tmp_path / "ours.ply", g)
        _inria_save_ply(tmp_path / "inria.ply", g)
        assert (tmp_path / "ours.ply").read_bytes() == (tmp_path / "inria.ply").read_bytes()


def test_f_rest_is_channel_major_on_a_hand_built_example(tmp_path):
    from plyfile import PlyData

    sh = np.array([[[10 * k + c for c in range(3)] for k in range(4)]], np.float32)  # sh[0, k, c] = 10k + c
    g = P.GaussianPLY(means=np.zeros((1, 3)), sh=sh, opacity_logits=[0.5], log_scales=np.zeros((1, 3)),
                      quats=[[1, 0, 0, 0]])
    P.write_gaussian_ply(tmp_path / "g.ply", g)
    v = PlyData.read(str(tmp_path / "g.ply"))["vertex"].data[0]
    assert [float(v[f"f_dc_{c}"]) for c in range(3)] == [0, 1, 2]
    # f_rest_{c*(K-1) + (k-1)}: all of red's 3 coefficients first, then green's, then blue's
    assert [float(v[f"f_rest_{i}"]) for i in range(9)] == [10, 20, 30, 11, 21, 31, 12, 22, 32]
    assert float(v["opacity"]) == 0.5 and float(v["rot_0"]) == 1.0


@pytest.mark.parametrize("k", [1, 4, 9, 16])
def test_round_trip_bitwise_exact(tmp_path, k):
    g = _random_gaussians(33, k, seed=k)
    g.quats[0] = [2.0, 0.0, 0.0, 0.0]  # unnormalised stays unnormalised
    P.write_gaussian_ply(tmp_path / "g.ply", g)
    r = P.read_gaussian_ply(tmp_path / "g.ply")
    assert r.num == 33 and r.sh.shape == (33, k, 3) and r.sh_degree == int(np.sqrt(k)) - 1
    for name in ("means", "sh", "opacity_logits", "log_scales", "quats"):
        a, b = getattr(g, name), getattr(r, name)
        assert b.dtype == np.float32 and a.shape == b.shape
        np.testing.assert_array_equal(a.view(np.uint32), b.view(np.uint32), err_msg=name)


def test_reads_inria_and_ascii_files(tmp_path):
    from plyfile import PlyData

    g = _random_gaussians(4, 9)
    _inria_save_ply(tmp_path / "inria.ply", g)
    np.testing.assert_array_equal(P.read_gaussian_ply(tmp_path / "inria.ply").sh, g.sh)
    ply = PlyData.read(str(tmp_path / "inria.ply"))
    ply.text = True
    ply.write(str(tmp_path / "ascii.ply"))
    r = P.read_gaussian_ply(tmp_path / "ascii.ply")
    np.testing.assert_array_equal(r.sh, g.sh)
    np.testing.assert_array_equal(r.quats, g.quats)


def test_torch_fields_are_converted(tmp_path):
    t = P.GaussianPLY(means=torch.randn(3, 3, requires_grad=True), sh=torch.randn(3, 4, 3, dtype=torch.float64),
                      opacity_logits=torch.randn(3), log_scales=torch.randn(3, 3), quats=torch.randn(3, 4))
    assert isinstance(t.means, np.ndarray) and t.sh.dtype == np.float32
    P.write_gaussian_ply(tmp_path / "t.ply", t)
    np.testing.assert_array_equal(P.read_gaussian_ply(tmp_path / "t.ply").sh, t.sh)
    with pytest.raises(ValueError, match="sh"):
        P.GaussianPLY(means=np.zeros((2, 3)), sh=np.zeros((2, 5, 3)), opacity_logits=np.zeros(2),
                      log_scales=np.zeros((2, 3)), quats=np.zeros((2, 4)))


def test_non_3dgs_files_raise_user_error(tmp_path):
    P.write_point_ply(tmp_path / "pts.ply", np.zeros((3, 3)), np.zeros((3, 3), np.uint8))
    with pytest.raises(UserError, match="not a 3DGS PLY.*f_dc_0"):
        P.read_gaussian_ply(tmp_path / "pts.ply")
    (tmp_path / "junk.ply").write_bytes(b"this is not a ply file\n")
    with pytest.raises(UserError, match="not a readable PLY"):
        P.read_gaussian_ply(tmp_path / "junk.ply")
    with pytest.raises(UserError, match="not found"):
        P.read_gaussian_ply(tmp_path / "missing.ply")
    # a wrong number of f_rest_* attributes (SH degree not in 0..3)
    from plyfile import PlyData, PlyElement

    names = INRIA_DEG0[:9] + [f"f_rest_{i}" for i in range(6)] + INRIA_DEG0[9:]
    el = np.zeros(2, dtype=[(s, "<f4") for s in names])
    PlyData([PlyElement.describe(el, "vertex")]).write(str(tmp_path / "odd.ply"))
    with pytest.raises(UserError, match="6 f_rest"):
        P.read_gaussian_ply(tmp_path / "odd.ply")


def test_atomic_when_writer_fails_midway(tmp_path, monkeypatch):
    real_open = open

    class Broken:
        def __init__(self, path, mode):
            self.fh = real_open(path, mode)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

        def write(self, b):
            if b.startswith(b"ply"):
                return self.fh.write(b)
            raise OSError("disk full")

    monkeypatch.setattr(P, "open", Broken, raising=False)  # the writer's module-level `open`
    with pytest.raises(OSError, match="disk full"):
        P.write_gaussian_ply(tmp_path / "g.ply", _random_gaussians(4, 1))
    assert os.listdir(tmp_path) == []


def test_point_ply_readable_by_plyfile_and_trimesh(tmp_path):
    import trimesh
    from plyfile import PlyData

    rng = np.random.default_rng(0)
    pts = rng.standard_normal((50, 3)).astype(np.float32)
    cols = rng.integers(0, 256, (50, 3), dtype=np.uint8)
    P.write_point_ply(tmp_path / "p.ply", pts, cols)
    v = PlyData.read(str(tmp_path / "p.ply"))["vertex"]
    assert [p.name for p in v.properties] == ["x", "y", "z", "red", "green", "blue"]
    assert [p.val_dtype for p in v.properties] == ["f4"] * 3 + ["u1"] * 3
    np.testing.assert_array_equal(np.stack([v["x"], v["y"], v["z"]], 1), pts)
    pc = trimesh.load(tmp_path / "p.ply")
    assert isinstance(pc, trimesh.PointCloud)
    np.testing.assert_array_equal(pc.vertices, pts)
    np.testing.assert_array_equal(pc.colors[:, :3], cols)
    # float colours in [0, 1] and torch points
    P.write_point_ply(tmp_path / "f.ply", torch.from_numpy(pts), cols / 255.0)
    np.testing.assert_array_equal(trimesh.load(tmp_path / "f.ply").colors[:, :3], cols)
