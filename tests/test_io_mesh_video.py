"""Meshes (GLB/OBJ/PLY via trimesh), videos (MP4 / GIF fallback), images, and cheap imports of latent3d.io."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys

import numpy as np
import pytest
import torch

from latent3d.io import image as I
from latent3d.io import mesh as M
from latent3d.io import video as V

RNG = np.random.default_rng(0)
QUAD_V = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [0.5, 0.5, 1]], np.float32)
QUAD_F = np.array([[0, 1, 2], [0, 2, 3], [0, 1, 4]], np.int64)
COLORS = RNG.integers(0, 256, (5, 4), dtype=np.uint8)
UV = np.array([[0, 0], [1, 0], [1, 1], [0, 1], [0.5, 0.5]], np.float32)
TEXTURE = RNG.integers(0, 256, (16, 32, 3), dtype=np.uint8)


def _load(path):
    import trimesh

    return trimesh.load(path, process=False, force="mesh")


# ------------------------------------------------------------------------------------------------------ mesh
@pytest.mark.parametrize("suffix", [".glb", ".obj", ".ply"])
def test_vertex_coloured_mesh_round_trip(tmp_path, suffix):
    M.export_mesh(tmp_path / f"m{suffix}", QUAD_V, QUAD_F, vertex_colors=COLORS)
    m = _load(tmp_path / f"m{suffix}")
    assert len(m.vertices) == 5
    # GLB is glTF's y-up: (x, y, z) -> (x, z, -y); OBJ and PLY keep latent3d's z-up coordinates
    want = np.stack([QUAD_V[:, 0], QUAD_V[:, 2], -QUAD_V[:, 1]], -1) if suffix == ".glb" else QUAD_V
    np.testing.assert_allclose(m.vertices, want, atol=1e-6)  # float32 values written as float32: exact (0 measured)
    np.testing.assert_array_equal(m.faces, QUAD_F)
    got = m.visual.vertex_colors
    if suffix == ".obj":  # OBJ vertex colours carry no alpha
        np.testing.assert_array_equal(got[:, :3], COLORS[:, :3])
    else:
        np.testing.assert_array_equal(got, COLORS)


def test_float_rgb_colours_and_torch_inputs(tmp_path):
    M.export_mesh(tmp_path / "m.ply", torch.from_numpy(QUAD_V), torch.from_numpy(QUAD_F),
                  vertex_colors=COLORS[:, :3] / 255.0)
    np.testing.assert_array_equal(_load(tmp_path / "m.ply").visual.vertex_colors[:, :3], COLORS[:, :3])


def _glb_json(path) -> dict:
    raw = open(path, "rb").read()
    magic, _, _ = struct.unpack("<4sII", raw[:12])
    length, kind = struct.unpack("<I4s", raw[12:20])
    assert magic == b"glTF" and kind == b"JSON"
    return json.loads(raw[20 : 20 + length])


def test_textured_glb_embeds_pbr_base_color_texture(tmp_path):
    p = M.export_mesh(tmp_path / "t.glb", QUAD_V, QUAD_F, uv=UV, texture=TEXTURE)
    gltf = _glb_json(p)
    assert "baseColorTexture" in gltf["materials"][0]["pbrMetallicRoughness"]
    assert len(gltf["images"]) == 1 and "bufferView" in gltf["images"][0] and "uri" not in gltf["images"][0]
    assert os.listdir(tmp_path) == ["t.glb"]  # nothing written beside it

    m = _load(p)
    assert len(m.vertices) == 5
    np.testing.assert_array_equal(m.faces, QUAD_F)
    np.testing.assert_allclose(m.visual.uv, UV, atol=1e-6)  # float32 in and out: exact (0 measured)
    img = m.visual.material.baseColorTexture
    np.testing.assert_array_equal(np.asarray(img.convert("RGB")), TEXTURE)


def test_textured_obj_writes_mtl_and_texture_beside_it(tmp_path):
    M.export_mesh(tmp_path / "t.obj", QUAD_V, QUAD_F, uv=UV, texture=TEXTURE)
    assert sorted(os.listdir(tmp_path)) == ["t.mtl", "t.obj", "t.png"]
    m = _load(tmp_path / "t.obj")
    np.testing.assert_array_equal(m.faces, QUAD_F)
    np.testing.assert_array_equal(np.asarray(m.visual.material.image.convert("RGB")), TEXTURE)


def test_mesh_argument_errors(tmp_path):
    with pytest.raises(ValueError, match="suffix"):
        M.export_mesh(tmp_path / "m.stl", QUAD_V, QUAD_F)
    with pytest.raises(ValueError, match="PLY cannot carry a texture"):
        M.export_mesh(tmp_path / "m.ply", QUAD_V, QUAD_F, uv=UV, texture=TEXTURE)
    with pytest.raises(ValueError, match="face indices"):
        M.export_mesh(tmp_path / "m.glb", QUAD_V, QUAD_F + 3)
    with pytest.raises(ValueError, match="together"):
        M.export_mesh(tmp_path / "m.glb", QUAD_V, QUAD_F, uv=UV)
    assert os.listdir(tmp_path) == []


# ----------------------------------------------------------------------------------------------------- video
PALETTE = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [0, 255, 255], [128, 128, 128]], np.uint8)


def _flat_frames(h: int, w: int) -> np.ndarray:  # [6, h, w, 3], one flat colour per frame
    return np.ascontiguousarray(np.broadcast_to(PALETTE[:, None, None, :], (len(PALETTE), h, w, 3)))


def test_mp4_round_trip_with_imageio(tmp_path):
    import imageio.v2 as iio

    frames = _flat_frames(33, 47)  # odd sizes are padded to 34 x 48
    p = V.write_video(tmp_path / "v.mp4", frames, fps=12)
    assert p == tmp_path / "v.mp4" and os.listdir(tmp_path) == ["v.mp4"]
    reader = iio.get_reader(p, format="FFMPEG")
    try:
        meta = reader.get_meta_data()
        got = np.stack([f for f in reader.iter_data()])
    finally:
        reader.close()
    assert meta["codec"] == "h264" and meta["pix_fmt"].startswith("yuv420p")
    assert meta["fps"] == pytest.approx(12) and meta["size"] == (48, 34)
    assert got.shape == (6, 34, 48, 3)
    # lossy H.264 on flat colours: mean error per frame <= 3, max <= 12 (of 255), away from chroma edges. Codec
    # quality bounds, not float round-off: libx264's SIMD paths are bit-exact with its C code, so the bytes do not
    # depend on the CPU (or on ATen); swapped RGB/BGR is off by 255 on the pure colours, a full/limited range mix-up
    # by >= 16
    err = np.abs(got[:, :33, :47].astype(int) - frames.astype(int))
    assert err.reshape(6, -1).mean(axis=1).max() <= 3 and err[:, 2:-2, 2:-2].max() <= 12
    np.testing.assert_array_equal(V.read_video(p), got)


def test_video_accepts_float_torch_chw_and_lists(tmp_path):
    frames = torch.from_numpy(_flat_frames(16, 16)).permute(0, 3, 1, 2).float() / 255  # [T, 3, H, W]
    p = V.write_video(tmp_path / "a.mp4", frames, fps=8)
    assert V.read_video(p).shape == (6, 16, 16, 3)
    p = V.write_video(tmp_path / "b.gif", list(_flat_frames(8, 10)), fps=8)
    assert V.read_video(p).shape == (6, 8, 10, 3)


def test_gif_fallback_when_ffmpeg_is_missing(tmp_path, monkeypatch):
    def no_ffmpeg():
        raise RuntimeError("No ffmpeg exe could be found.")

    monkeypatch.setattr(V, "_ffmpeg_exe", no_ffmpeg)
    frames = _flat_frames(9, 11)
    with pytest.warns(RuntimeWarning, match="ffmpeg not usable.*GIF"):
        p = V.write_video(tmp_path / "v.mp4", frames, fps=10)
    assert p == tmp_path / "v.gif" and os.listdir(tmp_path) == ["v.gif"]
    got = V.read_video(p)
    assert got.shape == (6, 9, 11, 3)
    np.testing.assert_array_equal(got, frames)  # <= 256 colours per frame: GIF is exact here
    from PIL import Image

    with Image.open(p) as im:
        assert im.n_frames == 6 and im.info["duration"] == 100 and im.info["loop"] == 0


def test_gif_fallback_when_ffmpeg_fails(tmp_path, monkeypatch):
    fake = tmp_path / "bin" / "ffmpeg"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'Unknown encoder libx264' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setattr(V, "_ffmpeg_exe", lambda: str(fake))
    with pytest.warns(RuntimeWarning, match="Unknown encoder libx264"):
        p = V.write_video(tmp_path / "out" / "v.mp4", _flat_frames(4, 6))
    assert os.listdir(tmp_path / "out") == ["v.gif"] and V.read_video(p).shape == (6, 4, 6, 3)


def test_video_atomic_when_writer_fails_midway(tmp_path, monkeypatch):
    def broken(tmp, frames, fps):
        tmp.write_bytes(b"\x00\x00\x00 ftyp half")
        raise ValueError("encoder crashed")  # not an ffmpeg-availability error: no GIF fallback

    monkeypatch.setattr(V, "_write_mp4", broken)
    with pytest.raises(ValueError, match="encoder crashed"):
        V.write_video(tmp_path / "v.mp4", _flat_frames(4, 4))
    assert os.listdir(tmp_path) == []


# ----------------------------------------------------------------------------------------------------- image
def test_save_load_image_layouts(tmp_path):
    hwc = RNG.integers(0, 256, (6, 10, 3), dtype=np.uint8)
    I.save_image(tmp_path / "a.png", hwc)
    a = I.load_image(tmp_path / "a.png")
    assert a.dtype == np.float32 and a.shape == (6, 10, 3)
    np.testing.assert_array_equal((a * 255).round().astype(np.uint8), hwc)
    chw = torch.from_numpy(hwc).permute(2, 0, 1).float() / 255  # [3, H, W] float
    I.save_image(tmp_path / "b.png", chw)
    np.testing.assert_array_equal(I.load_image(tmp_path / "b.png"), a)
    I.save_image(tmp_path / "c.png", chw[None])  # [1, 3, H, W]
    np.testing.assert_array_equal(I.load_image(tmp_path / "c.png"), a)
    assert I.to_uint8_image(np.full((2, 2, 3), 1.7)).max() == 255  # clamped
    with pytest.raises(ValueError):
        I.save_image(tmp_path / "d.xyz", hwc)
    assert sorted(os.listdir(tmp_path)) == ["a.png", "b.png", "c.png"]


def test_make_grid():
    a = np.zeros((4, 5, 3), np.uint8)
    b = np.full((3, 3), 1.0, np.float32)  # greyscale, smaller
    grid = I.make_grid([a, b, a], ncols=2, pad=1, pad_value=7)
    assert grid.shape == (2 * 4 + 3, 2 * 5 + 3, 3) and grid.dtype == np.uint8
    assert (grid[1:5, 1:6] == 0).all() and (grid[1:4, 7:10] == 255).all() and (grid[4, 7:10] == 7).all()
    assert (grid[6:10, 1:6] == 0).all() and (grid[6:10, 7:12] == 7).all()


# ----------------------------------------------------------------------------------------------------- imports
def test_importing_io_does_not_import_heavy_libraries():
    code = ("import sys, latent3d.io, latent3d.io.depth, latent3d.io.image, latent3d.io.ply, latent3d.io.mesh, "
            "latent3d.io.video, latent3d.io.atomic; "
            "print(sorted(m for m in ('trimesh', 'imageio', 'imageio_ffmpeg', 'plyfile', 'matplotlib') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
