"""The pose network of 3DVADER stage 3 (arXiv 2307.05445, Sec. 3: part poses "estimated and refined during
training"): from a video's first frame and frame t, every part's rigid transform ``[P, 4, 4]`` of frame t in the
video's own gauge (frame 0 = identity; part 0, the root, carries the camera's motion, as in :mod:`.fit`).

A direct regressor, not keypoints + a differentiable PnP (UVA, Siarohin et al. 2023, Sec. 3.3). PnP recovers a part's
6-DoF pose from at least four 2D keypoints per part whose canonical 3D positions are learned too; it pays off when
parts are large and textured and the videos number in the thousands. Here parts are flat-shaded primitives a few
dozen pixels wide, where no keypoint can be localised to a pixel, and the tracked poses of the per-video fits are at
hand as targets: a small CNN maps the image pair to the P transforms in one forward pass, rotations in the continuous
6D representation (two columns, Gram-Schmidt; Zhou et al. 2019, Sec. 4), trained by the squared error of the
matrices and translations against the tracked poses.

Used by ``latent3d object --animate --motion-video DIR``: the parts of a generated object move as the pose network
reads a new video's motion.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from latent3d.systems.autodecoder.stage3.fit import step_optimiser
from latent3d.systems.autodecoder.stage3.skinning import part_transforms

POSENET = "latent3d articulated pose network"  # the kind of RUN/posenet/ (:mod:`latent3d.io.model_folder`)
INPUT = 32  # frames are resized (area) to INPUT x INPUT; RGB + mask of frame 0 and of frame t: 8 channels


def rotation_6d(x: Tensor) -> Tensor:  # [..., 6] -> [..., 3, 3]
    """Zhou et al. 2019, eq. 15-16: the first two columns, orthonormalised (Gram-Schmidt), and their cross product."""
    a = F.normalize(x[..., :3], dim=-1)
    b = F.normalize(x[..., 3:] - (a * x[..., 3:]).sum(-1, keepdim=True) * a, dim=-1)
    return torch.stack([a, b, torch.cross(a, b, dim=-1)], dim=-1)


def pose_input(frames: Tensor, masks: Tensor) -> Tensor:  # [F, H, W, 3] in [0, 1], [F, H, W] -> [F, 8, S, S]
    """Each frame (RGB + mask) beside the video's first frame, resized to INPUT^2."""
    x = torch.cat([frames, masks[..., None].float()], -1).permute(0, 3, 1, 2)
    x = F.interpolate(x, size=(INPUT, INPUT), mode="area")
    return torch.cat([x[:1].expand(len(x), -1, -1, -1), x], 1)


class PoseNet(nn.Module):
    """``forward(x [B, 8, S, S]) -> transforms [B, P, 4, 4]`` (module docstring); at zero output weights every
    transform starts at the identity."""

    def __init__(self, parts: int, width: int = 32):
        super().__init__()
        self.parts = parts
        layers, c = [], 8
        for w in (width, 2 * width, 4 * width):  # 32 -> 16 -> 8 -> 4
            layers += [nn.Conv2d(c, w, 3, stride=2, padding=1), nn.GroupNorm(8, w), nn.SiLU()]
            c = w
        self.features = nn.Sequential(*layers, nn.Flatten(), nn.Linear(c * 16, 256), nn.SiLU())
        self.head = nn.Linear(256, parts * 9)
        nn.init.zeros_(self.head.weight)
        with torch.no_grad():
            self.head.bias.copy_(torch.tensor([1.0, 0, 0, 0, 1, 0, 0, 0, 0]).repeat(parts))

    def forward(self, x: Tensor) -> Tensor:
        out = self.head(self.features(x)).view(len(x), self.parts, 9)
        T = part_transforms(torch.zeros_like(out[..., :3]), out[..., 6:])
        return torch.cat([torch.cat([rotation_6d(out[..., :6]), T[..., :3, 3:]], -1), T[..., 3:, :]], -2)


def train_pose_net(inputs: list[Tensor], targets: list[Tensor], parts: int, steps: int, seed: int = 0,
                   progress: bool = True) -> tuple[PoseNet, list[float]]:  # fmt: skip
    """Fit :class:`PoseNet` to every video's ``inputs [F_i, 8, S, S]`` (:func:`pose_input`) and tracked transforms
    ``targets [F_i, P, 4, 4]``: squared error of the rotation matrices and translations, batches of 32 pairs."""
    from tqdm.auto import trange

    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    x, y = torch.cat(inputs), torch.cat(targets).float()
    net = PoseNet(parts)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 1.0 if i < 0.7 * steps else 0.2)
    losses = []
    for _ in trange(steps, desc="pose network", disable=not progress):
        idx = torch.randint(len(x), (min(32, len(x)),), generator=g)
        loss = (net(x[idx]) - y[idx])[..., :3, :].square().sum((-1, -2)).mean()
        step_optimiser(opt, sched, loss, losses)
    return net.eval(), losses


@torch.no_grad()
def predict_motion(net: PoseNet, frames: Tensor, masks: Tensor) -> Tensor:  # [F, H, W, 3], [F, H, W] -> [F, P, 4, 4]
    """Every frame's part transforms relative to frame 0 (frame 0 itself set to the identity, the gauge)."""
    T = net(pose_input(frames, masks))
    T[0] = torch.eye(4)
    return T


def load_pose_net(folder: Path, parts: int) -> PoseNet:
    """``RUN/posenet/`` of an articulated run (a damaged one is one UserError line)."""
    from latent3d.io.model_folder import read_model_folder

    saved = read_model_folder(folder, POSENET, "retrain with `latent3d train autodecoder --articulated`")
    tensors = saved.tensors()

    def build() -> PoseNet:
        net = PoseNet(parts)
        net.load_state_dict(tensors)
        return net

    return saved.build(build).eval()
