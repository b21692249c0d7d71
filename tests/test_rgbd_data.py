"""RGBD sets: exact disparity from exact depth, captions, determinism, disk round trips, and the DPT builder."""

import json
import re

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from latent3d.data.formats.rgbd import disparity_from_depth, read_rgbd_set, write_rgbd_set
from latent3d.data.procedural.rgbd_sets import render_rgbd_set
from latent3d.errors import UserError
from latent3d.priors.vocab import words_of

U16 = 65535
EPS32 = torch.finfo(torch.float32).eps


@pytest.mark.numerics
def test_disparity_closed_form():  # elementwise float32, a few correctly rounded operations: inside the f32 default
    z = torch.tensor([[1.0, 2.0], [4.0, float("inf")]]).view(1, 1, 2, 2)
    d, near, far = disparity_from_depth(z)
    # 1/z = 1, 0.5, 0.25 -> (1/z - 1/4) / (1 - 1/4); sky = 0
    assert_close(d.view(-1), torch.tensor([1.0, 1.0 / 3.0, 0.0, 0.0]))
    assert float(near) == 1.0 and float(far) == 4.0
    flat, _, _ = disparity_from_depth(torch.full((1, 1, 2, 2), 3.0))
    assert torch.all(flat == 1)  # one depth value: all nearest


@pytest.fixture(scope="module")
def persp():
    return render_rgbd_set(8, 24, 24, seed=3, supersample=1)


@pytest.mark.numerics
def test_perspective_set_is_exact_deterministic_and_aimed(persp):
    s = persp
    assert s.rgb.shape == (8, 3, 24, 24) and s.disparity.shape == s.depth.shape == (8, 1, 24, 24)
    assert s.K.shape == (8, 3, 3) and len(s.captions) == 8
    again = render_rgbd_set(8, 24, 24, seed=3, supersample=1)
    assert torch.equal(again.rgb, s.rgb) and torch.equal(again.disparity, s.disparity) and again.captions == s.captions
    parallel = render_rgbd_set(8, 24, 24, seed=3, supersample=1, workers=2)  # scenes have their own RNGs
    assert torch.equal(parallel.depth, s.depth) and parallel.captions == s.captions
    other = render_rgbd_set(8, 24, 24, seed=4, supersample=1)
    assert not torch.equal(other.rgb, s.rgb)
    for i in range(8):  # disparity is the per-image min-max of 1/z over the pixels that hit something
        z, d = s.depth[i, 0], s.disparity[i, 0]
        hit = torch.isfinite(z)
        inv = 1 / z[hit]
        # the float32 reference: 1 / z, a subtraction and a division, elementwise (correctly rounded on every CPU):
        # 3 roundings on each side, relative to max(inv) / (max(inv) - min(inv)) (<= 2.4 here): 8 eps32 of that
        span = float(inv.max() - inv.min())
        assert_close(d[hit], (inv - inv.min()) / span, atol=8 * EPS32 * float(inv.max()) / span, rtol=0)
        assert torch.all(d[~hit] == 0) and float(d.max()) == pytest.approx(1.0)
        near, far = z[hit].argmin(), z[hit].argmax()
        assert d[hit][near] > d[hit][far]  # bright = near
        assert float(s.rgb[i].std()) > 0.01  # not a blank frame


def test_caption_grammar_and_prompt_vocabulary():
    s = render_rgbd_set(120, 6, 6, seed=0, kinds=("floor",), supersample=1)
    obj = r"an? \w+ \w+"
    pat = re.compile(rf"^{obj}((, {obj})* and {obj})? on a (wooden|tiled|marble|carpeted) floor$")
    assert all(pat.match(c) for c in s.captions), [c for c in s.captions if not pat.match(c)]
    assert set(words_of(["a blue sphere on a wooden floor"])) <= set(words_of(s.captions))
    assert sum(" and " not in c and "," not in c for c in s.captions) > len(s.captions) / 3  # many single objects


