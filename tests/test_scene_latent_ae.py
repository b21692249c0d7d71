"""NF-LDM's latent voxel auto-encoder (`latent3d train scene-latent-ae`) and the vector quantiser under it
(``nets/vq.py``): the straight-through gradient is the identity's, the loss is VQ-VAE eq. 3 (beta on the commitment
term; diffusers' ``legacy=False`` quantiser as a twin), the nearest code is the brute-force one, a dead code restarts
at an encoder output, usage and perplexity in closed form; the decoder's output depends on g (through its
conditional group norms); the voxel loss weighs density 2.5x; a tiny end-to-end run learns (voxel error far below
the untrained net's), its latents decode to what eval.json measured, and bad input is one line before training."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch
from typer.testing import CliRunner

from conftest import LATENT_AE_ARGS
from latent3d.cli import app
from latent3d.errors import UserError
from latent3d.nets.vq import VectorQuantizer, codebook_usage
from latent3d.systems.nfldm.config import SceneLatentAEConfig
from latent3d.systems.nfldm.latent_ae import SceneLatentAutoencoder, fold_z, unfold_z
from latent3d.systems.nfldm.train_latent_ae import (encode_all, latent_ae_loss, load_scene_latent_ae,
                                                    read_scene_latents, scene_grids, voxel_errors)  # fmt: skip

TINY = dict(width=16, global_dim=8, codebook_coarse=32, codebook_fine=16, batch_size=2)
TINY_ARGS = LATENT_AE_ARGS


# ------------------------------------------------------------------------------------------------- VQ
def _vq(num_codes=8, dim=3, **kw) -> VectorQuantizer:
    torch.manual_seed(0)
    vq = VectorQuantizer(num_codes, dim, **kw).double()
    vq.codebook.data.normal_()
    return vq


def test_straight_through_gradient_is_the_identity():
    """d f(z_q) / dz = f'(z_q): the quantiser passes the upstream gradient unchanged (VQ-VAE Sec. 3.2)."""
    vq = _vq().eval()
    z = torch.randn(2, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    q = vq(z)
    torch.testing.assert_close(q.z_q, vq.codebook[q.indices].movedim(-1, 1))  # the value is the code's
    (torch.sin(q.z_q) * w).sum().backward()
    torch.testing.assert_close(z.grad, torch.cos(q.z_q.detach()) * w)


def test_loss_is_codebook_plus_beta_commitment():
    """VQ-VAE eq. 3: ``||sg[z] - e||^2 + beta ||z - sg[e]||^2``: the codes move by the first term alone, the
    encoder by beta x the second (diffusers' legacy=True puts beta on the codebook term)."""
    vq = _vq(beta=0.25).eval()
    z = torch.randn(2, 3, 6, dtype=torch.float64, requires_grad=True)
    q = vq(z)
    e = vq.codebook[q.indices].movedim(-1, 1).detach()
    n = z.numel()
    torch.testing.assert_close(q.loss, 1.25 * (z - e).pow(2).mean())
    q.loss.backward()
    torch.testing.assert_close(z.grad, 0.25 * 2 * (z - e).detach() / n)
    want = torch.zeros_like(vq.codebook).index_add_(0, q.indices.reshape(-1),
                                                    (2 * (e - z) / n).detach().movedim(1, -1).reshape(-1, 3))
    torch.testing.assert_close(vq.codebook.grad, want)


def test_diffusers_vector_quantizer_is_a_twin():
    pytest.importorskip("diffusers")
    from diffusers.models.autoencoders.vae import VectorQuantizer as DiffusersVQ

    vq = _vq(num_codes=16, dim=4, beta=0.25).float().eval()
    twin = DiffusersVQ(16, 4, beta=0.25, legacy=False)
    twin.embedding.weight.data.copy_(vq.codebook.data)
    z = torch.randn(2, 4, 5, 6)
    q = vq(z)
    z_q, loss, (_, _, idx) = twin(z)
    torch.testing.assert_close(q.z_q, z_q)
    torch.testing.assert_close(q.loss, loss)
    assert torch.equal(q.indices.reshape(-1), idx.reshape(-1))


def test_the_nearest_code_is_chosen():
    """Against a brute-force search, for a 3-D latent ([B, C, X, Y, Z], like NF-LDM's c)."""
    vq = _vq(num_codes=17, dim=3).eval()
    z = torch.randn(2, 3, 3, 4, 5, dtype=torch.float64)
    idx = vq(z).indices
    assert idx.shape == (2, 3, 4, 5)
    for b, i, j, k in torch.cartesian_prod(*(torch.arange(s) for s in idx.shape)).tolist():
        d = [float(((z[b, :, i, j, k] - code) ** 2).sum()) for code in vq.codebook.detach()]
        assert idx[b, i, j, k] == min(range(len(d)), key=d.__getitem__)


def test_a_dead_code_restarts_at_an_encoder_output():
    vq = VectorQuantizer(4, 2, restart_after=3)
    vq.codebook.data = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [100.0, 100.0]])
    vq.unused_steps.zero_()
    z = torch.tensor([[[0.1, 0.9, 0.0, 0.2], [0.0, 0.1, 0.8, 0.1]]])  # [1, 2, 4]: near codes 0, 1, 2
    vq.eval()
    for _ in range(5):  # no restart outside training
        vq(z)
    assert vq.unused_steps.tolist() == [0, 0, 0, 0] and vq.codebook[3].tolist() == [100.0, 100.0]
    vq.train()
    for _ in range(2):
        vq(z, torch.Generator().manual_seed(0))
    assert vq.unused_steps.tolist() == [0, 0, 0, 2] and vq.codebook[3].tolist() == [100.0, 100.0]
    vq(z, torch.Generator().manual_seed(0))
    outputs = z[0].T.tolist()
    assert vq.codebook[3].tolist() in outputs and vq.unused_steps[3] == 0
    # a fresh quantiser: the first training batch puts every code it leaves unchosen at encoder outputs
    fresh = VectorQuantizer(16, 2, restart_after=50).train()
    fresh(z * 10, torch.Generator().manual_seed(1))
    restarted = [code in (z[0].T * 10).tolist() for code in fresh.codebook.tolist()]
    assert sum(restarted) >= 16 - 4  # the 4 vectors chose at most 4 codes; the others keep their initial values
    assert all(r or max(map(abs, code)) <= 1 / 16 for r, code in zip(restarted, fresh.codebook.tolist()))


