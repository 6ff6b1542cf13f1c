"""How cameras see people: the view distribution the priors are trained on, and the view bins they
are measured on.

A pose in the mocap's *world* frame (camera-style axes: x right, y down = gravity, z forward, mm,
root-relative) is seen by a camera as ``joints @ (C @ B).T`` where

- ``B`` is the body's own orientation in the world: identity for an upright person, a pitch of
  +-90 degrees about x for someone lying on the back or front (or on all fours: the torso is then
  horizontal too), a roll of +-90 about z for someone lying on the side, any rotation for the rest
  (handstands, cartwheels, inverted on a bench);
- ``C = rot_z(roll) @ rot_x(elevation) @ rot_y(azimuth)`` is the camera, exactly as the renderer's
  :func:`nlrd.data.synthetic.camera.look_rotation` (positive elevation: the camera is above the
  person, looking down; roll turns the image).

Why this distribution (``CAMERA_VIEWS``): photographs of people are taken from all round (azimuth
uniform), mostly from about eye level to well above (phones at chest height, gym and CCTV cameras
on walls and ceilings: elevation -30..+60 degrees, uniform so the steep ends are not starved), and
held a little crooked or shot in portrait with a tilt (roll: half the draws exactly level, half
uniform within +-30 degrees). Exercise and everyday photos show many people who are not upright:
lying on the floor or a bench, kneeling on all fours, sitting back; a fifth of draws lie the body
down (pitch or roll of 90 degrees, +-25 degrees of slack for inclined benches and all fours), and a
tenth turn it freely (inverted and acrobatic bodies), so no orientation is out of reach. The
remaining 70% are upright people, where almost every photograph is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from nlrd.transforms import rot_x, rot_y, rot_z


@dataclass(frozen=True)
class ViewDistribution:
    """Random views of a person: camera ranges (degrees) and body-orientation probabilities."""

    elevation: tuple[float, float] = (-30.0, 60.0)
    roll_max_deg: float = 30.0
    roll_prob: float = 0.5  # the other draws are exactly level
    lying_prob: float = 0.2
    lying_slack_deg: float = 25.0
    free_prob: float = 0.1


AZIMUTH_ONLY = ViewDistribution(elevation=(0.0, 0.0), roll_max_deg=0.0, roll_prob=0.0, lying_prob=0.0, free_prob=0.0)
CAMERA_VIEWS = ViewDistribution()


def axis_rotations(axis: str, theta_deg: torch.Tensor) -> torch.Tensor:
    """(B,) degrees -> (B, 3, 3) rotations about the camera's x, y or z axis (batched ``transforms.rot_*``)."""
    t = theta_deg * (math.pi / 180.0)
    c, s = torch.cos(t), torch.sin(t)
    z, o = torch.zeros_like(c), torch.ones_like(c)
    rows = {"x": [o, z, z, z, c, -s, z, s, c], "y": [c, z, s, z, o, z, -s, z, c], "z": [c, -s, z, s, c, z, z, z, o]}
    if axis not in rows:
        raise ValueError(f"axis must be 'x', 'y' or 'z', got {axis!r}")
    return torch.stack(rows[axis], dim=-1).view(-1, 3, 3)


def uniform_rotations(b: int, g: torch.Generator) -> torch.Tensor:
    """(b, 3, 3) rotations uniform on SO(3) (normalised Gaussian quaternions)."""
    q = torch.randn(b, 4, generator=g)
    q = q / q.norm(dim=1, keepdim=True).clamp_min(1e-8)
    w, x, y, z = q.unbind(1)
    return torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
        2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
        2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y),
    ], dim=1).view(b, 3, 3)  # fmt: skip


def random_view_rotations(b: int, g: torch.Generator, dist: ViewDistribution = CAMERA_VIEWS) -> torch.Tensor:
    """(b, 3, 3) world -> camera rotations ``C @ B`` drawn from ``dist`` (see the module doc).

    Draws from ``g`` on the CPU, a fixed number of draws per call, so distributed ranks agree."""
    u = torch.rand(b, 8, generator=g)
    az = u[:, 0] * 360.0
    lo, hi = dist.elevation
    el = lo + (hi - lo) * u[:, 1]
    roll = torch.where(u[:, 2] < dist.roll_prob, (2 * u[:, 3] - 1) * dist.roll_max_deg, torch.zeros(b))
    cam = axis_rotations("z", roll) @ axis_rotations("x", el) @ axis_rotations("y", az)
    # Lying: pitch (back / front) or roll (side) by +-90 with slack.
    sign = torch.where(u[:, 5] < 0.5, -1.0, 1.0)
    angle = sign * (90.0 + (2 * u[:, 6] - 1) * dist.lying_slack_deg)
    lying = torch.where((u[:, 7] < 0.5).view(-1, 1, 1), axis_rotations("x", angle), axis_rotations("z", angle))
    free = uniform_rotations(b, g)
    eye = torch.eye(3).expand(b, 3, 3)
    pick = u[:, 4]
    body = torch.where((pick < dist.lying_prob).view(-1, 1, 1), lying, eye)
    body = torch.where(((pick >= dist.lying_prob) & (pick < dist.lying_prob + dist.free_prob)).view(-1, 1, 1), free, body)
    return cam @ body


@dataclass(frozen=True)
class ViewBin:
    """A named fixed family of views for measuring: body orientation then camera (degrees)."""

    name: str
    elevation: float = 0.0
    roll: float = 0.0
    body_pitch: float = 0.0  # about x before the camera: +-90 lies the body on its back / front
    body_roll: float = 0.0  # about z before the camera: +-90 lies the body on its side

    def rotations(self, n: int, seed: int = 0) -> np.ndarray:
        """(n, 3, 3) world -> camera rotations, azimuth uniform (seeded); signs alternate for +- bins."""
        rng = np.random.default_rng(seed)
        az = rng.uniform(0.0, 360.0, n)
        sign = np.where(np.arange(n) % 2 == 0, 1.0, -1.0)
        out = np.empty((n, 3, 3))
        for i in range(n):
            body = rot_x(self.body_pitch * sign[i]) @ rot_z(self.body_roll * sign[i])
            # the +- bins alternate the sign of roll too (a bin "roll +-30" is half +30, half -30)
            cam = rot_z(self.roll * sign[i]) @ rot_x(self.elevation) @ rot_y(az[i])
            out[i] = cam @ body
        return out


VIEW_BINS: tuple[ViewBin, ...] = (
    ViewBin("upright, any azimuth"),
    ViewBin("elevation +30", elevation=30.0),
    ViewBin("elevation +60", elevation=60.0),
    ViewBin("elevation -30", elevation=-30.0),
    ViewBin("roll +-30", roll=30.0),
    ViewBin("lying on back/front", body_pitch=90.0),
    ViewBin("lying on the side", body_roll=90.0),
)


def apply_rotations(joints: np.ndarray, rotations: np.ndarray) -> np.ndarray:
    """(N, J, 3) root-relative world joints (mm) seen through (N, 3, 3) rotations -> (N, J, 3) float32."""
    return np.einsum("njk,nlk->njl", np.asarray(joints, np.float64), rotations).astype(np.float32)
