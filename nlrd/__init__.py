"""NLRD: Non-Local Latent Relation Distillation for self-adaptive 3D human pose estimation."""

from nlrd.skeleton import H36M_17, Skeleton

__version__ = "0.1.0"
__all__ = ["H36M_17", "Skeleton", "__version__"]