def test_snap_is_the_nearest_code_without_a_restart():
    """snap (for generated latents): the codes and indices the quantiser chooses, no gradient, and in training mode
    no dead-code restart (forward would restart the unchosen codes)."""
    vq = _vq(num_codes=9, dim=3).train()
    before, counters = vq.codebook.detach().clone(), vq.unused_steps.clone()
    z = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    codes, idx = vq.snap(z)
    assert torch.equal(vq.codebook.detach(), before) and torch.equal(vq.unused_steps, counters)
    q = vq.eval()(z)
    assert torch.equal(idx, q.indices) and not codes.requires_grad
    assert torch.equal(codes, vq.lookup(idx).detach()) and len(set(idx.reshape(-1).tolist())) > 1
    torch.testing.assert_close(codes, q.z_q.detach())


def test_usage_and_perplexity_in_closed_form():
    assert codebook_usage(torch.tensor([0, 0, 1, 1]), 4) == pytest.approx({"usage": 0.5, "perplexity": 2.0})
    p = torch.tensor([0.75, 0.25])
    u = codebook_usage(torch.tensor([[3, 3], [3, 5]]), 8)
    assert u == pytest.approx({"usage": 2 / 8, "perplexity": math.exp(float(-(p * p.log()).sum()))})
    assert codebook_usage(torch.arange(6), 6)["perplexity"] == pytest.approx(6.0)


