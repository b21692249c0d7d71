"""LDM3D's RGBD autoencoder (Stan et al. 2023, arXiv 2305.10853, Sec. 3.1) and its fine-tuning loss.

LDM3D keeps Stable Diffusion's KL-autoencoder (Rombach et al. 2022, Sec. 3) and changes only its first and last
convolution so that it reads and writes RGB + depth:

- ``"6c"`` (Intel/ldm3d): RGB + the 16-bit depth packed RGB-like, ``(0, d >> 8, d & 255) / 255``
  (:func:`latent3d.io.depth.pack_depth_rgb`), 6 channels;
- ``"4c"`` (Intel/ldm3d-4c): RGB + one depth channel, 4 channels.

In both, "depth" is the normalised inverse depth (disparity, bright = near) that DPT-Large outputs. Channels are
scaled to [-1, 1] like SD's RGB. The autoencoder is fine-tuned with "a perceptual reconstruction loss, a
patch-based adversarial loss and a KL loss" (Sec. 3.1), i.e. LDM's ``LPIPSWithDiscriminator`` objective (Esser
et al. 2021, eq. 4-7): a PatchGAN discriminator (Isola et al. 2017, Sec. 3.2.2) with hinge loss, switched on after
a warm-up, weighted adaptively by the ratio of gradient norms at the decoder's last layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from latent3d.io.depth import U16_MAX, pack_depth_rgb, quantize_depth, unpack_depth_rgb
from latent3d.nets.losses import pyramid_l1
from latent3d.nets.norm import NormOrNone, make_norm

Variant = Literal["6c", "4c"]
VARIANT_CHANNELS: dict[str, int] = {"6c": 6, "4c": 4}


def variant_channels(variant: str) -> int:
    """6 for ``"6c"``, 4 for ``"4c"`` (ValueError otherwise)."""
    if variant not in VARIANT_CHANNELS:
        raise ValueError(f"unknown LDM3D variant {variant!r}: use '6c' (RGB + packed 16-bit depth) or '4c'")
    return VARIANT_CHANNELS[variant]


def variant_of(vae: Any) -> Variant:
    """``"6c"`` / ``"4c"`` from an AutoencoderKL's ``in_channels``."""
    c = int(vae.config.in_channels)
    for k, v in VARIANT_CHANNELS.items():
        if v == c:
            return k  # type: ignore[return-value]
    raise ValueError(f"an RGBD VAE has 6 (6c) or 4 (4c) input channels, this one has {c}")


# --------------------------------------------------------------------------------------------- packing
def rgbd_to_vae_input(
    rgb: Tensor,  # [B, 3, H, W] in [0, 1]
    disparity: Tensor,  # [B, 1, H, W] in [0, 1], normalised inverse depth (bright = near)
    variant: Variant,
) -> Tensor:  # [B, 6 | 4, H, W] in [-1, 1]
    """The autoencoder's input (Sec. 3.1): RGB and depth, each scaled from [0, 1] to [-1, 1].

    ``6c``: the disparity is quantised to 16 bits and packed RGB-like (:func:`pack_depth_rgb`); ``4c``: it is
    appended as one channel.
    """
    c = variant_channels(variant)
    if c == 6:
        d = pack_depth_rgb(quantize_depth(disparity[:, 0]).long(), dim=1).to(rgb)  # [B, 3, H, W]
    else:
        d = disparity.clamp(0, 1).to(rgb)
    return torch.cat([rgb, d], 1) * 2.0 - 1.0


