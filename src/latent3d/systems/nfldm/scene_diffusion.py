"""NF-LDM's hierarchical latent diffusion (Kim et al. 2023, arXiv 2304.09787, Sec. 3.3): three denoisers over the
latents of the latent voxel auto-encoder (:mod:`.latent_ae`), ``p(g) p(c | g) p(f | g, c)``, each trained on its own
with the paper's x0 objective ``E_{t, eps}[w(lambda_t) ||x0 - psi(x_t, t, ...)||^2]``
(:class:`latent3d.diffusion.ddpm.DDPMLoss` with ``prediction_type="sample"``, ``t`` uniform over the 1000 timesteps
of a diffusers schedule; ``w`` constant by default, min-SNR-gamma of Hang et al. 2023 an option: it weighs the
noise levels where psi_c and psi_f must take the scene from their condition by SNR ~ 0) and sampled by the shared
DDIM sampler (:func:`latent3d.diffusion.ddim.ddim_sample`, Song et al. 2021, trailing timesteps).

- psi_g (:class:`GlobalDenoiser`): an MLP with skip connections (residual blocks, the noise level through their
  adaptive group norms) over ``g`` concatenated with the scene's camera trajectory (:func:`encode_trajectory`: K poses
  resampled along the episode), so that a trajectory to render it along is sampled with every scene (Sec. 3.3).
- psi_c (:class:`CoarseDenoiser`): a 2-D UNet (:class:`latent3d.nets.unet3d.UNet3D`, ``dims=2``) over ``c`` with its
  vertical axis folded into channels (:func:`.latent_ae.fold_z`), conditioned on ``g`` through conditional group norm
  (a linear map of ``g`` added to the noise embedding that scales and shifts every residual block's group norm).
- psi_f (:class:`FineDenoiser`): the same UNet over the bird's-eye-view ``f`` with ``c`` (folded, nearest-upsampled
  to f's X x Y) concatenated to its input channels, and ``g`` through conditional group norm.

Normalisation: every latent enters the networks standardised per channel by its mean and standard deviation over
the training latents (:class:`~latent3d.nets.standardize.Standardizer`; per dimension for ``g``, per pose component for the trajectory), the
statistics saved with the weights; samples leave in the latent auto-encoder's units.

Quantisation: ``c`` and ``f`` are diffused *after* quantisation, as the codebook vectors the latent auto-encoder
stores (``latents.safetensors`` holds only those and their indices) and its decoder was trained on; a sample is
snapped to its nearest codes before ``f`` is conditioned on ``c`` and before decoding
(:meth:`latent3d.nets.vq.VectorQuantizer.snap`), which keeps LDM's use of a VQ-regularised auto-encoder (Rombach et
al. 2022, Sec. 3.1: the quantiser "absorbed by the decoder"). The pre-quantisation vectors, which LDM diffuses, are
not kept by stage 1b, and a sample near a code snaps to it either way. design.md's paper facts do not say which of
the two NF-LDM diffuses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from latent3d.nets.norm import adaptive_group_norm, group_norm
from latent3d.nets.standardize import Standardizer
from latent3d.nets.unet3d import UNet3D, noise_features
from latent3d.systems.nfldm.config import SceneDiffusionConfig
from latent3d.systems.nfldm.latent_ae import fold_z, unfold_z

if TYPE_CHECKING:
    from latent3d.systems.nfldm.bev import BevVocabulary
    from latent3d.systems.nfldm.latent_ae import SceneLatentAutoencoder

POSE_DIMS = 5  # x, y, z (box units), cos yaw, sin yaw
TRAIN_TIMESTEPS = 1000
LEVELS = ("g", "c", "f")
TRAJECTORY_DRAWS = 8  # draws of g per scene from which a map picks the trajectory that fits it best


# ------------------------------------------------------------------------------------------------- trajectories
def box_frame(bbox_min: Tensor, bbox_max: Tensor) -> tuple[Tensor, Tensor]:  # [3], [3] -> centre [3], half-size [3]
    """The centre and half-size of a scene's box (:func:`latent3d.systems.nfldm.episodes.scene_box`)."""
    return (bbox_min + bbox_max) / 2, (bbox_max - bbox_min) / 2