# ------------------------------------------------------------------------------------------ latent AE
def test_folding_the_vertical_axis():
    grid = torch.randn(2, 3, 4, 5, 6)
    folded = fold_z(grid)
    assert folded.shape == (2, 18, 4, 5)
    assert torch.equal(folded[1, 2 * 6 + 4, 3, 1], grid[1, 2, 3, 1, 4])  # channel k * Z + z
    assert torch.equal(unfold_z(folded, 6), grid)


def _model(**kw) -> SceneLatentAutoencoder:
    torch.manual_seed(0)
    return SceneLatentAutoencoder(SceneLatentAEConfig(**{**TINY, **kw}), 5, (8, 8, 4)).eval()


def test_the_decoder_is_conditioned_on_g():
    """g enters only through the decoder's conditional group norms: with their second convolutions (zero at
    initialisation) given weights, another g gives another grid, and the gradient reaches g."""
    model = _model()
    for name, p in model.decoder.named_parameters():
        if "conv2" in name:
            torch.nn.init.normal_(p, std=0.2)
    g = torch.randn(2, 8, requires_grad=True)
    c = torch.randn(2, 4, 2, 2, 2)
    f = torch.randn(2, 4, 8, 8)
    out = model.decode(g, c, f)
    assert out.shape == (2, 5, 8, 8, 4)
    other = model.decode(g.detach() + torch.randn(2, 8), c, f)
    assert float((out - other).detach().abs().mean()) > 0.05 * float(out.detach().abs().mean())
    out.pow(2).sum().backward()
    assert float(g.grad.abs().min()) > 0


def test_normalisation_is_measured_and_inverted():
    model = _model()
    torch.manual_seed(1)
    grids = torch.randn(3, 5, 8, 8, 4)
    grids[:, -1] = torch.rand(3, 8, 8, 4).pow(4) * 1e-3 * (torch.rand(3, 8, 8, 4) > 0.5)  # small, half empty
    model.set_statistics(grids)
    d = grids[:, -1]
    assert float(model.density_ref) == pytest.approx(float(d[d > 0].mean()), rel=1e-5)
    x = model.normalise(grids)
    torch.testing.assert_close(x.transpose(0, 1).reshape(5, -1).mean(1), torch.zeros(5), atol=1e-5, rtol=0)
    torch.testing.assert_close(x.transpose(0, 1).reshape(5, -1).std(1), torch.ones(5), atol=1e-4, rtol=0)
    torch.testing.assert_close(model.denormalise(x), grids, atol=1e-6, rtol=1e-4)


def test_the_voxel_loss_weighs_density():
    """loss = features MSE + density_weight x density MSE (+ VQ + KL terms): the paper's 2.5x density weight."""
    torch.manual_seed(2)
    x = torch.randn(2, 5, 8, 8, 4)
    for w in (2.5, 0.0):
        model = _model(density_weight=w, image_weight=0.0, kl_weight=0.0)
        out = latent_ae_loss(model, None, x, [], [], model.cfg)
        rec = model(x)[0]
        feat, dens = (rec - x).pow(2)[:, :-1].mean(), (rec - x).pow(2)[:, -1].mean()
        torch.testing.assert_close(out["voxel"], (feat + w * dens).detach())
        torch.testing.assert_close(out["loss"].detach(), (feat + w * dens + out["vq"]).detach())


