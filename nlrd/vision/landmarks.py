"""MediaPipe Pose's 33 landmarks -> the 17 Human3.6M joints (:data:`nlrd.skeleton.H36M_17`).

MediaPipe (BlazePose) marks surface points: its "hip" landmarks sit on the outside of the pelvis
rather than at the mocap hip joint centres, and the pelvis, spine, thorax, neck/nose and head-top of
the Human3.6M skeleton have no landmark at all. Every joint is therefore a fixed *affine* combination
of a few nearby landmarks (weights sum to 1, so the mapping commutes with translation, rotation and
scale of the whole body and works the same in pixels and in millimetres). The weights are fitted by
least squares on the project's own labelled renders (exact 3D joints and 2D projections) by
``scripts/calibrate_landmarks.py``, once for image pixels (:data:`WEIGHTS_2D`) and once for
MediaPipe's metric world landmarks (:data:`WEIGHTS_3D`). Left/right pairs share mirrored weights.

Landmark conventions (MediaPipe Pose, "left"/"right" are the person's own sides, as in H36M_17):
``landmarks2d`` (33, 3) = x px, y px (pixel centres at integers), visibility in [0, 1];
``landmarks3d`` (33, 3) = world landmarks in mm, origin at the centre between the hip landmarks,
camera-aligned axes x right, y down, z forward (away from the camera).
"""

from __future__ import annotations

import numpy as np

from nlrd.skeleton import H36M_17

NUM_LANDMARKS = 33
LANDMARK_NAMES: tuple[str, ...] = (
    "nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye", "right_eye_outer",
    "left_ear", "right_ear", "mouth_left", "mouth_right", "left_shoulder", "right_shoulder", "left_elbow",
    "right_elbow", "left_wrist", "right_wrist", "left_pinky", "right_pinky", "left_index", "right_index",
    "left_thumb", "right_thumb", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
    "left_heel", "right_heel", "left_foot_index", "right_foot_index",
)  # fmt: skip
LM = {name: i for i, name in enumerate(LANDMARK_NAMES)}

# Landmark index of the mirror-image landmark (left <-> right), used to tie left/right weights.
LANDMARK_FLIP: tuple[int, ...] = tuple(
    LM[n.replace("left_", "#").replace("right_", "left_").replace("#", "right_")] for n in LANDMARK_NAMES
)

# The uncalibrated, "obvious" mapping: each limb joint = its namesake landmark, pelvis = mid-hips,
# thorax = mid-shoulders, spine = halfway between them, neck/nose = nose, head = mid-ears pushed up
# away from the shoulders. Only the calibration script's "before" column uses it.
NAIVE_WEIGHTS: dict[str, dict[str, float]] = {
    "pelvis": {"left_hip": 0.5, "right_hip": 0.5},
    "r_hip": {"right_hip": 1.0},
    "r_knee": {"right_knee": 1.0},
    "r_ankle": {"right_ankle": 1.0},
    "l_hip": {"left_hip": 1.0},
    "l_knee": {"left_knee": 1.0},
    "l_ankle": {"left_ankle": 1.0},
    "spine": {"left_hip": 0.25, "right_hip": 0.25, "left_shoulder": 0.25, "right_shoulder": 0.25},
    "thorax": {"left_shoulder": 0.5, "right_shoulder": 0.5},
    "neck": {"nose": 1.0},
    "head": {"left_ear": 0.75, "right_ear": 0.75, "left_shoulder": -0.25, "right_shoulder": -0.25},
    "l_shoulder": {"left_shoulder": 1.0},
    "l_elbow": {"left_elbow": 1.0},
    "l_wrist": {"left_wrist": 1.0},
    "r_shoulder": {"right_shoulder": 1.0},
    "r_elbow": {"right_elbow": 1.0},
    "r_wrist": {"right_wrist": 1.0},
}