def encode_poses(
    viewmats: Tensor,  # [N, 4, 4] world-to-camera (OpenCV), z-up world
    bbox_min: Tensor,  # [3]
    bbox_max: Tensor,  # [3]
) -> Tensor:  # [N, 5] (x, y, z, cos yaw, sin yaw)
    """Each camera as its centre relative to the box centre in units of the box's half-size, and the heading of its
    viewing direction (+z of the camera) in the horizontal plane; the pitch and roll are dropped (NF-LDM's scenes
    and latent3d's episodes keep the camera level)."""
    from latent3d.render.camera import camera_centers

    centre, half = box_frame(bbox_min.to(viewmats), bbox_max.to(viewmats))
    pos = (camera_centers(viewmats) - centre) / half
    yaw = F.normalize(viewmats[:, 2, :2], dim=-1)  # row 2 of R: the camera's +z in world coordinates
    return torch.cat([pos, yaw], dim=-1)


def resample_poses(poses: Tensor, k: int) -> Tensor:  # [N, 5] -> [K, 5]
    """``k`` poses evenly spaced along a trajectory of ``N`` (linear interpolation between neighbouring frames, the
    heading renormalised); ``k == N`` returns the poses unchanged."""
    n = len(poses)
    u = torch.linspace(0, n - 1, k, dtype=torch.float64)
    i0 = u.floor().long().clamp(max=max(n - 2, 0))
    i1 = (i0 + 1).clamp(max=n - 1)
    w = (u - i0).to(poses)[:, None]
    out = poses[i0] * (1 - w) + poses[i1] * w
    return torch.cat([out[:, :3], F.normalize(out[:, 3:], dim=-1)], dim=-1)


def encode_trajectory(
    viewmats: Tensor,  # [N, 4, 4] world-to-camera of an episode's frames, in order
    bbox_min: Tensor,  # [3] the episode's box
    bbox_max: Tensor,  # [3]
    k: int,
) -> Tensor:  # [K, 5]
    """The camera trajectory psi_g generates with ``g`` (NF-LDM Sec. 3.3: "the camera trajectory is concatenated to
    g"): :func:`encode_poses` of the frames, resampled to ``k`` poses (:func:`resample_poses`). Inverse:
    :func:`decode_trajectory`."""
    return resample_poses(encode_poses(viewmats, bbox_min, bbox_max), k)


def decode_trajectory(
    trajectory: Tensor,  # [..., K, 5]
    bbox_min: Tensor,  # [3] the box the grid of the scene fills
    bbox_max: Tensor,  # [3]
) -> Tensor:  # [..., K, 4, 4] world-to-camera (OpenCV), level cameras in a z-up world
    """The inverse of :func:`encode_poses`: level cameras at the decoded centres looking along the (renormalised)
    heading, image down = world -z."""
    from latent3d.render.camera import look_at

    centre, half = box_frame(bbox_min.to(trajectory), bbox_max.to(trajectory))
    eye = trajectory[..., :3] * half + centre
    heading = F.normalize(trajectory[..., 3:5], dim=-1)
    fwd = torch.cat([heading, torch.zeros_like(heading[..., :1])], dim=-1)
    return look_at(eye, eye + fwd, up=(0.0, 0.0, 1.0), dtype=trajectory.dtype)


# ------------------------------------------------------------------------------------------------- normalisation
# ------------------------------------------------------------------------------------------------- denoisers
class LevelDenoiser(nn.Module):
    """What the three denoisers share: ``forward(x_t [B, *shape], t [B], **condition) -> x0 [B, *shape]`` on
    standardised latents; :meth:`encode` / :meth:`decode` between the latent auto-encoder's units and ``x``;
    :meth:`condition` standardises the coarser latents it is conditioned on (names in ``conditions``)."""

    level: str
    produces: tuple[str, ...]  # the latents this level generates
    conditions: tuple[str, ...] = ()  # the coarser latents it is conditioned on
    shape: tuple[int, ...]  # one item's x

    def __init__(self, cfg: SceneDiffusionConfig, norms: dict[str, Standardizer]):
        super().__init__()
        self.cfg = cfg
        self.norms = nn.ModuleDict(norms)

    def fit_statistics(self, latents: dict[str, Tensor]) -> None:
        """The standardisation of every latent this level sees, measured on the training ``latents``."""
        for name, norm in self.norms.items():
            norm.fit(latents[name])

    def encode(self, latents: dict[str, Tensor]) -> Tensor:  # -> [N, *shape]
        return self.norms[self.produces[0]](latents[self.produces[0]])

    def decode(self, x: Tensor) -> dict[str, Tensor]:  # [N, *shape]
        return {self.produces[0]: self.norms[self.produces[0]].inverse(x)}

    def condition(self, latents: dict[str, Tensor]) -> dict[str, Tensor]:
        """The keywords of :meth:`forward`: the conditioning latents, standardised, and a BEV map as given (the
        empty map when ``latents`` has none)."""
        out = {k: self.norms[k](latents[k]) for k in self.conditions if k != "bev"}
        return out | ({"bev": latents["bev"]} if "bev" in self.conditions and "bev" in latents else {})


