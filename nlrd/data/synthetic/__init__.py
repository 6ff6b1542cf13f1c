"""Synthetic people rendered from real mocap poses: the labelled source domain and a held-out target.

Quick start::

    import numpy as np
    from nlrd.data.synthetic import render_sample, demo_poses

    s = render_sample(demo_poses.a_pose(), "target", np.random.default_rng(0))
    s.image      # (128, 128, 3) uint8 RGB
    s.joints3d   # (17, 3) mm, root-relative, camera frame; projects to s.joints2d with s.K

Modules: ``body`` (posed capsule mesh), ``anny_body`` (posed Anny mesh, for the ``*_anny`` styles),
``camera`` (views and crops), ``raster`` (z-buffered shading), ``appearance`` (materials),
``backgrounds`` (procedural and real backgrounds), ``effects`` (camera effects), ``styles`` (source /
target), ``render`` (samples and clips), ``datasets`` (streams and fixed test sets), ``demo_poses``
(synthetic poses for tests and demos).
"""

from nlrd.data.synthetic import demo_poses
from nlrd.data.synthetic.backgrounds import BackgroundBank
from nlrd.data.synthetic.body import BodyMesh, BodyShape, build_body
from nlrd.data.synthetic.camera import Camera, CameraRanges
from nlrd.data.synthetic.datasets import (
    SyntheticClipDataset,
    SyntheticPoseDataset,
    fixed_test_clips,
    fixed_test_set,
)
from nlrd.data.synthetic.render import RenderedClip, RenderedSample, render_clip, render_sample
from nlrd.data.synthetic.styles import STYLES, Style, get_style

__all__ = [
    "STYLES",
    "BackgroundBank",
    "BodyMesh",
    "BodyShape",
    "Camera",
    "CameraRanges",
    "RenderedClip",
    "RenderedSample",
    "Style",
    "SyntheticClipDataset",
    "SyntheticPoseDataset",
    "build_body",
    "demo_poses",
    "fixed_test_clips",
    "fixed_test_set",
    "get_style",
    "render_clip",
    "render_sample",
]