# Calibrated weights (joint -> {landmark: weight}, each row sums to 1), pasted from the output of
# `python scripts/calibrate_landmarks.py --n 1000 --upscale 256 --seed 0` (renders of train-split mocap poses,
# alternating source and target style, 128 px upscaled to 256; MediaPipe found a person in 498/500 source and
# 249/500 target renders). Residuals on the 149 renders kept out of the fit, median / mean over joints:
#   2D: 2.31 / 8.72 px naive -> 1.46 / 8.05 px calibrated (at 128 px; the means hold MediaPipe's
#       front/back confusions, whose left/right are swapped); pelvis 3.56 -> 1.02, neck 3.99 -> 0.88,
#       head 2.64 -> 1.35, thorax 1.54 -> 0.88, hips ~2.1 -> ~1.7 px (medians).
#   3D: 158.8 / 193.4 mm naive -> 93.3 / 137.9 mm calibrated (root-relative); PA-MPJPE 99.8 -> 79.9 mm.
# In 3D only differences to the pelvis matter (world3d is root-relative), so the 3D pelvis row is simply the
# origin that fits all other joints best, not an anatomical pelvis.
# fmt: off
WEIGHTS_2D: dict[str, dict[str, float]] = {
    "pelvis": {
        "left_shoulder": 0.0928, "right_shoulder": 0.0928, "left_hip": 0.3825, "right_hip": 0.3825,
        "left_knee": 0.0247, "right_knee": 0.0247,
    },
    "r_hip": {
        "left_shoulder": -0.1191, "right_shoulder": 0.2205, "left_hip": 0.1796, "right_hip": 0.6461,
        "right_knee": 0.0729,
    },
    "r_knee": {
        "right_hip": -0.0403, "right_knee": 1.0634, "right_ankle": -0.0231,
    },
    "r_ankle": {
        "right_knee": -0.0490, "right_ankle": 0.9251, "right_heel": 0.1102, "right_foot_index": 0.0137,
    },
    "l_hip": {
        "left_shoulder": 0.2205, "right_shoulder": -0.1191, "left_hip": 0.6461, "right_hip": 0.1796,
        "left_knee": 0.0729,
    },
    "l_knee": {
        "left_hip": -0.0403, "left_knee": 1.0634, "left_ankle": -0.0231,
    },
    "l_ankle": {
        "left_knee": -0.0490, "left_ankle": 0.9251, "left_heel": 0.1102, "left_foot_index": 0.0137,
    },
    "spine": {
        "left_shoulder": 0.2438, "right_shoulder": 0.2438, "left_hip": 0.2840, "right_hip": 0.2840,
        "left_knee": -0.0278, "right_knee": -0.0278,
    },
    "thorax": {
        "nose": -0.0745, "left_ear": 0.1422, "right_ear": 0.1422, "left_shoulder": 0.3868, "right_shoulder": 0.3869,
        "left_hip": 0.0082, "right_hip": 0.0082,
    },
    "neck": {
        "nose": -0.5556, "left_eye": 0.2552, "right_eye": 0.2552, "left_ear": 0.4763, "right_ear": 0.4763,
        "mouth_left": -0.0419, "mouth_right": -0.0419, "left_shoulder": 0.0882, "right_shoulder": 0.0882,
    },
    "head": {
        "nose": -0.3409, "left_eye": -0.0264, "right_eye": -0.0264, "left_ear": 1.2091, "right_ear": 1.2092,
        "mouth_left": -0.2533, "mouth_right": -0.2533, "left_shoulder": -0.2590, "right_shoulder": -0.2590,
    },
    "l_shoulder": {
        "left_ear": -0.1416, "left_shoulder": 1.1030, "right_shoulder": 0.0215, "left_elbow": -0.0278,
        "left_hip": 0.0449,
    },
    "l_elbow": {
        "left_shoulder": -0.1223, "left_elbow": 1.0964, "left_wrist": 0.0259,
    },
    "l_wrist": {
        "left_elbow": 0.0562, "left_wrist": 0.7291, "left_pinky": 0.1696, "left_index": 0.0831, "left_thumb": -0.0380,
    },
    "r_shoulder": {
        "right_ear": -0.1416, "left_shoulder": 0.0215, "right_shoulder": 1.1030, "right_elbow": -0.0278,
        "right_hip": 0.0449,
    },
    "r_elbow": {
        "right_shoulder": -0.1223, "right_elbow": 1.0964, "right_wrist": 0.0259,
    },
    "r_wrist": {
        "right_elbow": 0.0562, "right_wrist": 0.7291, "right_pinky": 0.1696, "right_index": 0.0831,
        "right_thumb": -0.0380,
    },
}
WEIGHTS_3D: dict[str, dict[str, float]] = {
    "pelvis": {
        "left_shoulder": 0.2413, "right_shoulder": 0.2415, "left_hip": 0.1567, "right_hip": 0.1567,
        "left_knee": 0.1019, "right_knee": 0.1019,
    },
    "r_hip": {
        "left_shoulder": 0.0420, "right_shoulder": 0.3710, "left_hip": 0.1033, "right_hip": 0.2642,
        "right_knee": 0.2195,
    },
    "r_knee": {
        "right_hip": 0.1299, "right_knee": 1.0059, "right_ankle": -0.1358,
    },
    "r_ankle": {
        "right_knee": 0.1084, "right_ankle": 1.5201, "right_heel": -0.0940, "right_foot_index": -0.5345,
    },
    "l_hip": {
        "left_shoulder": 0.3710, "right_shoulder": 0.0420, "left_hip": 0.2642, "right_hip": 0.1033,
        "left_knee": 0.2195,
    },
    "l_knee": {
        "left_hip": 0.1299, "left_knee": 1.0059, "left_ankle": -0.1358,
    },
    "l_ankle": {
        "left_knee": 0.1084, "left_ankle": 1.5201, "left_heel": -0.0940, "left_foot_index": -0.5345,
    },
    "spine": {
        "left_shoulder": 0.3351, "right_shoulder": 0.3353, "left_hip": 0.1513, "right_hip": 0.1513,
        "left_knee": 0.0135, "right_knee": 0.0135,
    },
    "thorax": {
        "nose": -0.0753, "left_ear": 0.1551, "right_ear": 0.1551, "left_shoulder": 0.3851, "right_shoulder": 0.3850,
        "left_hip": -0.0025, "right_hip": -0.0025,
    },
    "neck": {
        "nose": -0.4230, "left_eye": 0.2408, "right_eye": 0.2408, "left_ear": 0.4105, "right_ear": 0.4105,
        "mouth_left": -0.0620, "mouth_right": -0.0620, "left_shoulder": 0.1222, "right_shoulder": 0.1222,
    },
    "head": {
        "nose": -0.1543, "left_eye": 0.0746, "right_eye": 0.0746, "left_ear": 0.8958, "right_ear": 0.8959,
        "mouth_left": -0.2037, "mouth_right": -0.2037, "left_shoulder": -0.1896, "right_shoulder": -0.1896,
    },
    "l_shoulder": {
        "left_ear": -0.0062, "left_shoulder": 1.0042, "right_shoulder": 0.0270, "left_elbow": -0.0546,
        "left_hip": 0.0296,
    },
    "l_elbow": {
        "left_shoulder": -0.0163, "left_elbow": 1.1012, "left_wrist": -0.0849,
    },
    "l_wrist": {
        "left_elbow": 0.2525, "left_wrist": 0.6870, "left_pinky": -0.0182, "left_index": 0.0558, "left_thumb": 0.0229,
    },
    "r_shoulder": {
        "right_ear": -0.0062, "left_shoulder": 0.0270, "right_shoulder": 1.0042, "right_elbow": -0.0546,
        "right_hip": 0.0296,
    },
    "r_elbow": {
        "right_shoulder": -0.0163, "right_elbow": 1.1012, "right_wrist": -0.0849,
    },
    "r_wrist": {
        "right_elbow": 0.2525, "right_wrist": 0.6870, "right_pinky": -0.0182, "right_index": 0.0558,
        "right_thumb": 0.0229,
    },
}
# fmt: on