class _MLPBlock(nn.Module):
    """ADM's residual block (:class:`latent3d.nets.unet3d.ResBlock3D`) on vectors: ``h = fc(SiLU(GN(x)))``,
    ``h = fc(SiLU(AdaGN(h, emb)))``, ``out = x + h`` (the skip connection; the second layer starts at zero)."""

    def __init__(self, width: int, emb_dim: int):
        super().__init__()
        self.norm1, self.fc1 = group_norm(width), nn.Linear(width, width)
        self.emb, self.norm2, self.fc2 = nn.Linear(emb_dim, 2 * width), group_norm(width), nn.Linear(width, width)
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:  # x [B, W], emb [B, E] -> [B, W]
        h = self.fc1(F.silu(self.norm1(x)))
        return x + self.fc2(F.silu(adaptive_group_norm(h, self.norm2, self.emb, emb)))


class GlobalDenoiser(LevelDenoiser):
    """psi_g (NF-LDM Sec. 3.3): an MLP with skip connections over ``x = [g, trajectory]`` ``[B, G + 5 K]`` (each part
    standardised: g per dimension, the trajectory per pose component), the timestep through sinusoidal features and
    a 2-layer MLP into every block's adaptive group norm; the output layer starts at zero."""

    level, produces = "g", ("g", "trajectory")

    def __init__(self, cfg: SceneDiffusionConfig, global_dim: int):
        super().__init__(cfg, {"g": Standardizer(global_dim), "trajectory": Standardizer(POSE_DIMS, axis=-1)})
        w, k = cfg.mlp_width, cfg.trajectory_poses
        self.global_dim, self.shape = global_dim, (global_dim + POSE_DIMS * k,)
        self.t_emb = nn.Sequential(nn.Linear(w, w), nn.SiLU(), nn.Linear(w, w))
        self.inp = nn.Linear(self.shape[0], w)
        self.blocks = nn.ModuleList(_MLPBlock(w, w) for _ in range(cfg.mlp_blocks))
        self.out = nn.Sequential(group_norm(w), nn.SiLU(), nn.Linear(w, self.shape[0]))
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

    def encode(self, latents: dict[str, Tensor]) -> Tensor:  # g [N, G], trajectory [N, K, 5] -> [N, G + 5 K]
        g, traj = self.norms["g"](latents["g"]), self.norms["trajectory"](latents["trajectory"])
        return torch.cat([g, traj.flatten(1)], dim=1)

    def decode(self, x: Tensor) -> dict[str, Tensor]:  # [N, G + 5 K] -> g [N, G], trajectory [N, K, 5]
        g, traj = x[:, : self.global_dim], x[:, self.global_dim:].reshape(len(x), -1, POSE_DIMS)
        return {"g": self.norms["g"].inverse(g), "trajectory": self.norms["trajectory"].inverse(traj)}

    def forward(self, x_t: Tensor, t: Tensor) -> Tensor:  # [B, D], [B] -> [B, D]
        emb = self.t_emb(noise_features(t.reshape(-1).expand(len(x_t)), self.cfg.mlp_width).to(x_t.dtype))
        h = self.inp(x_t)
        for blk in self.blocks:
            h = blk(h, emb)
        return self.out(h)


