"""Plausible synthetic 3D poses for tests, demos and benchmarks when no mocap is at hand.

Poses are built by forward kinematics from joint angles with the skeleton's canonical bone lengths:
an A-pose, and random poses (legs, arms, torso lean drawn from human-like ranges). They are no
substitute for real mocap (``nlrd.data.poses``) but exercise the renderer with varied articulation.
All poses: (17, 3) mm, root-relative, camera-style axes (x right, y down, z forward), the person
upright along -y and facing the camera (-z) before any azimuth is applied.
"""

from __future__ import annotations

import numpy as np

from nlrd.skeleton import H36M_17, Skeleton

# Body axes of a person facing the camera: left = +x, up = -y, facing = -z.
_LEFT = np.array([1.0, 0.0, 0.0])
_UP = np.array([0.0, -1.0, 0.0])
_FWD = np.array([0.0, 0.0, -1.0])


def _rodrigues(axis: np.ndarray, angle_deg: float) -> np.ndarray:
    """Rotation matrix about unit ``axis`` by ``angle_deg`` (right-handed)."""
    a = np.asarray(axis, dtype=np.float64)
    a = a / np.linalg.norm(a)
    t = np.radians(angle_deg)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + np.sin(t) * k + (1 - np.cos(t)) * (k @ k)


def _rotate_towards(v: np.ndarray, target: np.ndarray, angle_deg: float) -> np.ndarray:
    """Rotate unit ``v`` by ``angle_deg`` in the plane spanned by v and ``target`` (towards target)."""
    axis = np.cross(v, target)
    if np.linalg.norm(axis) < 1e-9:
        return v
    return _rodrigues(axis, angle_deg) @ v


def pose_from_angles(angles: dict[str, float] | None = None, skeleton: Skeleton = H36M_17) -> np.ndarray:
    """Forward kinematics from a small set of named angles (degrees); missing ones are 0.

    Names: ``{l,r}_hip_flex`` (knee forward), ``{l,r}_hip_abd`` (leg outward), ``{l,r}_knee``
    (flexion, >= 0), ``{l,r}_sh_abd`` (arm out to the side: 0 down, 90 horizontal, 170 up),
    ``{l,r}_sh_flex`` (arm forward), ``{l,r}_elbow`` (flexion, >= 0), ``{l,r}_elbow_axis``
    (which way the forearm bends), ``lean_fwd``, ``lean_side``, ``twist`` (torso about its axis),
    ``head_fwd``.
    """
    a = {} if angles is None else dict(angles)
    g = lambda k: float(a.get(k, 0.0))  # noqa: E731
    bl = skeleton.bone_lengths.astype(np.float64)
    j = np.zeros((17, 3))
    # torso: lean and twist of the upper body about the pelvis
    up = _rotate_towards(_UP, _FWD, g("lean_fwd"))
    up = _rotate_towards(up, _LEFT, g("lean_side"))
    twist = _rodrigues(up, g("twist"))
    left_up = twist @ (_LEFT - np.dot(_LEFT, up) * up)
    left_up /= np.linalg.norm(left_up)
    fwd_up = np.cross(left_up, up)
    j[7] = up * bl[7]
    j[8] = j[7] + up * bl[8]
    head_dir = _rotate_towards(up, fwd_up, 10.0 + g("head_fwd"))
    j[9] = j[8] + head_dir * bl[9]
    j[10] = j[9] + _rotate_towards(up, fwd_up, -5.0 + 0.5 * g("head_fwd")) * bl[10]
    # legs
    for side, sgn, hip, knee, ankle in (("r", -1.0, 1, 2, 3), ("l", 1.0, 4, 5, 6)):
        j[hip] = sgn * _LEFT * bl[hip]
        thigh = _rotate_towards(-_UP, _FWD, g(f"{side}_hip_flex"))
        thigh = _rotate_towards(thigh, sgn * _LEFT, g(f"{side}_hip_abd"))
        j[knee] = j[hip] + thigh * bl[knee]
        shin = _rotate_towards(thigh, -_FWD, g(f"{side}_knee")) if g(f"{side}_knee") > 0 else thigh
        j[ankle] = j[knee] + shin * bl[ankle]
    # arms, in the twisted upper-body frame
    for side, sgn, sh, el, wr in (("r", -1.0, 14, 15, 16), ("l", 1.0, 11, 12, 13)):
        j[sh] = j[8] + sgn * left_up * bl[sh] - up * 25.0
        upper = _rotate_towards(-up, sgn * left_up, g(f"{side}_sh_abd"))
        upper = _rotate_towards(upper, fwd_up, g(f"{side}_sh_flex"))
        j[el] = j[sh] + upper * bl[el]
        # elbow bends the forearm towards a direction around the upper arm (default: forward)
        bend_dir = _rodrigues(upper, sgn * g(f"{side}_elbow_axis")) @ (fwd_up - np.dot(fwd_up, upper) * upper)
        if np.linalg.norm(bend_dir) < 1e-6:
            bend_dir = up
        fore = _rotate_towards(upper, bend_dir / np.linalg.norm(bend_dir), g(f"{side}_elbow"))
        j[wr] = j[el] + fore * bl[wr]
    return j.astype(np.float32)


