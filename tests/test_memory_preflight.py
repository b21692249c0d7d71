"""One memory preflight (issue 30): settings whose estimate cannot fit are refused from the options, before any
work, with the estimate (one line, exit 2, nothing written); an allocator failure that still happens is one line
too. The estimates' calibration against measured peaks is benchmarks/memory_preflight.py."""

from __future__ import annotations

import json

import pytest

from latent3d.cli import main
from latent3d.memory import available_bytes, meta_params


def _fake_autodecoder_run(tmp_path):
    """What `train object-diffusion` checks before it reads anything: latents.safetensors and model/config.json."""
    run = tmp_path / "ad"
    (run / "model").mkdir(parents=True)
    (run / "latents.safetensors").write_bytes(b"")
    (run / "model" / "config.json").write_text(json.dumps({"autodecoder": {"latent_channels": 64}}))
    return run


CASES = [  # the command lines that reached the allocator, and the hang of `object`
    ("data_objects_4096_100000", lambda t: ["data", "objects", "--size", "4096", "--views", "100000"]),
    ("data_objects_4096_64", lambda t: ["data", "objects", "--size", "4096", "--views", "64"]),
    ("object_hang", lambda t: ["object", "a red chair", "--n", "256", "--size", "2048", "--steps", "1", "--views", "360",
                               "--frames", "2000"]),
    ("autodecoder_rays", lambda t: ["train", "autodecoder", "--data", str(t), "--patch", "512", "--samples", "1024"]),
    ("autodecoder_widths", lambda t: ["train", "autodecoder", "--data", str(t), "--widths", "1024,1024,1024",
                                      "--attention", "8,16,32,64"]),
    ("object_diffusion_batch", lambda t: ["train", "object-diffusion", "--autodecoder", str(_fake_autodecoder_run(t)),
                                          "--batch-size", "4096", "--model-channels", "1024"]),
]  # fmt: skip


@pytest.mark.parametrize("name, build", CASES, ids=[c[0] for c in CASES])
def test_settings_that_cannot_fit_are_refused_with_the_estimate(name, build, tmp_path, capsys):
    out = tmp_path / "out"
    assert main([*build(tmp_path), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "GB free" in err[0] and "needs ~" in err[0], err
    need = float(err[0].split("needs ~")[1].split(" GB")[0].replace(",", ""))
    assert need * 1e9 > available_bytes()
    assert not out.exists()


def test_an_allocator_failure_anywhere_is_one_line(tmp_path, capsys, monkeypatch):
    import latent3d.data.procedural.object_sets as mv

    def alloc(*a, **k):
        import torch

        return torch.empty(2**62, dtype=torch.uint8)  # what the allocator cannot give

    monkeypatch.setattr(mv, "write_multiview_dataset", alloc)
    assert main(["data", "objects", "--out", str(tmp_path / "o"), "--n-objects", "1", "--views", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"latent3d: error: out of memory (tried to allocate {2**62} bytes); lower the sizes or counts of "
                   "the options, or free memory"]  # fmt: skip


def test_other_runtime_errors_are_not_taken_for_memory(tmp_path, monkeypatch):
    import latent3d.data.procedural.object_sets as mv

    monkeypatch.setattr(mv, "write_multiview_dataset", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("a bug")))
    with pytest.raises(RuntimeError, match="a bug"):  # a bug keeps its traceback
        main(["data", "objects", "--out", str(tmp_path / "o"), "--n-objects", "1", "--views", "1"])


def test_parameters_counted_on_the_meta_device_are_the_real_ones():
    from latent3d.systems.autodecoder.config import AutodecoderConfig, ObjectDiffusionConfig
    from latent3d.systems.autodecoder.stage2.denoiser import build_unet
    from latent3d.systems.autodecoder.stage1.train import AutodecoderModel

    cfg, ocfg = AutodecoderConfig(widths=(16,), latent_channels=8), ObjectDiffusionConfig(model_channels=16)
    for build in (lambda: AutodecoderModel(3, 5, cfg), lambda: build_unet(ocfg, 8, 64)):
        assert meta_params(build) == sum(p.numel() for p in build().parameters())


def test_immersive_and_dream_are_preflighted(tmp_path, capsys, tiny_sd_dir, monkeypatch):
    out = tmp_path / "out"
    argv = ["immersive", "a beach", "--out", str(out), "--resolution", "4096", "--stereo-width", "16384",
            "--tour-seconds", "600"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "this world needs ~" in err[0], err
    import latent3d.memory as memory

    side = 16 * 2  # tiny_sd_dir: a UNet of sample_size 16 under a 2-level VAE
    need = 2 * memory.estimate_sampling_bytes(tiny_sd_dir, side, side, 8)
    monkeypatch.setattr(memory, "available_bytes", lambda: need - 1)  # a machine where 8 views just do not fit
    argv = ["dream", "a red snowman", "--out", str(out), "--prior", str(tiny_sd_dir), "--views", "8"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--views 8 at 32x32 needs ~" in err[0] and "lower --views" in err[0], err
    monkeypatch.setattr(memory, "available_bytes", lambda: need)
    memory.check_dream_fits(str(tiny_sd_dir), 8)  # fits: returns
    assert not out.exists()