def vae_output_to_rgbd(
    x: Tensor,  # [B, 6 | 4, H, W] decoder output in [-1, 1]
    variant: Variant,
) -> tuple[Tensor, Tensor]:  # rgb [B, 3, H, W] in [0, 1], disparity [B, 1, H, W] in [0, 1]
    """Inverse of :func:`rgbd_to_vae_input` (clamped); ``6c`` unpacks the 16-bit depth exactly
    (``round(G * 255) * 256 + round(B * 255)``, :func:`unpack_depth_rgb`) and returns it divided by 65535."""
    c = variant_channels(variant)
    if x.shape[1] != c:
        raise ValueError(f"variant {variant} expects {c} channels, got {tuple(x.shape)}")
    y = (x.float() / 2.0 + 0.5).clamp(0, 1)
    if c == 6:
        d = unpack_depth_rgb(y[:, 3:], dim=1).long().float()[:, None] / U16_MAX
    else:
        d = y[:, 3:4]
    return y[:, :3], d


# ------------------------------------------------------------------------------------------ autoencoder
def make_rgb_vae(
    block_out_channels: tuple[int, ...] = (32, 64, 64),
    latent_channels: int = 4,
    layers_per_block: int = 1,
    norm_num_groups: int | None = None,
    sample_size: int = 64,
):
    """A fresh small RGB ``AutoencoderKL`` (SD's architecture, downsampling ``2 ** (len(block_out_channels) - 1)``;
    ``norm_num_groups`` defaults to the largest power of two <= 16 dividing every width)."""
    from diffusers import AutoencoderKL

    norm_num_groups = norm_num_groups or norm_groups(block_out_channels)

    n = len(block_out_channels)
    return AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n, block_out_channels=tuple(block_out_channels),
        layers_per_block=layers_per_block, latent_channels=latent_channels, norm_num_groups=norm_num_groups,
        sample_size=sample_size,
    )  # fmt: skip


def norm_groups(channels: tuple[int, ...], most: int = 16) -> int:
    """The largest power of two <= ``most`` that divides every entry of ``channels`` (GroupNorm groups)."""
    g = most
    while g > 1 and any(c % g for c in channels):
        g //= 2
    return g


def new_param_count(block0: int, variant: Variant, kernel: int = 3) -> int:
    """Parameters :func:`widen_vae` adds: ``(C - 3) * block0 * k^2`` input weights of ``encoder.conv_in`` plus
    ``(C - 3) * (block0 * k^2 + 1)`` output weights and biases of ``decoder.conv_out``.

    At SD size (``block0 = 128``) that is 6,915 for 6c and 2,305 for 4c (the paper quotes ~9,600 for 6c).
    """
    extra = variant_channels(variant) - 3
    return extra * block0 * kernel**2 + extra * (block0 * kernel**2 + 1)


@torch.no_grad()
def widen_vae(rgb_vae: Any, variant: Variant):
    """A copy of the RGB ``AutoencoderKL`` with ``encoder.conv_in`` / ``decoder.conv_out`` widened to 6 or 4
    channels (LDM3D Sec. 3.1: "only the first and last layers" change). RGB weights are copied, the new input
    weights and the new output weights and biases are zero, so the widened model reproduces the RGB model on
    the RGB channels for any depth input, and 0 on the depth channels (mid-grey), until trained.
    A VAE that already has the variant's channel count is returned as a copy.
    """
    from diffusers import AutoencoderKL

    c = variant_channels(variant)
    cin = int(rgb_vae.config.in_channels)
    if cin == c and int(rgb_vae.config.out_channels) == c:
        out = AutoencoderKL.from_config(rgb_vae.config)
        out.load_state_dict(rgb_vae.state_dict())
        return out.to(next(rgb_vae.parameters()))
    if cin != 3 or int(rgb_vae.config.out_channels) != 3:
        raise ValueError(f"widen_vae needs an RGB (3-channel) AutoencoderKL, got in/out {cin}/"
                         f"{rgb_vae.config.out_channels}")  # fmt: skip
    p = next(rgb_vae.parameters())
    out = AutoencoderKL.from_config(rgb_vae.config, in_channels=c, out_channels=c).to(p.device)
    out = out if p.dtype == torch.float32 else out.to(p.dtype)
    sd = rgb_vae.state_dict()
    wide = out.state_dict()
    for k, v in sd.items():
        if k == "encoder.conv_in.weight":  # [C0, 3, k, k] -> [C0, c, k, k]
            wide[k].zero_()[:, :3] = v
        elif k in ("decoder.conv_out.weight", "decoder.conv_out.bias"):  # [3, ...] -> [c, ...]
            wide[k].zero_()[:3] = v
        else:
            wide[k] = v
    out.load_state_dict(wide)
    return out