# ----------------------------------------------------------------------------------------- end to end
@pytest.mark.numerics
def test_training_learns_and_the_latents_decode(scene_ae_run, tmp_path):
    from latent3d.systems.nfldm.episodes import read_episodes
    from latent3d.systems.nfldm.train_scene_ae import load_scene_ae

    run = tmp_path / "lae"
    res = CliRunner().invoke(app, ["train", "scene-latent-ae", "--scene-ae", str(scene_ae_run), "--out", str(run),
                                   "--steps", "150", *TINY_ARGS])  # fmt: skip
    assert res.exit_code == 0, res.output
    report = json.loads((run / "eval.json").read_text())
    scene_ae = load_scene_ae(scene_ae_run)
    eps = read_episodes(json.loads((scene_ae_run / "run.json").read_text())["data"], scene_ae.cfg)
    grids = scene_grids(scene_ae, eps, torch.device("cpu"))
    torch.manual_seed(0)
    untrained = SceneLatentAutoencoder(SceneLatentAEConfig(**TINY), grids.shape[1], (16, 16, 4)).eval()
    untrained.set_statistics(grids)
    x = untrained.normalise(grids)
    feat, dens = voxel_errors(encode_all(untrained, x)[1], x)
    before = float((feat + 2.5 * dens).mean())
    assert report["mean"]["voxel_mse"] < 0.1 * before, (report["mean"], before)  # 0.07 vs 3.7 here
    # the saved latents decode, by vectors or by code indices, to the grids eval.json measured
    model = load_scene_latent_ae(run)
    lat, names = read_scene_latents(run)
    assert names == [ep.name for ep in eps]
    with torch.no_grad():
        rec = model.decode(lat["g"], lat["c"], lat["f"])
        torch.testing.assert_close(model.decode_indices(lat["g"], lat["c_indices"], lat["f_indices"]), rec)
    feat, dens = voxel_errors(rec, model.normalise(grids))
    for i, ep in enumerate(eps):
        assert float(feat[i] + 2.5 * dens[i]) == pytest.approx(report["episodes"][ep.name]["voxel_mse"], rel=1e-4)
    assert lat["c"].shape == (2, 4, 4, 4, 2) and lat["f"].shape == (2, 4, 16, 16) and lat["g"].shape == (2, 8)
    for name, codes in (("coarse", 32), ("fine", 16)):
        cb = report["codebooks"][name]
        assert 0 < cb["usage"] <= 1 and 1 <= cb["perplexity"] <= codes and cb["codes"] == codes
    psnrs = {f"{s}_psnr_{k}" for s in ("train", "held") for k in ("decoded", "original", "decoded_vs_original")}
    assert psnrs <= set(report["mean"])
    assert "latent3d train scene-latent-ae" in (run / "model" / "MODEL_CARD.md").read_text()


def _invoke(args):
    res = CliRunner().invoke(app, args)  # a UserError leaves CliRunner as the exception (main() prints it, exit 2)
    assert isinstance(res.exception, UserError) or res.exit_code == 2, res.output
    return str(res.exception) + res.output


def test_bad_input_is_one_line_before_training(scene_ae_run, tmp_path):
    out = tmp_path / "out"
    cmd = ["train", "scene-latent-ae", "--out", str(out)]
    assert "not a saved latent3d scene autoencoder" in _invoke([*cmd, "--scene-ae", str(tmp_path)])
    foreign = tmp_path / "foreign" / "model"
    foreign.mkdir(parents=True)
    (foreign / "config.json").write_text(json.dumps({"latent3d": {"kind": "latent3d autodecoder", "format": 1}}))
    (foreign / "model.safetensors").write_bytes(b"")
    assert "not a 'latent3d scene autoencoder'" in _invoke([*cmd, "--scene-ae", str(foreign.parent)])
    assert "is not a folder" in _invoke([*cmd, "--scene-ae", str(scene_ae_run), "--data", str(tmp_path / "none")])
    assert "no episode folders" in _invoke([*cmd, "--scene-ae", str(scene_ae_run), "--data", str(tmp_path)])
    assert "does not divide the scene grid's X x Y 16x16" in _invoke([*cmd, "--scene-ae", str(scene_ae_run),
                                                                       "--downsample", "32"])  # fmt: skip
    assert "give a power of two" in _invoke([*cmd, "--scene-ae", str(scene_ae_run), "--downsample-z", "3"])
    moved = tmp_path / "moved"  # a scene auto-encoder run whose data folder is gone
    shutil.copytree(scene_ae_run / "model", moved / "model")
    (moved / "run.json").write_text(json.dumps({"command": None, "data": str(tmp_path / "gone")}))
    assert "not a folder any more" in _invoke([*cmd, "--scene-ae", str(moved)])
    assert not out.exists()
    with pytest.raises(UserError, match="not a 'latent3d scene latent autoencoder'"):
        load_scene_latent_ae(scene_ae_run)
