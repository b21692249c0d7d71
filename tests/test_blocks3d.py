"""3DVADER's G1 blocks (supp. B): the up-res block against a literal, upsample-first reference (float64), its
zero-initialised form against conv1x1(nearest(x)) by hand, shapes and gradients; self-attention against a
hand-written softmax(QK^T/sqrt(d))V, permutation equivariance over voxels, identity at zero init."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from latent3d.nets.blocks3d import SelfAttention3D, UpBlock3D


def _norm_ref(norm, x):
    """The block's norm applied as written, through the functional form (train-mode BN: batch statistics)."""
    if isinstance(norm, torch.nn.GroupNorm):
        return F.group_norm(x, norm.num_groups, norm.weight, norm.bias, norm.eps)
    if norm.training:
        return F.batch_norm(x, None, None, norm.weight, norm.bias, training=True, eps=norm.eps)
    return F.batch_norm(x, norm.running_mean, norm.running_var, norm.weight, norm.bias, eps=norm.eps)


def _upblock_ref(blk, x):
    """Supp. B literally: main = up -> (ReLU, Norm, Conv3x3x3) x 2, skip = Conv1x1(up(x))."""
    u = F.interpolate(x, scale_factor=2.0, mode="nearest") if blk.upsample else x
    h = F.conv3d(_norm_ref(blk.norm1, F.relu(u)), blk.conv1.weight, blk.conv1.bias, padding=1)
    h = F.conv3d(_norm_ref(blk.norm2, F.relu(h)), blk.conv2.weight, blk.conv2.bias, padding=1)
    return h + F.conv3d(u, blk.skip.weight, blk.skip.bias)


@pytest.mark.numerics
@pytest.mark.parametrize("norm", ["batch", "group"])
@pytest.mark.parametrize("upsample", [True, False])
def test_upblock_matches_the_upsample_first_reference(norm, upsample):
    torch.manual_seed(0)
    blk = UpBlock3D(6, 4, upsample=upsample, norm=norm, groups=2).double()
    with torch.no_grad():  # non-trivial affine parameters so the norms are tested too
        for n in (blk.norm1, blk.norm2):
            n.weight.uniform_(0.5, 1.5), n.bias.uniform_(-0.5, 0.5)
    x = torch.randn(3, 6, 3, 4, 2, dtype=torch.float64, requires_grad=True)
    out = blk(x)
    assert out.shape == ((3, 4, 6, 8, 4) if upsample else (3, 4, 3, 4, 2))
    ref = _upblock_ref(blk, x)
    # float64, sums of <= 27 * 6 terms: same function up to rounding (a wrong op order differs by O(1))
    assert_close(out, ref, rtol=1e-10, atol=1e-12)
    g = torch.randn_like(out)
    gx, gw = torch.autograd.grad(out, [x, blk.conv1.weight], g)
    rx, rw = torch.autograd.grad(ref, [x, blk.conv1.weight], g)
    assert_close(gx, rx, rtol=1e-10, atol=1e-12)
    assert_close(gw, rw, rtol=1e-10, atol=1e-12)
    if norm == "batch":  # eval mode: running statistics (per element, commutes with nearest upsampling too)
        blk.eval()
        assert_close(blk(x), _upblock_ref(blk, x), rtol=1e-10, atol=1e-12)


@pytest.mark.numerics
@pytest.mark.parametrize("norm", ["batch", "group"])
def test_zero_init_upblock_is_its_skip(norm):
    torch.manual_seed(0)
    blk = UpBlock3D(5, 3, norm=norm, groups=8, zero_init=True).double()
    if norm == "group":  # gcd(groups, channels) groups: 1 for 5 channels, 3 for 3 channels with groups=6
        assert blk.norm1.num_groups == 1 and UpBlock3D(4, 3, norm=norm, groups=6).norm2.num_groups == 3
    x = torch.randn(2, 5, 2, 3, 4, dtype=torch.float64)
    out = blk(x)
    assert out.shape == (2, 3, 4, 6, 8)
    ref = F.conv3d(F.interpolate(x, scale_factor=2.0, mode="nearest"), blk.skip.weight, blk.skip.bias)
    assert_close(out, ref, rtol=1e-12, atol=1e-13)  # 5-term sums in float64
    same = UpBlock3D(5, 3, upsample=False, norm=norm, zero_init=True).double()
    assert_close(same(x), F.conv3d(x, same.skip.weight, same.skip.bias), rtol=1e-12, atol=1e-13)
    assert same(x).shape == (2, 3, 2, 3, 4)


@pytest.mark.parametrize("norm", ["batch", "group"])
def test_upblock_gradients_reach_every_parameter(norm):
    torch.manual_seed(0)
    blk = UpBlock3D(4, 2, norm=norm, groups=2)
    x = torch.randn(2, 4, 2, 2, 2, requires_grad=True)
    (blk(x) * torch.randn(2, 2, 4, 4, 4)).sum().backward()
    for name, p in [*blk.named_parameters(), ("x", x)]:
        assert p.grad is not None and p.grad.abs().max() > 0, name