class _BevLevel(LevelDenoiser):
    """A level that may attend to a BEV map (:mod:`.bev`, ``bev_shape`` ``(K, X, Y)``; None: no map): its UNet gets
    the map's tokens (:class:`~latent3d.systems.nfldm.bev.BevEncoder`, one per ``X / tokens`` columns) by
    cross-attention at ``attention`` resolutions and two coordinate channels more at its input."""

    def _unet(self, cin: int, cout: int, mult: tuple[int, ...], size: int, global_dim: int,
              bev_shape: tuple[int, int, int] | None, tokens: int) -> UNet3D:  # fmt: skip
        # the map attended to (and self-attention) at the token grid's resolution and one level below it
        from latent3d.systems.nfldm.bev import BevEncoder

        cfg, self.bev_shape = self.cfg, bev_shape
        self.bev = BevEncoder(bev_shape[0], cfg.bev_width, bev_shape[1], tokens) if bev_shape else None
        if bev_shape:
            self.conditions = (*self.conditions, "bev")
        attention = (tokens, tokens // 2) if bev_shape else ()
        return UNet3D(cin + 2 * bool(bev_shape), cfg.width, mult, cfg.blocks, attention, size, dims=2,
                      out_channels=cout, global_cond_dim=global_dim,
                      cross_attention_dim=cfg.bev_width if bev_shape else None)  # fmt: skip

    def given_g(self, g: Tensor, with_map: bool) -> Tensor:  # [B, G] -> [B, G]
        """The g this level is given: the training mean where a map decides its latent (trained with map and g
        dropout, ``cfg.bev_global_dropout``), else ``g``."""
        if with_map and self.bev is not None and self.cfg.bev_global_dropout > 0:
            return self.norms["g"].mean.to(g).expand_as(g)
        return g

    def _run(self, h: Tensor, t: Tensor, g: Tensor, bev: Tensor | None) -> Tensor:  # h [B, C, X, Y]
        from latent3d.systems.nfldm.bev import coordinates

        if self.bev is None:
            return self.unet(h, t.to(h.dtype), global_cond=g)
        if bev is None:
            bev = h.new_zeros(1, *self.bev_shape)  # the empty map: unconditional
        tokens = self.bev(bev.to(h.dtype)).expand(len(h), -1, -1)
        return self.unet(coordinates(h), t.to(h.dtype), tokens, global_cond=g)


class CoarseDenoiser(_BevLevel):
    """psi_c(c_t, g[, bev]) (NF-LDM Sec. 3.3): a 2-D UNet over ``c [B, Cc, Xc, Yc, Zc]`` with its vertical axis
    folded into channels, ``g`` through conditional group norm (``UNet3D(global_cond_dim=G)``), a BEV map's tokens
    (one per c column) by cross-attention when ``bev_shape`` is given."""

    level, produces, conditions = "c", ("c",), ("g",)

    def __init__(self, cfg: SceneDiffusionConfig, global_dim: int, c_shape: tuple[int, int, int, int],
                 bev_shape: tuple[int, int, int] | None = None):  # fmt: skip
        super().__init__(cfg, {"c": Standardizer(c_shape[0]), "g": Standardizer(global_dim)})
        cc, xc, _, zc = c_shape
        self.shape = tuple(c_shape)
        self.unet = self._unet(cc * zc, cc * zc, tuple(cfg.channel_mult), xc, global_dim, bev_shape, xc)

    def forward(self, x_t: Tensor, t: Tensor, g: Tensor, bev: Tensor | None = None) -> Tensor:
        # x_t [B, Cc, Xc, Yc, Zc], t [B], g [B, G], bev [B or 1, K, X, Y] -> [B, Cc, Xc, Yc, Zc]
        return unfold_z(self._run(fold_z(x_t), t, g, bev), self.shape[3])


class FineDenoiser(_BevLevel):
    """psi_f(f_t, g, c[, bev]) (NF-LDM Sec. 3.3): a 2-D UNet over ``f [B, F, X, Y]`` whose input also holds ``c``
    (vertical axis folded into channels, nearest-upsampled to X x Y: concatenation), ``g`` through conditional group
    norm, a BEV map's tokens (one per 4 x 4 f columns) by cross-attention when ``bev_shape`` is given."""

    level, produces, conditions = "f", ("f",), ("g", "c")

    def __init__(self, cfg: SceneDiffusionConfig, global_dim: int, c_shape: tuple[int, int, int, int],
                 f_shape: tuple[int, int, int], bev_shape: tuple[int, int, int] | None = None):  # fmt: skip
        super().__init__(cfg, {"f": Standardizer(f_shape[0]), "g": Standardizer(global_dim),
                               "c": Standardizer(c_shape[0])})  # fmt: skip
        cc, zc, (fc, x, _) = c_shape[0], c_shape[3], f_shape
        self.shape = tuple(f_shape)
        self.unet = self._unet(fc + cc * zc, fc, tuple(cfg.channel_mult_fine), x, global_dim, bev_shape, x // 4)

    def forward(self, x_t: Tensor, t: Tensor, g: Tensor, c: Tensor, bev: Tensor | None = None) -> Tensor:
        # x_t [B, F, X, Y], t [B], g [B, G], c [B, Cc, Xc, Yc, Zc], bev [B or 1, K, X, Y] -> [B, F, X, Y]
        up = F.interpolate(fold_z(c).to(x_t), size=tuple(x_t.shape[-2:]), mode="nearest")
        return self._run(torch.cat([x_t, up], dim=1), t, g, bev)


def build_level(level: str, cfg: SceneDiffusionConfig, shapes: dict[str, list[int]]) -> LevelDenoiser:
    """The denoiser of ``level`` for latents of ``shapes`` (``{"g": [G], "c": [Cc, Xc, Yc, Zc], "f": [F, X, Y]}``,
    and ``"bev": [K, X, Y]`` for c and f with ``cfg.bev``)."""
    G = shapes["g"][0]
    bev = tuple(shapes["bev"]) if cfg.bev and "bev" in shapes else None
    if cfg.bev and level in ("c", "f") and bev is None:
        raise ValueError("cfg.bev needs shapes['bev'] = [K, X, Y]")
    if level == "g":
        return GlobalDenoiser(cfg, G)
    if level == "c":
        return CoarseDenoiser(cfg, G, tuple(shapes["c"]), bev)  # type: ignore[arg-type]
    if level == "f":
        return FineDenoiser(cfg, G, tuple(shapes["c"]), tuple(shapes["f"]), bev)  # type: ignore[arg-type]
    raise ValueError(f"level must be one of {LEVELS}, got {level!r}")


# ------------------------------------------------------------------------------------------------- sampling
def schedule(cfg: SceneDiffusionConfig) -> Tensor:  # [T] float32
    """alpha_bar of the training timesteps (diffusers' ``DDPMScheduler(beta_schedule=cfg.beta_schedule)``)."""
    from latent3d.diffusion.schedules import alphas_cumprod

    return alphas_cumprod(cfg.beta_schedule, TRAIN_TIMESTEPS).float()  # type: ignore[arg-type]


def diffusion_loss(cfg: SceneDiffusionConfig):  # -> DDPMLoss
    """The training objective of every level: NF-LDM's x0 objective ``E_{t, eps}[w(lambda_t) ||x0 - psi(x_t, t,
    ...)||^2]`` (Sec. 3.3), ``t ~ U{0..999}``, ``w`` min-SNR-gamma (Hang et al. 2023) or constant, called
    ``loss(psi, x0, generator, **condition)``."""
    from latent3d.diffusion.ddpm import DDPMLoss

    return DDPMLoss(schedule(cfg), "sample", cfg.weighting, cfg.snr_gamma)


def scheduler_config(cfg: SceneDiffusionConfig) -> dict:
    """The diffusers ``DDIMScheduler`` settings the models sample with (saved in each model's config.json)."""
    return {"num_train_timesteps": TRAIN_TIMESTEPS, "beta_schedule": cfg.beta_schedule, "beta_start": 0.00085,
            "beta_end": 0.012, "prediction_type": "sample", "clip_sample": False, "set_alpha_to_one": True,
            "timestep_spacing": "trailing"}  # fmt: skip


@torch.no_grad()
def sample_level(model: LevelDenoiser, n: int, steps: int, generator: torch.Generator | None = None,
                 eta: float = 0.0, bev_scale: float = 1.0, **latents: Tensor) -> dict[str, Tensor]:  # fmt: skip
    """``n`` samples of one level given its conditioning ``latents`` (latent auto-encoder units): DDIM from pure
    noise over ``steps`` trailing timesteps with the x0 prediction (Song et al. 2021, eq. 12), then decoded to the
    latent auto-encoder's units. The noise is drawn on the generator's device. ``bev_scale`` != 1 with a map:
    classifier-free guidance on the map (Ho & Salimans 2022), ``x0 = x0(empty map) + s (x0(map) - x0(empty map))``
    (the models trained with map dropout know both)."""
    from latent3d.diffusion.ddim import ddim_sample, ddim_timesteps

    dev = next(model.parameters()).device
    gdev = generator.device if generator is not None else dev
    x = torch.randn((n, *model.shape), generator=generator, device=gdev).to(dev)
    cond = model.condition({k: v.to(dev) for k, v in latents.items()})
    net = model
    if bev_scale != 1.0 and "bev" in cond:
        def net(x_t: Tensor, t: Tensor, **kw: Tensor) -> Tensor:  # guided on the map
            free = model(x_t, t, **{k: v for k, v in kw.items() if k != "bev"})
            return free + bev_scale * (model(x_t, t, **kw) - free)
    x0 = ddim_sample(net, x, ddim_timesteps(steps, TRAIN_TIMESTEPS, "trailing"), schedule(model.cfg), eta=eta,
                     generator=generator, disable=True, extra_args=cond, prediction_type="sample")  # fmt: skip
    return model.decode(x0)


@dataclass
class SceneDiffusion:
    """The three denoisers of a ``latent3d train scene-diffusion`` run and the latent auto-encoder whose latents
    they model (its quantisers snap sampled c and f to codes, its decoder turns latents into a scene grid)."""

    g: GlobalDenoiser
    c: CoarseDenoiser
    f: FineDenoiser
    latent_ae: SceneLatentAutoencoder
    box: tuple[Tensor, Tensor]  # bbox_min, bbox_max [3]: a scene box centred at the origin (decode_trajectory's)
    bev: BevVocabulary | None = None  # the classes of the maps psi_c and psi_f take (None: trained without --bev)
    eye_z: float = 0.0  # the cameras' mean height in the box (its z = 0 is the box's centre)


def sample_scene_latents(models: SceneDiffusion, n: int, steps: int | None = None,
                         generator: torch.Generator | None = None, bev: Tensor | None = None,
                         bev_scale: float = 1.0) -> tuple[Tensor, Tensor, Tensor, Tensor]:  # fmt: skip
    """``n`` scenes drawn ancestrally (NF-LDM Sec. 3.3): ``g, trajectory ~ p(g)``, ``c ~ p(c | g)``, snapped to its
    codebook, ``f ~ p(f | g, c)``, snapped. Returns ``g [n, G]``, ``trajectory [n, K, 5]`` (:func:`decode_trajectory`
    with ``models.box`` gives the cameras), ``c [n, Cc, Xc, Yc, Zc]`` and ``f [n, F, X, Y]`` in the latent
    auto-encoder's units (``models.latent_ae.decode(g, c, f)`` is the normalised grid). ``steps``: DDIM steps
    (default: each model's ``sample_steps``). ``bev [1 or n, K, X, Y]``: a map psi_c and psi_f follow (models
    trained with ``--bev``); each scene's g is then the one of :data:`TRAJECTORY_DRAWS` draws whose trajectory
    stays most on the map's free cells (:func:`~latent3d.systems.nfldm.bev.trajectory_fit`), and the levels
    trained with map and g dropout see the mean g instead (the map decides their latent); ``bev_scale``: the map's
    guidance scale (:func:`sample_level`)."""
    from latent3d.systems.nfldm.bev import trajectory_fit

    if bev is not None and models.bev is None:
        raise ValueError("these models were trained without --bev: they take no map")
    draws = TRAJECTORY_DRAWS if bev is not None else 1
    out = sample_level(models.g, n * draws, steps or models.g.cfg.sample_steps, generator, models.g.cfg.eta)
    if draws > 1:
        maps = bev.expand(n, -1, -1, -1).repeat_interleave(draws, 0)
        fit = trajectory_fit(out["trajectory"], maps, models.bev.solid_mask()).reshape(n, draws)
        pick = torch.arange(n) * draws + fit.argmax(1).cpu()
        out = {k: v[pick.to(v.device)] for k, v in out.items()}
    if bev is not None:
        out["bev"] = bev
    for model in (models.c, models.f):
        cfg = model.cfg
        given = out | {"g": model.given_g(out["g"], bev is not None)}  # with a map, the map decides, not g
        out |= sample_level(model, n, steps or cfg.sample_steps, generator, cfg.eta, bev_scale, **given)
        vq = {"c": models.latent_ae.vq_c, "f": models.latent_ae.vq_f}[model.level]
        out[model.level] = vq.snap(out[model.level])[0]
    return out["g"], out["trajectory"], out["c"], out["f"]
