"""Training faults: `train prior` killed with SIGKILL and resumed ends byte for byte where the uninterrupted run ends
(so do LDM3D stage 2 and both 3DVADER train commands), a damaged newest checkpoint falls back to the one before (one
warning line), a resume with other settings is refused (one line, nothing written), and the trainer restores every
piece of its state (metrics window included)."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from latent3d.errors import UserError
from latent3d.train.checkpoint import list_checkpoints
from latent3d.train.trainer import TrainConfig, changed_settings, run_config, train

SCRIPTS = Path(__file__).parent / "scripts"
sys.path.insert(0, str(SCRIPTS))
from prior_train import tiny_config  # noqa: E402

TENSORS = ("model", "ema", "optimizer")


def _prior(out: Path, *args) -> subprocess.Popen:
    cmd = [sys.executable, str(SCRIPTS / "prior_train.py"), "--out", str(out), *map(str, args)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen) -> tuple[int, str]:
    _, err = proc.communicate(timeout=300)
    return proc.returncode, err


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """An uninterrupted 20-step run (renders its data) and one SIGKILLed before its step-15 checkpoint (steps 11-15
    are lost; checkpoints 5 and 10 and the data cache remain), run side by side."""
    root = tmp_path_factory.mktemp("prior")
    ref, killed = _prior(root / "ref"), _prior(root / "killed", "--kill-before-checkpoint", 15)
    rc, err = _finish(ref)
    assert rc == 0, err
    assert _finish(killed)[0] == -9
    assert [p.name for p in list_checkpoints(root / "killed" / "checkpoints")] == ["step_00000005", "step_00000010"]
    return root


def _copy_killed(runs: Path, dst: Path) -> Path:
    shutil.copytree(runs / "killed", dst)
    return dst


def _log(out: Path) -> list[dict]:
    """metrics.jsonl without the wall clock."""
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(ln).items() if k != "wall_s"} for ln in lines]


def _assert_same_final_bytes(out: Path, ref: Path) -> None:
    for name in TENSORS:
        a, b = (d / "checkpoints" / "step_00000020" / f"{name}.safetensors" for d in (out, ref))
        assert a.read_bytes() == b.read_bytes(), name
    assert (out / "model" / "unet" / "diffusion_pytorch_model.safetensors").read_bytes() == (
        ref / "model" / "unet" / "diffusion_pytorch_model.safetensors").read_bytes()  # fmt: skip
    assert _log(out) == _log(ref) and [r["step"] for r in _log(ref)] == [10, 20]


@pytest.mark.numerics
def test_train_prior_sigkill_and_resume_is_bytewise(runs, tmp_path):
    """The resumed run reads its renders from the cache while the reference trained on freshly rendered ones: the
    same values in another memory layout once took other convolution kernels and drifted in the 8th digit. The kill
    falls inside the warm-up, so the schedule, AdamW, the EMA and the per-step streams must all be restored too."""
    out = _copy_killed(runs, tmp_path / "run")
    rc, err = _finish(_prior(out, "--resume"))
    assert rc == 0, err
    _assert_same_final_bytes(out, runs / "ref")


@pytest.mark.numerics
def test_truncated_newest_checkpoint_falls_back_to_the_previous_one(runs, tmp_path):
    out = _copy_killed(runs, tmp_path / "run")
    model = out / "checkpoints" / "step_00000010" / "model.safetensors"
    model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])
    rc, err = _finish(_prior(out, "--resume"))
    assert rc == 0, err
    assert "Traceback" not in err
    said = [ln for ln in err.splitlines() if "unusable" in ln]
    assert len(said) == 1 and said[0].startswith("latent3d: warning: checkpoint step_00000010")
    assert "truncated" in said[0] and said[0].endswith("resuming from step_00000005")
    assert (out / "checkpoints" / ".unusable-step_00000010").is_dir()  # set aside, not deleted, not counted
    # it trained again from step 5 (the metrics of steps 1-5 came back from the checkpoint into the window of row
    # 10) and still ends on the uninterrupted bytes
    _assert_same_final_bytes(out, runs / "ref")


def test_resume_with_other_settings_is_refused_before_anything_is_written(runs, tmp_path):
    from latent3d.priors.object_prior.train import train_object_prior

    out = _copy_killed(runs, tmp_path / "run")
    before = {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    for change, named in (({"batch_size": 4}, "prior.batch_size 8 -> 4"), ({"views": 5}, "prior.views 4 -> 5"),
                          ({"lr": 2e-3, "steps": 30}, "lr 0.001 -> 0.002; prior.lr 0.001 -> 0.002")):  # fmt: skip
        with pytest.raises(UserError) as e:
            train_object_prior(out, tiny_config(**change), device="cpu", resume=True, progress=False,
                               checkpoint_every=5)  # fmt: skip
        msg = str(e.value)
        assert "\n" not in msg and f"({named})" in msg and "steps" not in msg.split(")")[0], msg
    # refused before the data was rendered again (--views changes the data key) or config.json was rewritten
    assert {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()} == before


# --------------------------------------------------------------------------- the trainer itself, on a toy model
class Stop(Exception):
    pass


def _toy(tmp_path, stop_at=None, **kw):
    """A 12-step toy run: checkpoints every 5, metrics every 4 (so a checkpoint falls inside a metrics window)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))

    def batch_fn(step, g):
        if step == stop_at:
            raise Stop  # a crash: no checkpoint is written for the steps since the last one
        x = torch.randn(16, 3, generator=g)
        return x, x.sum(1, keepdim=True)

    def loss_fn(m, batch, g):
        x, y = batch
        return (m(x) - y).pow(2).mean()

    cfg = dict(out_dir=tmp_path, steps=12, lr=1e-2, warmup_steps=8, ema_decay=0.8, ckpt_every=5, log_every=4,
               device="cpu", progress=False, extra={"model": {"width": 8}})  # fmt: skip
    return train(model, batch_fn, loss_fn, TrainConfig(**{**cfg, **kw})), model


