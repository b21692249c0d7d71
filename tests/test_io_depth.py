"""Depth I/O: PNG-16 round trips, quantisation, the LDM3D packing (all 65536 values), disparity, previews."""

from __future__ import annotations

import os
import struct

import numpy as np
import pytest
import torch

from latent3d.io import depth as D

ALL_U16 = np.arange(65536, dtype=np.uint16)


# ------------------------------------------------------------------------------------------------- packing
def test_pack_hand_checked_values():
    rgb = D.pack_depth_rgb(np.array([0, 258, 65535, 255, 256], dtype=np.uint16))
    assert rgb.dtype == np.float32 and rgb.shape == (5, 3)
    np.testing.assert_array_equal(rgb[0], [0, 0, 0])
    np.testing.assert_array_equal(rgb[1], np.float32([0, 1, 2]) / np.float32(255))  # 258 = 1 * 256 + 2
    np.testing.assert_array_equal(rgb[2], [0, 1, 1])
    np.testing.assert_array_equal(rgb[3], np.float32([0, 0, 255]) / np.float32(255))
    np.testing.assert_array_equal(rgb[4], np.float32([0, 1, 0]) / np.float32(255))


def test_pack_unpack_lossless_all_values_numpy():
    rgb = D.pack_depth_rgb(ALL_U16.reshape(256, 256))  # [256, 256, 3]
    assert rgb.shape == (256, 256, 3) and rgb.min() >= 0 and rgb.max() <= 1
    assert np.all(rgb[..., 0] == 0)
    back = D.unpack_depth_rgb(rgb)
    assert back.dtype == np.uint16
    np.testing.assert_array_equal(back.ravel(), ALL_U16)
    # float16 (e.g. a half-precision decoder output) and float64 are lossless too
    np.testing.assert_array_equal(D.unpack_depth_rgb(rgb.astype(np.float16)).ravel(), ALL_U16)
    np.testing.assert_array_equal(D.unpack_depth_rgb(rgb.astype(np.float64)).ravel(), ALL_U16)


def test_pack_unpack_lossless_all_values_torch_channel_last_and_first():
    d = torch.from_numpy(ALL_U16.astype(np.int64)).reshape(4, 128, 128)  # [B, H, W]
    last = D.pack_depth_rgb(d)  # [B, H, W, 3]
    first = D.pack_depth_rgb(d, dim=1)  # [B, 3, H, W]
    assert isinstance(first, torch.Tensor) and first.shape == (4, 3, 128, 128) and first.dtype == torch.float32
    torch.testing.assert_close(first, last.permute(0, 3, 1, 2), rtol=0, atol=0)
    # the torch path gives bit-identical floats to the numpy path
    np.testing.assert_array_equal(last.numpy().reshape(-1, 3), D.pack_depth_rgb(ALL_U16))
    for x in (first, first.half(), first.double()):
        back = D.unpack_depth_rgb(x, dim=1)
        assert back.dtype == torch.uint16 and back.shape == (4, 128, 128)
        assert torch.equal(back.long().flatten(), torch.arange(65536))
    assert torch.equal(D.unpack_depth_rgb(last).long(), d)


def test_narrow_integer_inputs_do_not_overflow():
    """diffusers #14206: under NumPy 2, uint8 * 256 / uint8 << 8 stays uint8 and wraps."""
    # pack from uint8 and from torch.uint16
    np.testing.assert_array_equal(D.pack_depth_rgb(np.array([255], np.uint8))[0] * 255, [0, 0, 255])
    t = torch.tensor([65535, 258]).to(torch.uint16)
    # float32 (v / 255) * 255: 2 roundings of values <= 255 -> 2 * 255 * eps32 = 6e-5 (one level off is 1.0)
    eps32 = float(np.finfo(np.float32).eps)
    np.testing.assert_allclose(D.pack_depth_rgb(t).numpy() * 255, [[0, 255, 255], [0, 1, 2]], atol=2 * 255 * eps32,
                               rtol=0)
    # unpack a uint8 image as read from disk
    img = np.array([[0, 255, 255], [7, 1, 2]], dtype=np.uint8)
    np.testing.assert_array_equal(D.unpack_depth_rgb(img), [65535, 258])
    assert torch.equal(D.unpack_depth_rgb(torch.from_numpy(img)).long(), torch.tensor([65535, 258]))


def test_unpack_clamps_overshoot_and_rejects_bad_inputs():
    rgb = np.array([[0.3, 1.02, -0.01]], np.float32)  # decoder overshoot
    np.testing.assert_array_equal(D.unpack_depth_rgb(rgb), [255 * 256])
    with pytest.raises(ValueError):
        D.unpack_depth_rgb(np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError):
        D.pack_depth_rgb(np.array([70000]))


# --------------------------------------------------------------------------------------------- quantisation
def test_quantize_dequantize_round_trip_exact():
    for x in (ALL_U16, torch.from_numpy(ALL_U16.astype(np.int32)).to(torch.uint16)):
        f = D.dequantize_depth(x)
        assert float(f.min()) == 0.0 and float(f.max()) == 1.0
        q = D.quantize_depth(f)
        assert np.array_equal(np.asarray(q), ALL_U16)
    np.testing.assert_array_equal(D.quantize_depth(np.array([-0.5, 0.0, 1 / 65535, 1.0, 2.0])), [0, 0, 1, 65535, 65535])
    assert D.quantize_depth(torch.tensor([1.0], dtype=torch.float16)).long().item() == 65535  # no fp16 overflow