def a_pose(arm_abduction_deg: float = 30.0, skeleton: Skeleton = H36M_17) -> np.ndarray:
    """(17, 3) mm standing pose, arms ``arm_abduction_deg`` out from the body, facing the camera."""
    return pose_from_angles({"l_sh_abd": arm_abduction_deg, "r_sh_abd": arm_abduction_deg,
                             "l_elbow": 10.0, "r_elbow": 10.0}, skeleton)  # fmt: skip


def random_angles(rng: np.random.Generator) -> dict[str, float]:
    """Joint angles (degrees) drawn from everyday ranges (standing, walking, reaching, squatting)."""
    a: dict[str, float] = {}
    squat = rng.random() < 0.15
    for side in ("l", "r"):
        flex = rng.uniform(60, 110) if squat else rng.normal(5, 25)
        a[f"{side}_hip_flex"] = float(np.clip(flex, -40, 120))
        a[f"{side}_hip_abd"] = float(np.clip(rng.normal(5, 10), -10, 50))
        a[f"{side}_knee"] = float(np.clip(flex * 1.3 if squat else abs(rng.normal(0, 30)) + max(flex, 0) * 0.5, 0, 140))
        a[f"{side}_sh_abd"] = float(rng.uniform(5, 170) if rng.random() < 0.4 else rng.uniform(5, 60))
        a[f"{side}_sh_flex"] = float(rng.uniform(-40, 110))
        a[f"{side}_elbow"] = float(rng.uniform(0, 140))
        a[f"{side}_elbow_axis"] = float(rng.uniform(-60, 90))
    a["lean_fwd"] = float(np.clip(rng.normal(8, 12) + (25 if squat else 0), -20, 60))
    a["lean_side"] = float(rng.normal(0, 6))
    a["twist"] = float(rng.normal(0, 15))
    a["head_fwd"] = float(rng.normal(0, 10))
    return a


def random_poses(n: int, rng: np.random.Generator, skeleton: Skeleton = H36M_17) -> np.ndarray:
    """(n, 17, 3) float32 mm random poses, each facing the camera (the renderer adds the view)."""
    return np.stack([pose_from_angles(random_angles(rng), skeleton) for _ in range(n)])


def random_windows(m: int, rng: np.random.Generator, length: int = 30, skeleton: Skeleton = H36M_17) -> np.ndarray:
    """(m, length, 17, 3) float32 mm smooth motions: joint angles eased between two random poses."""
    out = np.empty((m, length, 17, 3), dtype=np.float32)
    for i in range(m):
        a0, a1 = random_angles(rng), random_angles(rng)
        for t in range(length):
            s = 0.5 - 0.5 * np.cos(np.pi * t / max(length - 1, 1))
            out[i, t] = pose_from_angles({k: (1 - s) * a0[k] + s * a1[k] for k in a0}, skeleton)
    return out
