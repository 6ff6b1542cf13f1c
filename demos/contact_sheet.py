"""Contact sheet of synthetic people: source-style and target-style renders with their 2D joints.

Usage::

    python demos/contact_sheet.py --out out/contact_sheet.png
    python demos/contact_sheet.py --data-root ../shared/data --poses data/ --rows 4 --cols 8 --seed 3

The top half of the grid is the labelled ``source`` style, the bottom half the ``target`` style (real
photographs and panoramas as backgrounds). Over each render the skeleton is drawn from the label:
left side blue, right side red, centre green; joints the renderer marks occluded are hollow.
Poses come from the prepared mocap cache (``--poses``, the ``test`` split) when it exists, otherwise
from ``nlrd.data.synthetic.demo_poses``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from nlrd.data.paths import resolve_data_root
from nlrd.data.synthetic import RenderedSample, demo_poses, render_sample
from nlrd.skeleton import H36M_17

COLOURS = {"left": (40, 110, 255), "right": (235, 50, 40), "centre": (40, 200, 60)}  # RGB


def load_poses(poses_dir: Path | None, n: int, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """(n, 17, 3) mm poses: from the prepared mocap cache if available, else synthetic ones."""
    if poses_dir is not None and (poses_dir / "mocap.npz").is_file():
        from nlrd.data.poses import load_split

        joints = load_split(poses_dir, "test").joints
        return joints[rng.choice(len(joints), n, replace=False)], f"mocap test split ({poses_dir})"
    return demo_poses.random_poses(n, rng), "synthetic demo poses"


def draw_labels(sample: RenderedSample, scale: int) -> np.ndarray:
    """The render upscaled by ``scale`` with bones and joints drawn on it (RGB uint8)."""
    img = cv2.resize(sample.image, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    over = img.copy()
    # pixel centres are at integer coordinates: x_up = scale * (x + 0.5) - 0.5; drawn with 2 bits of
    # sub-pixel precision (shift=2), hence the factor 4
    pts = np.round(4 * (scale * (sample.joints2d.astype(np.float64) + 0.5) - 0.5)).astype(np.int64)
    for parent, child in H36M_17.edges:
        cv2.line(over, tuple(pts[parent]), tuple(pts[child]), COLOURS[H36M_17.side(child)], 1, cv2.LINE_AA, 2)
    for j, p in enumerate(pts):
        cv2.circle(over, tuple(p), 4 * 2, COLOURS[H36M_17.side(j)], -1 if sample.visible[j] else 1, cv2.LINE_AA, 2)
    img = cv2.addWeighted(over, 0.75, img, 0.25, 0.0)
    x0, y0, x1, y1 = scale * (sample.box + 0.5) - 0.5
    cv2.rectangle(img, (int(x0), int(y0)), (int(x1), int(y1)), (255, 255, 255), 1)
    return img


def contact_sheet(
    poses: np.ndarray, rows: int, cols: int, seed: int, size: int, scale: int, backgrounds: Path | None
) -> np.ndarray:
    """(rows * size * scale, cols * size * scale, 3) uint8 RGB grid; top half source, bottom target."""
    tiles = []
    for r in range(rows):
        style = "source" if r < rows // 2 else "target"
        for c in range(cols):
            i = r * cols + c
            s = render_sample(poses[i], style, np.random.default_rng([seed, i]), size, backgrounds)
            tiles.append(draw_labels(s, scale))
    grid = np.concatenate([np.concatenate(tiles[r * cols : (r + 1) * cols], axis=1) for r in range(rows)], axis=0)
    h = size * scale
    for r, text in ((0, "source"), (rows // 2, "target")):
        cv2.putText(grid, text, (6, r * h + 18), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 2, cv2.LINE_AA)
    return grid


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("out/contact_sheet.png"))
    ap.add_argument("--data-root", default=None, help="real data folder (backgrounds/); default $NLRD_DATA")
    ap.add_argument("--poses", type=Path, default=Path("data"), help="prepared mocap folder (mocap.npz)")
    ap.add_argument("--rows", type=int, default=4)
    ap.add_argument("--cols", type=int, default=8)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--scale", type=int, default=2, help="upscaling of each tile for drawing")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.rows < 2 or args.rows % 2:
        ap.error("--rows must be an even number >= 2 (half source, half target)")
    backgrounds = resolve_data_root(args.data_root) / "backgrounds"
    poses, what = load_poses(args.poses, args.rows * args.cols, np.random.default_rng(args.seed))
    grid = contact_sheet(poses, args.rows, args.cols, args.seed, args.size, args.scale, backgrounds)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    print(f"wrote {args.out} ({args.rows}x{args.cols} renders of {what})")


if __name__ == "__main__":
    main()
