"""Real images and video: one person's 2D/3D keypoints and mask from MediaPipe Pose (weights inside its
wheel), mapped to the 17 Human3.6M joints, and the fixed held-out list of real photos.

Quick start::

    from nlrd.data.images import load_image
    from nlrd.vision import detect_keypoints

    kp = detect_keypoints(load_image("photo.jpg"))  # PersonKeypoints or None
    if kp is not None:
        print(kp.score, kp.joints2d.shape, kp.world3d.shape)  # float, (17, 2) px, (17, 3) mm
"""

from nlrd.vision.framing import clip_frames, keypoint_frames, smooth_frames
from nlrd.vision.heldout import heldout_exercise_photos, is_heldout_exercise, tuning_exercise_photos
from nlrd.vision.keypoints import MIN_SCORE, PersonKeypoints, detect_keypoints, detect_keypoints_clip
from nlrd.vision.landmarks import LANDMARK_NAMES, landmarks_to_joints

__all__ = [
    "LANDMARK_NAMES",
    "MIN_SCORE",
    "PersonKeypoints",
    "clip_frames",
    "detect_keypoints",
    "detect_keypoints_clip",
    "heldout_exercise_photos",
    "is_heldout_exercise",
    "keypoint_frames",
    "landmarks_to_joints",
    "smooth_frames",
    "tuning_exercise_photos",
]
