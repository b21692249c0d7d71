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
    assert json.loads((folder / "config.json").read_text()) == {"kind": "toy-net", "width": 4, "note": "x"}
    assert load_file(str(folder / "model.safetensors")).keys() == net.state_dict().keys()  # plain tensors, no pickle
    seen = []

    def build(cfg):
        seen.append(cfg)
        return torch.nn.Sequential(torch.nn.Linear(3, cfg["width"]), torch.nn.GroupNorm(2, cfg["width"])).train()

    back = load_metric_model(folder, "toy-net", build)
    assert seen == [{"kind": "toy-net", "width": 4, "note": "x"}] and not back.training
    for (k, a), b in zip(net.state_dict().items(), back.state_dict().values()):
        assert torch.equal(a, b), k
    with pytest.raises(UserError, match="holds a 'toy-net', not a 'other-net'"):
        load_metric_model(folder, "other-net", build)
    (folder / "model.safetensors").unlink()
    with pytest.raises(UserError, match=r"is not a saved toy-net \(config.json \+ model.safetensors expected\)"):
        load_metric_model(folder, "toy-net", build)
    with pytest.raises(UserError, match="is not a saved toy-net"):
        load_metric_model(tmp_path / "missing", "toy-net", build)
