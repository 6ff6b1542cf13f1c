"""NLRD: Non-Local Latent Relation Distillation for self-adaptive 3D human pose estimation.

Quick start::

    from nlrd import PosePrior
    prior = PosePrior.from_pretrained()
    joints = prior.decode(prior.sample(4, seed=0))   # (4, 17, 3) mm
"""

from nlrd.inference import PosePredictor, PoseResult
from nlrd.priors import MotionPrior, PosePrior
from nlrd.skeleton import H36M_17, Skeleton

__version__ = "0.1.0"
__all__ = ["H36M_17", "MotionPrior", "PosePredictor", "PosePrior", "PoseResult", "Skeleton", "__version__"]
