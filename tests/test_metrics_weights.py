"""Saved measuring nets: safetensors + config.json round trip exactly; a folder that is not one, or holds another
kind, is a one-line UserError."""

import json

import pytest
import torch
from safetensors.torch import load_file

from latent3d.errors import UserError
from latent3d.metrics.weights import load_metric_model, save_metric_model


def test_metric_model_round_trips_through_safetensors_and_json(tmp_path):
    g = torch.Generator().manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.GroupNorm(2, 4))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    folder = save_metric_model(tmp_path / "m", net, {"width": 4, "note": "x"}, "toy-net")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    assert json.loads((folder / "config.json").read_text()) == {"latent3d": {"kind": "toy-net", "format": 1}, "width": 4,
                                                                 "note": "x"}
    assert load_file(str(folder / "model.safetensors")).keys() == net.state_dict().keys()  # plain tensors, no pickle
    seen = []

    def build(cfg):
        seen.append(cfg)
        return torch.nn.Sequential(torch.nn.Linear(3, cfg["width"]), torch.nn.GroupNorm(2, cfg["width"])).train()

    back = load_metric_model(folder, "toy-net", build)
    assert seen == [{"width": 4, "note": "x"}] and not back.training
    for (k, a), b in zip(net.state_dict().items(), back.state_dict().values()):
        assert torch.equal(a, b), k
    with pytest.raises(UserError, match="holds a 'toy-net', not a 'other-net'; train the other-net again"):
        load_metric_model(folder, "other-net", build)
    (folder / "model.safetensors").unlink()
    with pytest.raises(UserError, match=r"is not a saved toy-net \(config.json \+ model.safetensors expected\)"):
        load_metric_model(folder, "toy-net", build)
    with pytest.raises(UserError, match="is not a saved toy-net"):
        load_metric_model(tmp_path / "missing", "toy-net", build)


def test_a_folder_of_another_program_or_a_newer_format_is_one_line(tmp_path):
    """The one model-folder format: config.json without latent3d's tag, or of a format this version does not know,
    is refused before the weights are read (the weights here are not even safetensors)."""
    net = torch.nn.Linear(2, 2)
    folder = save_metric_model(tmp_path / "m", net, {"width": 2}, "toy-net")
    (folder / "model.safetensors").write_bytes(b"not read")
    doc = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({"width": 2}))
    with pytest.raises(UserError, match="config.json: holds no latent3d model, not a 'toy-net'; train the toy-net"):
        load_metric_model(folder, "toy-net", lambda cfg: net)
    (folder / "config.json").write_text(json.dumps({**doc, "latent3d": {"kind": "toy-net", "format": 2}}))
    with pytest.raises(UserError, match="format 2 is newer than this latent3d reads"):
        load_metric_model(folder, "toy-net", lambda cfg: net)
