"""3D pose from 2D keypoints by fitting the pose prior (see :mod:`nlrd.fit.fitter` for the model and energy).

from nlrd.fit import PoseFitter
fitter = PoseFitter.from_pretrained()
res = fitter.fit(joints2d, conf, (480, 640), world3d=world_mm)   # (B, 17, 2) px, (B, 17) -> FitResult
res.joints3d                                                     # (B, 17, 3) mm root-relative camera frame
"""

from nlrd.fit.fitter import (
    START_CHECKPOINT,
    FitConfig,
    FitResult,
    PoseFitter,
    load_start_net,
    torso_faces_camera,
    torso_facing,
)

__all__ = ["START_CHECKPOINT", "FitConfig", "FitResult", "PoseFitter", "load_start_net", "torso_faces_camera", "torso_facing"]
