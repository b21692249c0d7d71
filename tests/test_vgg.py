"""VGG-19 features from a local torchvision-layout safetensors file, and the pyramidal perceptual loss."""

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from latent3d.errors import UserError
from latent3d.nets.vgg import IMAGENET_MEAN, IMAGENET_STD, VGG19Features, load_vgg19, perceptual_loss


def _weights(tmp_path):
    torch.manual_seed(0)
    sd = {k: v.contiguous() for k, v in VGG19Features().state_dict().items()}
    assert sorted(sd)[:2] == ["features.0.bias", "features.0.weight"] and "features.34.weight" in sd  # torchvision's
    path = tmp_path / "vgg19.safetensors"
    save_file(sd, str(path))
    return path, sd


@pytest.mark.numerics
def test_first_layers_are_torchvisions_vgg19(tmp_path):
    path, sd = _weights(tmp_path)
    vgg = load_vgg19(path).double()
    x = torch.rand(2, 3, 16, 16, dtype=torch.float64)
    feats = vgg(x)
    assert [f.shape[1] for f in feats] == [64, 128, 256, 512, 512] and feats[-1].shape[-1] == 1
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float64).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float64).view(1, 3, 1, 1)
    w = {k: v.double() for k, v in sd.items()}
    h = F.relu(F.conv2d((x - mean) / std, w["features.0.weight"], w["features.0.bias"], padding=1))
    relu1_2 = F.relu(F.conv2d(h, w["features.2.weight"], w["features.2.bias"], padding=1))
    torch.testing.assert_close(feats[0], relu1_2, rtol=1e-12, atol=1e-12)
    h = F.relu(F.conv2d(F.max_pool2d(relu1_2, 2), w["features.5.weight"], w["features.5.bias"], padding=1))
    relu2_2 = F.relu(F.conv2d(h, w["features.7.weight"], w["features.7.bias"], padding=1))
    torch.testing.assert_close(feats[1], relu2_2, rtol=1e-12, atol=1e-12)


def test_perceptual_loss_is_zero_only_for_equal_images_and_trains_the_prediction(tmp_path):
    vgg = load_vgg19(_weights(tmp_path)[0])
    target = torch.rand(2, 3, 12, 12)
    assert float(perceptual_loss(vgg, target, target)) == 0.0
    pred = target.clone().requires_grad_(True)
    with torch.no_grad():
        pred.add_(0.1 * torch.randn_like(pred))
    loss = perceptual_loss(vgg, pred, target)
    loss.backward()
    assert float(loss.detach()) > 0 and pred.grad.abs().sum() > 0
    assert all(p.grad is None for p in vgg.parameters())  # frozen


def test_a_bad_vgg_file_is_one_line(tmp_path):
    (tmp_path / "bad.safetensors").write_bytes(b"not a safetensors file")
    save_file({"features.0.weight": torch.zeros(1)}, str(tmp_path / "wrong.safetensors"))
    for name in ("bad.safetensors", "wrong.safetensors", "missing.safetensors"):
        with pytest.raises(UserError, match="--vgg") as e:
            load_vgg19(tmp_path / name)
        assert "\n" not in str(e.value)