@pytest.mark.numerics
def test_toy_resume_restores_the_partial_metrics_window(tmp_path):
    _, ref = _toy(tmp_path / "ref")
    with pytest.raises(Stop):
        _toy(tmp_path / "run", stop_at=7)  # checkpoint 5 holds step 4's metrics (the window of row 8)
    res, model = _toy(tmp_path / "run", resume=True)
    assert res.resumed_from == 5
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), ref.state_dict().values()))
    assert _log(tmp_path / "run") == _log(tmp_path / "ref")  # row 8 averages steps 5-8, not only 6-8


def test_no_intact_checkpoint_is_one_user_error(tmp_path):
    _toy(tmp_path, steps=10)
    for ck in list_checkpoints(tmp_path / "checkpoints"):
        (ck / "model.safetensors").write_bytes(b"")
    with pytest.raises(UserError, match="no intact checkpoint") as e:
        _toy(tmp_path, resume=True)
    assert "\n" not in str(e.value) and "step_00000005 (" in str(e.value) and "step_00000010 (" in str(e.value)


def test_damaged_bytes_of_the_same_size_are_recognised(tmp_path, capsys):
    _toy(tmp_path, steps=10)
    opt = tmp_path / "checkpoints" / "step_00000010" / "optimizer.safetensors"
    data = bytearray(opt.read_bytes())
    data[-3] ^= 0x40  # inside a tensor: safetensors itself would read it without complaint
    opt.write_bytes(bytes(data))
    res, _ = _toy(tmp_path, resume=True)
    assert res.resumed_from == 5 and res.step == 12
    assert "optimizer.safetensors is damaged" in capsys.readouterr().err


def test_resume_may_extend_steps_but_not_change_the_model_description(tmp_path):
    _toy(tmp_path, steps=10)
    config = (tmp_path / "config.json").read_bytes()
    with pytest.raises(UserError, match=r"\(model\.width 8 -> 16\)"):
        _toy(tmp_path, resume=True, extra={"model": {"width": 16}})
    with pytest.raises(UserError, match=r"\(warmup_steps 8 -> 4; seed 0 -> 1\)"):
        _toy(tmp_path, resume=True, seed=1, warmup_steps=4)
    assert (tmp_path / "config.json").read_bytes() == config
    res, _ = _toy(tmp_path, resume=True, steps=12, ckpt_every=3, log_every=2)  # may change: how long, how often
    assert res.resumed_from == 10 and res.step == 12


def test_changed_settings_compares_nested_extra_and_process_count():
    now = run_config(TrainConfig(out_dir=Path("a"), steps=10, extra={"prior": {"steps": 10, "views": 4}}), 1)
    later = run_config(TrainConfig(out_dir=Path("b"), steps=20, device="cuda",
                                   extra={"prior": {"steps": 20, "views": 4}}), 1)  # fmt: skip
    assert changed_settings(now, later) == []
    more = run_config(TrainConfig(out_dir=Path("a"), steps=10, extra={"prior": {"steps": 10, "views": 8}}), 2)
    assert changed_settings(now, more) == ["prior.views 4 -> 8", "num_processes 1 -> 2"]


@pytest.mark.parametrize("field, flag", [("ckpt_every", "--checkpoint-every"),
                                         ("keep_checkpoints", "--keep-checkpoints")])  # fmt: skip
def test_checkpoint_settings_are_checked(tmp_path, field, flag):
    with pytest.raises(UserError, match=f"^{flag} must be >= "):
        _toy(tmp_path, **{field: 0})
    assert not tmp_path.joinpath("config.json").exists()


# ----------------------------------------------------------------------------------------------------- LDM3D
def test_rgbd_training_set_is_the_same_rendered_or_read_from_its_cache(tmp_path):
    """The set a run renders (and caches) and the set its resume reads back are the same floats: the 16-bit
    disparity is quantised as the PNG writer does (a float64 product put some pixels one level off)."""
    from latent3d.systems.ldm3d.train import RGBDLDMConfig, training_set

    cfg = RGBDLDMConfig(n_images=5, height=16, kinds=("floor",), seed=1)
    fresh = training_set(cfg, tmp_path)
    assert (tmp_path / "data" / "rgbd.json").is_file()
    cached = training_set(cfg, tmp_path)
    assert torch.equal(fresh.rgb, cached.rgb) and torch.equal(fresh.disparity, cached.disparity)