def encode_latent_stats(
    vae: Any,
    x: Tensor,  # [B, C, H, W] autoencoder input in [-1, 1] (rgbd_to_vae_input)
) -> tuple[Tensor, Tensor]:  # mean, std, each [B, latent_channels, h, w]
    """Posterior mean and standard deviation of the KL-autoencoder (Rombach et al. 2022, Sec. 3), the statistics a
    latent ``z = mean + std * n`` is drawn from."""
    post = vae.encode(x).latent_dist
    return post.mean, post.std


# ------------------------------------------------------------------------------------------- PatchGAN
class PatchDiscriminator(nn.Module):
    """PatchGAN discriminator (Isola et al. 2017, Sec. 3.2.2; the ``NLayerDiscriminator`` of taming/LDM).

    4x4 convolutions: one stride-2 layer without norm, ``n_layers - 1`` stride-2 layers with norm, one stride-1
    layer with norm, and a stride-1 layer to one logit per patch. Receptive field: 16, 34, 70 pixels for
    ``n_layers`` = 1, 2, 3 (Isola's 70x70 PatchGAN at 3). ``norm``: one of :func:`latent3d.nets.norm.make_norm`'s
    kinds (pix2pix's BatchNorm, GroupNorm with ``gcd(8, channels)`` groups, or none, then the convs take a bias).
    """

    def __init__(self, in_channels: int = 6, ndf: int = 64, n_layers: int = 3,
                 norm: NormOrNone = "batch"):  # fmt: skip
        super().__init__()

        def nrm(ch: int) -> nn.Module:
            return make_norm(norm, ch, dims=2)

        layers: list[nn.Module] = [nn.Conv2d(in_channels, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2**n, 8)
            layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, 2, 1, bias=norm == "none"), nrm(ndf * mult),
                       nn.LeakyReLU(0.2, True)]  # fmt: skip
        prev, mult = mult, min(2**n_layers, 8)
        layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, 1, 1, bias=norm == "none"), nrm(ndf * mult),
                   nn.LeakyReLU(0.2, True), nn.Conv2d(ndf * mult, 1, 4, 1, 1)]  # fmt: skip
        self.main = nn.Sequential(*layers)
        for m in self.modules():  # pix2pix / taming initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.02)
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.normal_(m.weight, 1.0, 0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:  # [B, C, H, W] -> [B, 1, h, w] patch logits
        return self.main(x)


def hinge_d_loss(logits_real: Tensor, logits_fake: Tensor) -> Tensor:
    """Discriminator hinge loss (Lim & Ye 2017; taming eq. 5): ``0.5 * (E[relu(1 - D(x))] + E[relu(1 + D(x^))])``."""
    return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())


def hinge_g_loss(logits_fake: Tensor) -> Tensor:
    """Generator side of the hinge GAN: ``-E[D(x^)]``."""
    return -logits_fake.mean()


def adaptive_weight(rec_loss: Tensor, g_loss: Tensor, last_layer: Tensor, max_weight: float = 1e4) -> Tensor:
    """Taming's adaptive GAN weight (Esser et al. 2021, eq. 7): ``||grad_L rec|| / (||grad_L g|| + 1e-4)`` at the
    decoder's last layer ``L``, clamped to [0, max_weight], detached."""
    g_rec = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)[0]
    g_adv = torch.autograd.grad(g_loss, last_layer, retain_graph=True)[0]
    return (g_rec.norm() / (g_adv.norm() + 1e-4)).clamp(0.0, max_weight).detach()


