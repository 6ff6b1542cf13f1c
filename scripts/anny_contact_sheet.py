"""Contact sheet of synthetic renders per style, to eyeball a body model or a style.

Usage::

    python scripts/anny_contact_sheet.py --out /tmp/anny_sheet.png                  # source_anny + target_anny
    python scripts/anny_contact_sheet.py --styles source target --n 16 --scale 2     # the capsule styles

Poses: real mocap from ``data/mocap.npz`` (test split) when present, else ``demo_poses``; a quarter of
them are the test split's most extreme ones (lying, arms overhead, deep bends). Each style gets
``--n`` tiles (4 per row, labelled with the style), with the 2D joints drawn when ``--joints``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from nlrd.data.paths import REPO_ROOT, resolve_data_root
from nlrd.data.synthetic import demo_poses, render_sample
from nlrd.data.synthetic.backgrounds import BackgroundBank
from nlrd.skeleton import H36M_17


def pick_poses(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 17, 3) mm: random test-split poses plus its most extreme ones (or demo poses)."""
    path = REPO_ROOT / "data" / "mocap.npz"
    if not path.exists():
        return demo_poses.random_poses(n, rng)
    J = np.load(path)["test_joints"].astype(np.float64)
    up = -np.array([0.0, 1.0, 0.0])
    spine = J[:, 8] - J[:, 0]
    lying = np.abs(spine @ up) / np.linalg.norm(spine, axis=1)  # small: torso horizontal
    overhead = np.minimum(J[:, 13] @ up, J[:, 16] @ up) - J[:, 10] @ up  # > 0: both wrists above the head
    n_ext = n // 4
    extreme = list(np.argsort(lying)[: n_ext // 2 * 50 : 50]) + list(np.argsort(-overhead)[: (n_ext - n_ext // 2) * 50 : 50])
    rest = rng.choice(len(J), n - len(extreme), replace=False)
    idx = np.array(list(rest) + extreme)
    return J[idx]


def draw_joints(img: np.ndarray, uv: np.ndarray, visible: np.ndarray) -> None:
    for a, b in H36M_17.edges:
        cv2.line(img, tuple(np.round(uv[a]).astype(int)), tuple(np.round(uv[b]).astype(int)), (255, 255, 0), 1)
    for q, v in zip(uv, visible, strict=True):
        cv2.circle(img, tuple(np.round(q).astype(int)), 1, (0, 255, 0) if v else (255, 0, 0), -1)


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("/tmp/anny_sheet.png"))
    ap.add_argument("--styles", nargs="+", default=["source_anny", "target_anny"])
    ap.add_argument("--n", type=int, default=16, help="tiles per style")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--scale", type=int, default=2, help="upscale each tile (nearest) for viewing")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--joints", action="store_true", help="draw the 2D joints (green visible, red hidden)")
    ap.add_argument("--data-root", default=None, help="real data folder (backgrounds/); default $NLRD_DATA")
    args = ap.parse_args(argv)
    bank = BackgroundBank.from_folders(resolve_data_root(args.data_root) / "backgrounds")
    rng = np.random.default_rng(args.seed)
    poses = pick_poses(args.n, rng)
    rows = []
    for style in args.styles:
        tiles = []
        for p in poses:
            s = render_sample(p, style, rng, args.size, bank)
            img = np.ascontiguousarray(s.image)
            if args.joints:
                draw_joints(img, s.joints2d, s.visible)
            tiles.append(cv2.resize(img, None, fx=args.scale, fy=args.scale, interpolation=cv2.INTER_NEAREST))
        tiles[0] = tiles[0].copy()
        cv2.putText(tiles[0], style, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
        for i in range(0, len(tiles), 4):
            row = tiles[i : i + 4] + [np.zeros_like(tiles[0])] * (4 - len(tiles[i : i + 4]))
            rows.append(np.concatenate(row, axis=1))
    sheet = np.concatenate(rows, axis=0)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    print(f"wrote {args.out} ({sheet.shape[1]}x{sheet.shape[0]})")
    return args.out


if __name__ == "__main__":
    main()
