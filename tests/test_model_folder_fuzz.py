"""Seeded fuzzing of the model and run folder loaders (issue 30, item 5): a damaged autodecoder run, object generator
or LDM3D (diffusers) folder either loads or is refused with one ``UserError`` line; no other exception escapes.

Mutations, each applied to one file of a freshly trained tiny folder and undone after its load: config.json values
swapped for values of other types, keys deleted, the JSON truncated or replaced by another JSON value; safetensors
files truncated at a random offset, bytes flipped in the header or the data, the header's JSON mutated as above,
metadata entries replaced by other (JSON) strings. The three damaged folders found first are named tests."""

from __future__ import annotations

import json
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from latent3d.cli import main
from latent3d.errors import UserError
from latent3d.io.model_folder import save_tensors
from latent3d.systems.autodecoder.config import ObjectDiffusionConfig
from latent3d.systems.autodecoder.stage2.generator import load_generator, resolve_model
from latent3d.systems.autodecoder.stage2.latents import read_latents
from latent3d.systems.autodecoder.stage2.train import train_object_diffusion
from latent3d.systems.autodecoder.stage1.run import load_autodecoder
from latent3d.systems.autodecoder.stage1.train import train_autodecoder
from test_autodecoder import _dataset, _tiny

WRONG = ["x", "", None, [], {}, -1, 0, 2.5, -7.5, True, [1, "a"], {"a": 1}]  # values of the wrong type (or sign)
META = ["5", '"x"', "null", "[1, 2]", '["a"]', "[]", "{", "", '{"a": 1}', "[[]]"]  # metadata strings


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> Path:
    """A tiny autodecoder run (ad/), a generator trained on it (od/, its model in od/model) and an LDM3D folder."""
    from tiny_ldm3d import build_tiny_ldm3d

    tmp = tmp_path_factory.mktemp("folders")
    train_autodecoder(_dataset(tmp), tmp / "ad", _tiny(1), device="cpu", progress=False)
    cfg = ObjectDiffusionConfig(model_channels=8, blocks=1, attention=(4,), head_channels=8, steps=1, batch_size=2)
    train_object_diffusion(tmp / "ad", tmp / "od", cfg, device="cpu", progress=False)
    build_tiny_ldm3d(tmp, 6, defaults={"num_inference_steps": 2, "guidance_scale": 5.0, "size": 32})
    return tmp


# ------------------------------------------------------------------------------------------------- mutations
def _containers(doc, out: list) -> list:
    if isinstance(doc, (dict, list)) and doc:
        out.append(doc)
        for v in doc.values() if isinstance(doc, dict) else doc:
            _containers(v, out)
    return out


def _mutate_json(text: str, rng: np.random.Generator) -> str:
    kind = rng.integers(4)
    if kind == 0:  # truncated: not JSON (or empty)
        return text[: int(rng.integers(0, len(text)))]
    if kind == 1:  # another JSON value where an object belongs
        return json.dumps(WRONG[rng.integers(len(WRONG))])
    doc = json.loads(text)
    node = _containers(doc, [])[int(rng.integers(len(_containers(doc, []))))]  # any level of nesting alike
    key = list(node)[int(rng.integers(len(node)))] if isinstance(node, dict) else int(rng.integers(len(node)))
    if kind == 2:
        del node[key]
    else:
        node[key] = WRONG[rng.integers(len(WRONG))]
    return json.dumps(doc)


def _with_header(header: str, body: bytes) -> bytes:
    text = header.encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + body