def test_pano_set_places_and_shapes():
    p = render_rgbd_set(6, 8, 16, seed=0, pano=True, supersample=1)
    assert p.K is None and p.rgb.shape == (6, 3, 8, 16)
    assert p.captions[0] == "a sunny beach with palm trees"  # kinds cycle beach, forest, desert, snow, street, room
    assert p.captions[1] == "a forest of trees" and "room with" in p.captions[5]
    for i in range(6):  # sky (no hit) is the farthest: 0; the ground below the eye is the nearest
        assert torch.all(p.disparity[i][~torch.isfinite(p.depth[i])] == 0)
    assert float(p.disparity[0, 0, -1].mean()) > float(p.disparity[0, 0, p.rgb.shape[2] // 2 - 1].mean())
    with pytest.raises(ValueError, match="2:1"):
        render_rgbd_set(1, 8, 8, pano=True)


def test_write_read_round_trip(tmp_path, persp):
    s = persp
    write_rgbd_set(tmp_path / "set", s)
    r = read_rgbd_set(tmp_path / "set")
    assert r.captions == s.captions and torch.equal(r.K, s.K)
    assert (r.disparity.double() - s.disparity.double()).abs().max() <= 0.5 / U16 + 1e-9  # 16-bit quantisation
    assert (r.rgb - s.rgb).abs().max() <= 0.5 / 255 + 1e-6
    hit = torch.isfinite(s.depth)
    rel = ((r.depth - s.depth).abs() / s.depth)[hit]
    assert rel.max() < 1e-3  # metric depth back from near/far
    card = (tmp_path / "set" / "DATA_CARD.md").read_text()
    assert "normalised inverse depth" in card and "[0, 1]" in card
    index = json.loads((tmp_path / "set" / "rgbd.json").read_text())
    assert index["projection"] == "pinhole" and index["items"][0]["near"] > 0
    meta = [json.loads(ln) for ln in (tmp_path / "set" / "metadata.jsonl").read_text().splitlines()]
    assert meta[2] == {"file_name": "rgb/00002.png", "text": s.captions[2]}
    with pytest.raises(UserError, match="rgbd.json"):
        read_rgbd_set(tmp_path)


# ------------------------------------------------------------------------------------------------- builder
def _tiny_dpt(folder):
    from transformers import DPTConfig, DPTForDepthEstimation, DPTImageProcessor

    torch.manual_seed(0)
    cfg = DPTConfig(hidden_size=16, num_hidden_layers=4, num_attention_heads=2, intermediate_size=32, image_size=32,
                    patch_size=8, backbone_out_indices=[0, 1, 2, 3], neck_hidden_sizes=[8, 8, 8, 8],
                    fusion_hidden_size=8, reassemble_factors=[4, 2, 1, 0.5])  # fmt: skip
    model = DPTForDepthEstimation(cfg).eval()
    with torch.no_grad():  # random init predicts ~0 everywhere; give it a non-trivial output
        for p in model.parameters():
            p.normal_(0, 0.3)
    model.save_pretrained(folder)
    DPTImageProcessor(size={"height": 32, "width": 32}, keep_aspect_ratio=False).save_pretrained(folder)
    return model


@pytest.mark.numerics
def test_builder_writes_exactly_the_models_normalised_output(tmp_path):
    from PIL import Image
    from transformers import AutoImageProcessor

    from latent3d.data.formats.rgbd_builder import build_rgbd_pairs

    model = _tiny_dpt(tmp_path / "dpt")
    src = tmp_path / "imgs"
    src.mkdir()
    rng = np.random.default_rng(0)
    rows = ["file_name,text"]
    for k, (h, w) in enumerate([(24, 32), (48, 64), (30, 40)]):  # all 3:4, so --size (24, 32) only resizes
        yy, xx = np.mgrid[0:h, 0:w]
        img = np.stack([xx / w, yy / h, rng.random((h, w))], -1)
        Image.fromarray((img * 255).astype(np.uint8)).save(src / f"im{k}.png")
        rows.append(f'im{k}.png,"a picture, number {k}"')
    (src / "metadata.csv").write_text("\n".join(rows) + "\n")
    out = build_rgbd_pairs(src, tmp_path / "out", str(tmp_path / "dpt"), size=(24, 32), batch_size=2, device="cpu",
                           progress=False)  # fmt: skip
    got = read_rgbd_set(out)
    assert got.captions == [f"a picture, number {k}" for k in range(3)] and got.rgb.shape == (3, 3, 24, 32)
    assert torch.isnan(got.depth).all()  # relative depth only
    proc = AutoImageProcessor.from_pretrained(tmp_path / "dpt")
    for k in range(3):  # independent reference: model output, bicubic to the image size, min-max normalised
        with Image.open(src / f"im{k}.png") as im:
            im = im.convert("RGB").resize((32, 24), Image.Resampling.BICUBIC)
        with torch.no_grad():
            pred = model(**proc(images=[im], return_tensors="pt")).predicted_depth
        pred = torch.nn.functional.interpolate(pred[:, None], size=(24, 32), mode="bicubic", align_corners=False)[0, 0]
        ref = (pred - pred.min()) / (pred.max() - pred.min())
        assert float(ref.std()) > 0.05  # the tiny model's output is not flat
        # 16-bit quantisation (<= 0.5 / U16) plus the float32 error of the min-max normalised output: the builder runs
        # the same float32 model on a batch of 2, the reference on 1 (another summation order on another CPU): ~30
        # layers (4 ViT blocks, neck, head, bicubic) of <= 72-term sums, ~3 eps32 relative each, k = 100, relative to
        # the output's range (measured over ATEN_CPU_CAPABILITY x threads and ONEDNN_MAX_CPU_ISA=AVX2: <= 7 eps32).
        # ~1.3 levels in all; an 8-bit depth, bilinear resizing or a missing normalisation is >= 100 levels off
        float_err = 100 * EPS32 * float(pred.abs().max() / (pred.max() - pred.min()))
        assert (got.disparity[k, 0].double() - ref.double()).abs().max() <= 0.5 / U16 + float_err
    assert "normalised inverse depth" in (out / "DATA_CARD.md").read_text()


def test_data_rgbd_pairs_command_writes_what_the_builder_writes(tmp_path, capsys):
    """`latent3d data rgbd-pairs` is the builder behind a command: same files, byte for byte, as calling it; a
    bad --size is one line before any model loads."""
    from PIL import Image

    from latent3d.cli import main
    from latent3d.data.formats.rgbd_builder import build_rgbd_pairs

    _tiny_dpt(tmp_path / "dpt")
    src = tmp_path / "imgs"
    src.mkdir()
    rng = np.random.default_rng(1)
    for k in range(2):
        Image.fromarray((rng.random((24, 32, 3)) * 255).astype(np.uint8)).save(src / f"im{k}.png")
    (src / "metadata.jsonl").write_text("".join(f'{{"file_name": "im{k}.png", "text": "picture {k}"}}\n' for k in range(2)))
    args = ["data", "rgbd-pairs", str(src), "--depth-model", str(tmp_path / "dpt"), "--size", "24x32",
            "--batch-size", "2", "--device", "cpu"]  # fmt: skip
    assert main([*args, "--out", str(tmp_path / "cli")]) == 0
    build_rgbd_pairs(src, tmp_path / "lib", str(tmp_path / "dpt"), size=(24, 32), batch_size=2, device="cpu",
                     progress=False)  # fmt: skip
    names = sorted(p.relative_to(tmp_path / "lib") for p in (tmp_path / "lib").rglob("*") if p.is_file())
    assert names and names == sorted(p.relative_to(tmp_path / "cli") for p in (tmp_path / "cli").rglob("*") if p.is_file())
    for n in names:
        assert (tmp_path / "cli" / n).read_bytes() == (tmp_path / "lib" / n).read_bytes(), n
    capsys.readouterr()
    assert main([*args[:5], "--size", "12x", "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--size" in err and not (tmp_path / "bad").exists()


def test_builder_reads_jsonl_and_reports_mistakes(tmp_path):
    from latent3d.data.formats.rgbd_builder import read_captions

    (tmp_path / "a.png").write_bytes(b"")
    (tmp_path / "metadata.jsonl").write_text('{"image": "a.png", "caption": "a red chair"}\n')
    assert read_captions(tmp_path) == [(tmp_path / "a.png", "a red chair")]
    (tmp_path / "bad.jsonl").write_text('{"file_name": "missing.png", "text": "x"}\n')
    with pytest.raises(UserError, match="not found"):
        read_captions(tmp_path, tmp_path / "bad.jsonl")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="metadata"):
        read_captions(tmp_path / "empty")