# A landmark contributes to a joint's confidence when its weight is at least this large (in size):
# tiny extrapolation terms should not make a joint unreliable.
_CONF_MIN_WEIGHT = 0.1


def weight_matrix(weights: dict[str, dict[str, float]]) -> np.ndarray:
    """(17, 33) float64 matrix of a joint -> {landmark: weight} table in H36M_17 order.

    Raises ValueError for an unknown joint or landmark name, a missing joint, or a row whose weights
    do not sum to 1 (the mapping must be affine)."""
    names = H36M_17.joint_names
    if set(weights) != set(names):
        raise ValueError(f"weight table must name exactly the joints {names}, got {sorted(weights)}")
    w = np.zeros((len(names), NUM_LANDMARKS))
    for j, name in enumerate(names):
        for lm, v in weights[name].items():
            if lm not in LM:
                raise ValueError(f"unknown MediaPipe landmark {lm!r} for joint {name!r}")
            w[j, LM[lm]] = v
        if abs(w[j].sum() - 1.0) > 1e-3:
            raise ValueError(f"weights of joint {name!r} sum to {w[j].sum():.4f}, expected 1")
    return w


W2D = weight_matrix(WEIGHTS_2D)
W3D = weight_matrix(WEIGHTS_3D)


def map_points(landmarks: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(..., 33, D) landmarks -> (..., 17, D) joints with a (17, 33) weight matrix, float32."""
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.ndim < 2 or lm.shape[-2] != NUM_LANDMARKS:
        raise ValueError(f"expected landmarks of shape (..., {NUM_LANDMARKS}, D), got {lm.shape}")
    return np.einsum("jl,...ld->...jd", weights, lm).astype(np.float32)


def joint_confidence(landmark_conf: np.ndarray, weights: np.ndarray = W2D) -> np.ndarray:
    """(..., 33) landmark confidences in [0, 1] -> (..., 17) joint confidences: the least confident
    landmark a joint leans on (|weight| >= 0.1), because one bad landmark spoils the combination."""
    c = np.asarray(landmark_conf, dtype=np.float32)
    if c.ndim < 1 or c.shape[-1] != NUM_LANDMARKS:
        raise ValueError(f"expected landmark confidences of shape (..., {NUM_LANDMARKS}), got {c.shape}")
    used = np.abs(weights) >= _CONF_MIN_WEIGHT  # (17, 33)
    masked = np.where(used, c[..., None, :], np.float32(1.0))  # (..., 17, 33)
    return np.clip(masked.min(axis=-1), 0.0, 1.0).astype(np.float32)


def landmarks_to_joints(landmarks2d: np.ndarray, landmarks3d: np.ndarray, landmark_conf: np.ndarray,
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """Map one person's landmarks to the 17 joints.

    Args:
        landmarks2d: (33, 2+) px (only x, y are used).
        landmarks3d: (33, 3) mm world landmarks (camera-aligned axes).
        landmark_conf: (33,) confidences in [0, 1].

    Returns:
        joints2d (17, 2) float32 px; world3d (17, 3) float32 mm, root-relative (pelvis at the
        origin), camera frame x right, y down, z forward; conf (17,) float32 in [0, 1].
    """
    l2 = np.asarray(landmarks2d, dtype=np.float64)
    l3 = np.asarray(landmarks3d, dtype=np.float64)
    if l2.shape[0] != NUM_LANDMARKS or l2.ndim != 2 or l2.shape[1] < 2:
        raise ValueError(f"landmarks2d must be ({NUM_LANDMARKS}, 2 or 3), got {l2.shape}")
    if l3.shape != (NUM_LANDMARKS, 3):
        raise ValueError(f"landmarks3d must be ({NUM_LANDMARKS}, 3), got {l3.shape}")
    joints2d = map_points(l2[:, :2], W2D)
    world = map_points(l3, W3D)
    world = (world - world[0:1]).astype(np.float32)  # root-relative: joint 0 is the pelvis
    return joints2d, world, joint_confidence(landmark_conf, W2D)