def _mutate_safetensors(data: bytes, rng: np.random.Generator) -> bytes:
    n = 8 + int.from_bytes(data[:8], "little")
    header, body = json.loads(data[8:n]), data[n:]
    kind = rng.integers(5)
    b = bytearray(data)
    if kind == 0:  # truncated anywhere, the length prefix included
        return data[: int(rng.integers(0, len(data)))]
    if kind == 1:  # bytes flipped in the length prefix or the header
        for i in rng.integers(0, n, rng.integers(1, 5)):
            b[i] = int(rng.integers(256))
        return bytes(b)
    if kind == 2:  # bytes flipped in the tensors: NaN, infinity, garbage values
        for i in rng.integers(n, len(b), rng.integers(1, 9)):
            b[i] = int(rng.integers(256))
        return bytes(b)
    if kind == 3 or not header.get("__metadata__"):  # dtype, shape, offsets or metadata of other types
        return _with_header(_mutate_json(json.dumps(header), rng), body)
    meta = header["__metadata__"]  # a metadata entry replaced by another string
    meta[list(meta)[int(rng.integers(len(meta)))]] = META[rng.integers(len(META))]
    return _with_header(json.dumps(header), body)


# (folder, file under it, loader of the folder)
TARGETS = [
    ("ad", "model/config.json", lambda p: load_autodecoder(p)),
    ("ad", "model/model.safetensors", lambda p: load_autodecoder(p)),
    ("ad", "latents.safetensors", lambda p: read_latents(p)),
    ("od", "model/config.json", lambda p: load_generator(resolve_model(str(p)))),
    ("od", "model/model.safetensors", lambda p: load_generator(resolve_model(str(p)))),
    ("od", "model/text_encoder/config.json", lambda p: load_generator(p / "model")),
    ("od", "model/text_encoder/model.safetensors", lambda p: load_generator(p / "model")),
    ("od", "model/tokenizer/tokenizer.json", lambda p: load_generator(p / "model")),
    ("od", "model/tokenizer/tokenizer_config.json", lambda p: load_generator(p / "model")),
    ("ldm3d_6c", "model_index.json", lambda p: _rgbd(p)),
    ("ldm3d_6c", "unet/config.json", lambda p: _rgbd(p)),
    ("ldm3d_6c", "unet/diffusion_pytorch_model.safetensors", lambda p: _rgbd(p)),
    ("ldm3d_6c", "vae/config.json", lambda p: _rgbd(p)),
    ("ldm3d_6c", "vae/diffusion_pytorch_model.safetensors", lambda p: _rgbd(p)),
    ("ldm3d_6c", "text_encoder/config.json", lambda p: _rgbd(p)),
    ("ldm3d_6c", "scheduler/scheduler_config.json", lambda p: _rgbd(p)),
]
N_CASES = 30  # per target: 480 mutated folders, ~40 s on one core


def _rgbd(folder: Path):
    from latent3d.systems.ldm3d.pipeline import RGBDPipeline

    return RGBDPipeline.from_pretrained(folder)


@pytest.mark.parametrize("target", TARGETS, ids=[f"{t[0]}/{t[1]}" for t in TARGETS])
def test_a_damaged_model_folder_loads_or_is_one_error(folders, target):
    name, rel, load = target
    folder, path = folders / name, folders / name / rel
    original = path.read_bytes()
    rng = np.random.default_rng(zlib.crc32(f"{name}/{rel}".encode()))
    mutate = _mutate_safetensors if path.suffix == ".safetensors" else (
        lambda data, g: _mutate_json(data.decode(), g).encode())  # fmt: skip
    seen: Counter = Counter()
    try:
        for _ in range(N_CASES):
            path.write_bytes(mutate(original, rng))
            try:
                load(folder)
                seen["loaded"] += 1
            except UserError as e:
                assert "\n" not in str(e) and str(folder) in str(e), str(e)  # one line naming the folder
                seen["UserError"] += 1
    finally:
        path.write_bytes(original)
    assert seen["UserError"] >= N_CASES // 3, seen  # the fuzzer reaches the error paths
    load(folder)  # and the restored folder loads


