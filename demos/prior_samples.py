"""Write an interactive HTML of the learned pose prior: a grid of random z and an interpolation walk.

python demos/prior_samples.py --out prior_samples.html
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from nlrd import PosePrior
from nlrd.viz import figure_to_html, pose_grid, sequence_figure


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="prior_samples.html")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint", default=None, help="pose prior (default: the shipped one)")
    args = p.parse_args(argv)
    prior = PosePrior.from_pretrained(args.checkpoint)
    z = prior.sample(12, seed=args.seed)
    grid = pose_grid(prior.decode(z), cols=4, titles=[f"z #{i}" for i in range(12)])
    # Walk through the latent box: straight lines between a few random corners of the walk.
    keys = prior.sample(4, seed=args.seed + 1)
    walk = np.concatenate([np.linspace(a, b, 30, endpoint=False) for a, b in zip(keys[:-1], keys[1:], strict=True)])
    anim = sequence_figure(prior.decode(walk.astype(np.float32)), fps=30, title="interpolation walk in z")
    out = Path(args.out)
    figure_to_html(grid, out.with_name(out.stem + "_grid.html"))
    figure_to_html(anim, out)
    print(f"wrote {out.with_name(out.stem + '_grid.html')} and {out}")


if __name__ == "__main__":
    main()