def _attn_ref(blk, x):
    """One head by hand: tokens h = GroupNorm(x) as rows, softmax(Q K^T / sqrt(C)) V, output projection, residual."""
    b, c = x.shape[:2]
    h = _norm_ref(blk.norm, x).reshape(b, c, -1).transpose(1, 2)  # [B, N, C]
    wq, wk, wv = blk.qkv.weight.split(c)
    bq, bk, bv = blk.qkv.bias.split(c)
    q, k, v = h @ wq.T + bq, h @ wk.T + bk, h @ wv.T + bv
    a = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(c), dim=-1) @ v  # [B, N, C]
    return x + (a @ blk.proj.weight.T + blk.proj.bias).transpose(1, 2).reshape(x.shape)


@pytest.mark.numerics
def test_attention_matches_the_hand_written_softmax():
    torch.manual_seed(0)
    blk = SelfAttention3D(4, heads=1, groups=2).double()
    x = torch.randn(2, 4, 2, 3, 2, dtype=torch.float64) * 2
    ref = _attn_ref(blk, x)
    assert_close(blk(x), ref, rtol=1e-10, atol=1e-12)
    assert (ref - x).abs().max() > 1e-2  # the attention branch is not negligible


@pytest.mark.numerics
@pytest.mark.parametrize("heads, norm", [(1, "group"), (2, "group"), (4, "batch")])
def test_attention_is_permutation_equivariant_over_voxels(heads, norm):
    torch.manual_seed(0)
    blk = SelfAttention3D(8, heads=heads, norm=norm, groups=4).double()
    x = torch.randn(2, 8, 2, 3, 4, dtype=torch.float64)
    perm = torch.randperm(24)
    xp = x.flatten(2)[:, :, perm].reshape(x.shape)
    out, outp = blk(x), blk(xp)
    assert_close(outp.flatten(2), out.flatten(2)[:, :, perm], rtol=1e-10, atol=1e-12)
    assert not torch.allclose(outp, out)  # the permutation did move voxels


def test_zero_init_attention_is_the_identity_and_errors():
    x = torch.randn(2, 8, 2, 2, 2)
    blk = SelfAttention3D(8, heads=2, zero_init=True)
    assert torch.equal(blk(x), x)
    blk(x).sum().backward()
    assert blk.proj.weight.grad.abs().max() > 0  # it can still learn away from the identity
    with pytest.raises(ValueError, match="divide channels"):
        SelfAttention3D(6, heads=4)
    with pytest.raises(ValueError, match="unknown norm"):
        UpBlock3D(4, 2, norm="layer")


def test_norms_for_both_ranks_and_the_adaptive_group_norm_formula():
    from latent3d.nets.norm import AdaptiveGroupNorm, make_norm

    assert type(make_norm("batch", 6, dims=2)) is torch.nn.BatchNorm2d
    assert type(make_norm("batch", 6)) is torch.nn.BatchNorm3d
    assert make_norm("group", 12, groups=8, dims=2).num_groups == 4  # gcd(8, 12)
    with pytest.raises(ValueError, match="dims=1"):
        make_norm("group", 4, dims=1)
    torch.manual_seed(0)
    ada = AdaptiveGroupNorm(4, 3, groups=2).double()
    for shape in [(2, 4, 5, 3), (2, 4, 2, 3, 2)]:  # an image, a volume
        x, e = torch.randn(*shape, dtype=torch.float64), torch.randn(2, 3, dtype=torch.float64)
        scale, shift = (e @ ada.emb.weight.T + ada.emb.bias).chunk(2, dim=1)
        pad = (None,) * (x.dim() - 2)
        ref = F.group_norm(x, 2, ada.norm.weight, ada.norm.bias, ada.norm.eps) * (1 + scale[(..., *pad)]) \
            + shift[(..., *pad)]
        assert_close(ada(x, e), ref, rtol=1e-12, atol=1e-12)
    zero = AdaptiveGroupNorm(4, 3, groups=2, zero_init=True)
    x = torch.randn(2, 4, 3, 3)
    assert torch.equal(zero(x, torch.randn(2, 3)), zero.norm(x))  # starts as the plain group norm


def test_one_attention_block_for_images_and_volumes_self_and_cross():
    from latent3d.nets.attention import Attention

    torch.manual_seed(0)
    blk = SelfAttention3D(4, heads=2, groups=2).double()
    x = torch.randn(2, 4, 2, 3, 2, dtype=torch.float64)
    # the same block over the 6 x 2 pixels of an image holding the volume's voxels in the same order
    assert_close(blk(x.reshape(2, 4, 6, 2)).reshape(x.shape), blk(x), rtol=1e-12, atol=1e-12)
    assert isinstance(blk, Attention) and [n for n, _ in blk.named_parameters()] == [
        "norm.weight", "norm.bias", "qkv.weight", "qkv.bias", "proj.weight", "proj.bias"]
    cross = Attention(4, heads=2, context_dim=3)
    with pytest.raises(ValueError, match="needs a context"):
        cross(x.float())
    with pytest.raises(ValueError, match="takes no context"):
        blk(x, torch.randn(2, 5, 4, dtype=torch.float64))