# ------------------------------------------------------------------------------------------------- named cases
def _one_line_error(argv: list[str], capsys) -> str:
    assert main(argv) == 2, argv
    err = capsys.readouterr().err.strip()
    assert err.startswith("latent3d: error:") and len(err.splitlines()) == 1, err
    return err


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def test_a_truncated_generator_model_is_one_line_for_latent3d_object(folders, tmp_path, capsys):
    import shutil

    run = shutil.copytree(folders / "od", tmp_path / "od")
    _truncate(run / "model" / "model.safetensors")
    for model in (run, run / "model"):  # the run folder of `train object-diffusion` means its model/
        err = _one_line_error(["object", "a red cube", "--model", str(model), "--out", str(tmp_path / "o"), "--device",
                               "cpu"], capsys)  # fmt: skip
        assert f"{run / 'model' / 'model.safetensors'} is damaged (truncated" in err and "copy it again" in err, err
    assert not (tmp_path / "o").exists()


def test_a_truncated_autodecoder_model_is_one_line_for_train_object_diffusion(folders, tmp_path, capsys):
    import shutil

    run = shutil.copytree(folders / "ad", tmp_path / "ad")
    _truncate(run / "model" / "model.safetensors")
    err = _one_line_error(["train", "object-diffusion", "--autodecoder", str(run), "--out", str(tmp_path / "r"),
                           "--steps", "1", "--device", "cpu"], capsys)  # fmt: skip
    assert f"{run / 'model' / 'model.safetensors'} is damaged (truncated" in err, err


def test_a_generator_config_of_autodecoder_5_is_one_line(folders, tmp_path, capsys):
    import shutil

    run = shutil.copytree(folders / "od", tmp_path / "od")
    cfg = run / "model" / "config.json"
    cfg.write_text(json.dumps({**json.loads(cfg.read_text()), "autodecoder": 5}))
    err = _one_line_error(["object", "a red cube", "--model", str(run / "model"), "--out", str(tmp_path / "o"),
                           "--device", "cpu"], capsys)  # fmt: skip
    assert f"{cfg}: 'autodecoder' must be a JSON object, got 5" in err, err
    cfg.write_text('{"autodecoder": 5}')  # not a generator at all
    assert "holds no latent3d model, not a 'latent3d object generator'" in _one_line_error(
        ["object", "a red cube", "--model", str(run / "model"), "--out", str(tmp_path / "o")], capsys)  # fmt: skip


def test_latents_whose_object_ids_are_5_are_one_line(folders, tmp_path, capsys):
    import shutil

    from safetensors import safe_open

    run = shutil.copytree(folders / "ad", tmp_path / "ad")
    path = run / "latents.safetensors"
    with safe_open(str(path), "pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    save_tensors(tensors, path, {**meta, "object_ids": "5"})
    with pytest.raises(UserError, match="'object_ids' must be a list of strings, got 5"):
        read_latents(run)
    err = _one_line_error(["train", "object-diffusion", "--autodecoder", str(run), "--out", str(tmp_path / "r"),
                           "--steps", "1", "--device", "cpu"], capsys)  # fmt: skip
    assert f"{path}: 'object_ids' must be a list of strings, got 5" in err, err


def test_saved_metadata_keys_are_sorted_whatever_their_order(tmp_path):
    """safetensors keeps metadata in a Rust hash map (another order in every process): the writer sorts it."""
    from safetensors import safe_open

    t = {"b": torch.arange(3.0), "a": torch.zeros(2, 2, dtype=torch.float16)}
    save_tensors(t, tmp_path / "x.safetensors", {k: k.upper() for k in "qwertyuiop"})
    save_tensors(t, tmp_path / "y.safetensors", {k: k.upper() for k in "poiuytrewq"})
    data = (tmp_path / "x.safetensors").read_bytes()
    assert data == (tmp_path / "y.safetensors").read_bytes()
    n = int.from_bytes(data[:8], "little")
    assert list(json.loads(data[8:8 + n])["__metadata__"]) == sorted("qwertyuiop") and (8 + n) % 8 == 0
    with safe_open(str(tmp_path / "x.safetensors"), "pt") as f:
        assert f.metadata()["q"] == "Q" and all(torch.equal(f.get_tensor(k), v) for k, v in t.items())