@pytest.mark.numerics
def test_ldm3d_stage2_resume_is_bytewise(tmp_path):
    """Stage 2 renders its own set (other images than stage 1's), is stopped at its step-4 checkpoint and resumed
    (reading the cache) to step 8: the same bytes as the uninterrupted 8-step run."""
    from latent3d.nets.rgbd_vae import AELossConfig
    from latent3d.systems.ldm3d.train import RGBDLDMConfig, RGBDVAEConfig, train_rgbd, train_rgbd_vae

    data = dict(height=16, kinds=("floor",), seed=1)
    loss = AELossConfig(disc_start=100, disc_channels=8, disc_layers=1)
    train_rgbd_vae(tmp_path / "ae", RGBDVAEConfig(**data, n_images=2, block_out_channels=(8, 16), loss=loss, steps=1,
                                                  batch_size=2), device="cpu", progress=False)  # fmt: skip
    ldm = dict(**data, n_images=5, vae=str(tmp_path / "ae"), block_out_channels=(16, 32),
               attention_levels=(False, True), text_dim=32, warmup_steps=6, ema_decay=0.5, batch_size=4)  # fmt: skip
    for out, steps, resume in (("ref", 8, False), ("run", 4, False), ("run", 8, True)):
        train_rgbd(tmp_path / out, RGBDLDMConfig(**ldm, steps=steps), device="cpu", resume=resume, progress=False,
                   checkpoint_every=4)  # fmt: skip
    for name in TENSORS:
        a, b = (tmp_path / d / "checkpoints" / "step_00000008" / f"{name}.safetensors" for d in ("run", "ref"))
        assert a.read_bytes() == b.read_bytes(), name


# ----------------------------------------------------------------------------------------------------- 3DVADER
class _Killed(BaseException):
    """Stands in for SIGKILL inside the test process: no ``except Exception`` (nor the trainer's KeyboardInterrupt
    handler, which saves a checkpoint) sees it, so the steps since the last checkpoint are lost, as in a crash."""


def _kill_before_checkpoint(monkeypatch, step: int) -> None:
    import latent3d.train.trainer as trainer

    save = trainer.save_checkpoint

    def save_or_die(root, at, *args, **kw):
        if at == step:
            raise _Killed
        return save(root, at, *args, **kw)

    monkeypatch.setattr(trainer, "save_checkpoint", save_or_die)


@pytest.mark.numerics
def test_3dvader_train_commands_killed_and_resumed_end_on_the_same_bytes(tmp_path, monkeypatch):
    """`train autodecoder` and `train object-diffusion` (8 steps, checkpoints at 3 and 6), each killed before its
    step-6 checkpoint (steps 4-5 lost) and resumed: the weights, latents, generator and metrics of the uninterrupted
    runs, byte for byte (the object-diffusion runs both learn the uninterrupted autodecoder's latents)."""
    from test_autodecoder import _dataset, _tiny

    from latent3d.systems.autodecoder.config import ObjectDiffusionConfig
    from latent3d.systems.autodecoder.stage2.train import train_object_diffusion
    from latent3d.systems.autodecoder.stage1.train import train_autodecoder

    data = _dataset(tmp_path)
    od_cfg = ObjectDiffusionConfig(model_channels=8, blocks=1, attention=(4,), head_channels=8, steps=8, batch_size=4,
                                   ema_decay=0.5)  # fmt: skip
    runs = {  # each run's command with resume on or off
        "ad": lambda out, resume: train_autodecoder(data, out, _tiny(8), device="cpu", resume=resume, progress=False,
                                                    checkpoint_every=3),  # fmt: skip
        "od": lambda out, resume: train_object_diffusion(tmp_path / "ref" / "ad", out, od_cfg, device="cpu",
                                                         resume=resume, progress=False, checkpoint_every=3),
    }  # fmt: skip
    for name, run in runs.items():
        run(tmp_path / "ref" / name, False)
        with monkeypatch.context() as m:
            _kill_before_checkpoint(m, 6)
            with pytest.raises(_Killed):
                run(tmp_path / "run" / name, False)
        assert [p.name for p in list_checkpoints(tmp_path / "run" / name / "checkpoints")] == ["step_00000003"]
        run(tmp_path / "run" / name, True)
    same = ["ad/model/model.safetensors", "ad/latents.safetensors", "od/model/model.safetensors",
            "od/checkpoints/step_00000008/ema.safetensors",
            *(f"{n}/checkpoints/step_00000008/{t}.safetensors" for n in runs for t in ("model", "optimizer"))]
    for rel in same:
        assert (tmp_path / "run" / rel).read_bytes() == (tmp_path / "ref" / rel).read_bytes(), rel
    for name in runs:
        assert _log(tmp_path / "run" / name) == _log(tmp_path / "ref" / name)
    scores = [json.loads((tmp_path / d / "ad" / "eval.json").read_text())["mean"] for d in ("run", "ref")]
    assert scores[0] == scores[1]
