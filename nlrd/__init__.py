"""NLRD: Non-Local Latent Relation Distillation for self-adaptive 3D human pose estimation.

Quick start::

    from nlrd import PosePrior
    prior = PosePrior.from_pretrained()
    joints = prior.decode(prior.sample(4, seed=0))   # (4, 17, 3) mm
"""

from nlrd.cache_dirs import configure_numba_cache

configure_numba_cache()  # before anything imports numba: its kernels are cached outside the package

from nlrd.inference import PosePredictor, PoseResult  # noqa: E402
from nlrd.priors import MotionPrior, PosePrior  # noqa: E402
from nlrd.skeleton import H36M_17, Skeleton  # noqa: E402

__version__ = "0.1.0"
__all__ = ["H36M_17", "MotionPrior", "PosePredictor", "PosePrior", "PoseResult", "Skeleton", "__version__"]