@dataclass
class AELossConfig:
    """Weights of the autoencoder fine-tuning loss (LDM's ``LPIPSWithDiscriminator`` defaults where they apply)."""

    kl_weight: float = 1e-6
    """Weight of the KL term, summed over latent elements and divided by input elements (LDM's normalisation)."""
    disc_start: int = 500
    """Step at which the adversarial terms switch on (before: reconstruction + KL only)."""
    disc_weight: float = 0.5
    """Adversarial weight: multiplies the adaptive weight (``adaptive=True``) or is the weight itself."""
    adaptive: bool = True
    pyramid_levels: int = 3
    perceptual_weight: float = 1.0
    disc_layers: int = 2
    disc_channels: int = 32
    disc_norm: str = "batch"


class RGBDAutoencoderWithLoss(nn.Module):
    """The autoencoder and its discriminator in one module whose ``forward`` returns every loss term, so one
    optimiser step of the shared trainer updates both (taming alternates two optimisers; the gradients here are
    the same because each player's loss reaches only its own parameters):

    - generator: ``rec + kl_weight * kl + lambda * disc_factor * g`` where ``g`` is computed with the
      discriminator's parameters frozen (``requires_grad`` False while it runs);
    - discriminator: ``disc_factor * hinge(D(x), D(sg(x^)))`` on detached reconstructions.

    ``perceptual`` (optional) maps two ``[B, 3, H, W]`` images in [-1, 1] to a scalar (e.g. LPIPS); it is applied
    to the RGB channels on top of L1. Without it the reconstruction term is :func:`pyramid_l1` over all channels.
    """

    def __init__(self, vae: nn.Module, cfg: AELossConfig, perceptual: Callable[[Tensor, Tensor], Tensor] | None = None):
        super().__init__()
        self.vae, self.cfg, self.perceptual = vae, cfg, perceptual
        if isinstance(perceptual, nn.Module):  # a fixed feature network: never trained
            perceptual.eval().requires_grad_(False)
        self.disc = PatchDiscriminator(vae.config.out_channels, cfg.disc_channels, cfg.disc_layers, cfg.disc_norm)  # type: ignore[arg-type]

    def forward(
        self,
        x: Tensor,  # [B, C, H, W] autoencoder input in [-1, 1]
        noise: Tensor,  # [B, 4, h, w] standard normal, the posterior sample's noise
        disc_factor: float = 1.0,
    ) -> dict[str, Tensor]:
        post = self.vae.encode(x).latent_dist
        z = post.mean + post.std * noise
        xrec = self.vae.decode(z).sample
        if self.perceptual is None:
            rec = pyramid_l1(xrec, x, self.cfg.pyramid_levels)
        else:
            rec = (xrec - x).abs().mean() + self.cfg.perceptual_weight * self.perceptual(xrec[:, :3], x[:, :3])
        kl = post.kl().mean() / x[0].numel()
        # generator adversarial term with the discriminator frozen (its parameters get no gradient from it)
        flags = [p.requires_grad for p in self.disc.parameters()]
        for p in self.disc.parameters():
            p.requires_grad_(False)
        try:
            g = hinge_g_loss(self.disc(xrec))
        finally:
            for p, f in zip(self.disc.parameters(), flags):
                p.requires_grad_(f)
        if disc_factor > 0 and self.cfg.adaptive and self.training and torch.is_grad_enabled():
            lam = self.cfg.disc_weight * adaptive_weight(rec, g, self.vae.decoder.conv_out.weight)
        else:
            lam = torch.as_tensor(self.cfg.disc_weight, device=x.device)
        d = hinge_d_loss(self.disc(x.detach()), self.disc(xrec.detach()))
        loss = rec + self.cfg.kl_weight * kl + disc_factor * (lam * g + d)
        return {"loss": loss, "rec": rec.detach(), "kl": kl.detach(), "g": g.detach(), "d": d.detach(),
                "adv_weight": lam.detach() * disc_factor}  # fmt: skip