# ------------------------------------------------------------------------------------------------- PNG-16
def _png_ihdr(path) -> tuple[int, int, int, int]:
    """(width, height, bit depth, colour type) straight from the PNG bytes, independent of any image library."""
    raw = open(path, "rb").read(33)
    assert raw[:8] == b"\x89PNG\r\n\x1a\n" and raw[12:16] == b"IHDR"
    w, h, depth, ctype = struct.unpack(">IIBB", raw[16:26])
    return w, h, depth, ctype


def test_png16_round_trip_exact_and_read_by_independent_readers(tmp_path):
    rng = np.random.default_rng(0)
    d = rng.integers(0, 65536, size=(37, 53), dtype=np.uint16)
    d[0, 0], d[-1, -1], d[1, 1] = 0, 65535, 258
    p = D.write_depth_png16(tmp_path / "d.png", d)
    assert _png_ihdr(p) == (53, 37, 16, 0)  # 16-bit greyscale, not 8-bit

    back = D.read_depth_png16(p)
    assert back.dtype == np.uint16 and back.shape == d.shape
    np.testing.assert_array_equal(back, d)

    import imageio.v3 as iio
    from PIL import Image

    via_imageio = iio.imread(p)
    assert via_imageio.dtype == np.uint16
    np.testing.assert_array_equal(via_imageio, d)
    with Image.open(p) as im:
        assert im.mode.startswith("I")
        np.testing.assert_array_equal(np.asarray(im).astype(np.int64), d.astype(np.int64))


def test_png16_reads_a_file_written_by_imageio(tmp_path):
    import imageio.v3 as iio

    d = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    iio.imwrite(tmp_path / "x.png", d)
    np.testing.assert_array_equal(D.read_depth_png16(tmp_path / "x.png"), d)


def test_png16_rejects_non_uint16(tmp_path):
    with pytest.raises(ValueError, match="quantize_depth"):
        D.write_depth_png16(tmp_path / "d.png", np.zeros((4, 4), np.float32))
    assert not (tmp_path / "d.png").exists()


def test_png16_atomic_when_writer_fails_midway(tmp_path, monkeypatch):
    from PIL import Image

    target = tmp_path / "d.png"
    target.write_bytes(b"old")

    def broken_save(self, fp, *a, **k):
        with open(fp, "wb") as fh:
            fh.write(b"\x89PNG half written")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        D.write_depth_png16(target, np.zeros((4, 4), np.uint16))
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["d.png"]  # no temp file left behind
    with pytest.raises(OSError):
        D.write_depth_png16(tmp_path / "new.png", np.zeros((4, 4), np.uint16))
    assert sorted(os.listdir(tmp_path)) == ["d.png"]


# ------------------------------------------------------------------------------------------ depth/disparity
def test_depth_disparity_hand_values_and_inverse():
    # float64 NumPy: a few operations on values <= 4, round-off ~1e-15, so 1e-12 holds on any CPU
    z = np.array([1.0, 2.0, 4.0])
    disp = D.depth_to_disparity(z)  # near=1, far=4 from the map
    np.testing.assert_allclose(disp, [1.0, 1 / 3, 0.0], atol=1e-12)
    np.testing.assert_allclose(D.disparity_to_depth(disp, near=1.0, far=4.0), z, rtol=1e-12)
    np.testing.assert_allclose(D.depth_to_disparity(np.array([np.nan, np.inf, -1.0, 2.0]), 1.0, 4.0),
                               [0, 0, 0, 1 / 3], atol=1e-12)  # invalid -> 0, not NaN
    zt = torch.tensor([[0.5, 1.0], [3.0, 0.0]])  # 0 = invalid
    dt = D.depth_to_disparity(zt, near=0.5, far=3.0)
    assert isinstance(dt, torch.Tensor)
    # float32: assert_close's float32 default (rtol 1.3e-6 = 11 eps32) for a 4-operation formula of values <= 2
    torch.testing.assert_close(dt, torch.tensor([[1.0, (1 - 1 / 3) / (2 - 1 / 3)], [0.0, 0.0]]))
    torch.testing.assert_close(D.disparity_to_depth(dt[0], 0.5, 3.0), zt[0])
    with pytest.raises(ValueError):
        D.disparity_to_depth(dt, near=2.0, far=1.0)


def test_depth_preview_near_is_warm_far_is_cool_invalid_black():
    lut = D.turbo_lut()
    assert lut.shape == (256, 3) and lut.dtype == np.uint8
    assert lut[60, 2] > lut[60, 0] and lut[250, 0] > lut[250, 2] and lut[128, 1] > 200  # blue -> green -> red
    z = np.tile(np.linspace(1.0, 10.0, 64), (8, 1))
    z[0, 0] = np.nan
    z[0, 1] = -1.0
    img = D.depth_preview(z)
    assert img.shape == (8, 64, 3) and img.dtype == np.uint8
    assert img[0, 0].tolist() == [0, 0, 0] and img[0, 1].tolist() == [0, 0, 0]
    near, far = img[4, 2].astype(int), img[4, 60].astype(int)
    assert near[0] > near[2] + 50 and far[2] > far[0]
    disp = D.depth_preview(torch.linspace(0, 1, 64).repeat(8, 1), kind="disparity")
    np.testing.assert_array_equal(disp[:, -1], np.broadcast_to(lut[255], (8, 3)))
