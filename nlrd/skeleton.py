"""The 17-joint Human3.6M skeleton that every part of the project speaks.

Joint order (index: name): 0 pelvis, 1 r_hip, 2 r_knee, 3 r_ankle, 4 l_hip, 5 l_knee, 6 l_ankle,
7 spine, 8 thorax, 9 neck (nose), 10 head, 11 l_shoulder, 12 l_elbow, 13 l_wrist, 14 r_shoulder,
15 r_elbow, 16 r_wrist.

Units are millimetres. Coordinates are camera-style: x right, y down, z forward (away from the
camera). Poses are root-relative (pelvis at the origin).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Skeleton:
    """A kinematic tree of named joints.

    Attributes:
        name: identifier stored in checkpoints (e.g. ``"h36m_17"``).
        joint_names: one name per joint, in array order.
        parents: parent index per joint; -1 for the root (which must be joint 0).
        left_right_pairs: (left, right) joint index pairs swapped by a mirror.
        bone_lengths_mm: canonical length of the bone ending at each joint, mm (root: 0).
        view_variant_joints: joints whose bone direction stays in the root-relative (camera)
            frame in the bone-vector representation; all other bones are expressed in the torso
            frame those directions define (see ``nlrd.kinematics``).
        torso_joint: the joint whose root-relative direction defines the torso's up axis
            (thorax for H36M); its direction is kept in the representation's root slot.
    """

    name: str
    joint_names: tuple[str, ...]
    parents: tuple[int, ...]
    left_right_pairs: tuple[tuple[int, int], ...]
    bone_lengths_mm: tuple[float, ...]
    view_variant_joints: tuple[int, ...]
    torso_joint: int
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        n = len(self.joint_names)
        if len(self.parents) != n or len(self.bone_lengths_mm) != n:
            raise ValueError(f"skeleton {self.name!r}: names, parents and bone lengths differ in length")
        if self.parents[0] != -1 or any(p >= j or p < 0 for j, p in enumerate(self.parents) if j > 0):
            raise ValueError(f"skeleton {self.name!r}: joint 0 must be the root and parents must precede children")
        object.__setattr__(self, "_index", {nm: i for i, nm in enumerate(self.joint_names)})

    @property
    def num_joints(self) -> int:
        return len(self.joint_names)

    def index(self, joint_name: str) -> int:
        """Index of a joint by name; ValueError naming the known joints otherwise."""
        try:
            return self._index[joint_name]
        except KeyError:
            raise ValueError(f"unknown joint {joint_name!r}; expected one of {self.joint_names}") from None

    @property
    def flip_permutation(self) -> np.ndarray:
        """(J,) int array: joint j of a mirrored pose takes the data of joint perm[j]."""
        perm = np.arange(self.num_joints)
        for left, right in self.left_right_pairs:
            perm[left], perm[right] = right, left
        return perm

    @property
    def bone_lengths(self) -> np.ndarray:
        """(J,) float32 canonical bone lengths in mm (0 for the root)."""
        return np.asarray(self.bone_lengths_mm, dtype=np.float32)

    @property
    def edges(self) -> list[tuple[int, int]]:
        """(parent, child) pairs for drawing the skeleton."""
        return [(p, j) for j, p in enumerate(self.parents) if p >= 0]

    def side(self, joint: int) -> str:
        """'left', 'right' or 'centre' for colouring plots."""
        for left, right in self.left_right_pairs:
            if joint == left:
                return "left"
            if joint == right:
                return "right"
        return "centre"


H36M_JOINT_NAMES: tuple[str, ...] = (
    "pelvis", "r_hip", "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle", "spine", "thorax",
    "neck", "head", "l_shoulder", "l_elbow", "l_wrist", "r_shoulder", "r_elbow", "r_wrist",
)  # fmt: skip
H36M_PARENTS: tuple[int, ...] = (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 9, 8, 11, 12, 8, 14, 15)

# Canonical bone lengths (mm) of the bone ending at each joint: the mean of the CMU and the Bandai
# Namco per-bone medians (each rig weighs the same), averaged over left/right so it is symmetric. Regenerate with
# `python -m training.prepare_data --print-bone-lengths`.
_CANONICAL_BONE_LENGTHS_MM: tuple[float, ...] = (
    0.0, 105.0, 409.6, 409.6, 105.0, 409.6, 409.6, 159.2, 206.2, 108.6, 100.8,
    156.1, 261.2, 206.3, 156.1, 261.2, 206.3,
)  # fmt: skip

H36M_17 = Skeleton(
    name="h36m_17",
    joint_names=H36M_JOINT_NAMES,
    parents=H36M_PARENTS,
    left_right_pairs=((4, 1), (5, 2), (6, 3), (11, 14), (12, 15), (13, 16)),
    bone_lengths_mm=_CANONICAL_BONE_LENGTHS_MM,
    view_variant_joints=(1, 4),
    torso_joint=8,
)

SKELETONS: dict[str, Skeleton] = {H36M_17.name: H36M_17}


def get_skeleton(name: str) -> Skeleton:
    """Look a skeleton up by the name stored in checkpoints."""
    if name not in SKELETONS:
        raise ValueError(f"unknown skeleton {name!r}; known: {sorted(SKELETONS)}")
    return SKELETONS[name]

# The 12 limb joints that 2D agreement with a real-image keypoint model is scored on (shoulders, elbows,
# wrists, hips, knees, ankles): joints both models place; the pelvis, spine, thorax, neck and head are
# defined differently by MediaPipe's landmarks and the mocap skeleton.
LIMB_JOINT_NAMES: tuple[str, ...] = ("l_shoulder", "l_elbow", "l_wrist", "r_shoulder", "r_elbow", "r_wrist",
                                     "l_hip", "l_knee", "l_ankle", "r_hip", "r_knee", "r_ankle")  # fmt: skip
LIMB_JOINTS: tuple[int, ...] = tuple(H36M_JOINT_NAMES.index(n) for n in LIMB_JOINT_NAMES)
