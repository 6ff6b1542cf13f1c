"""Command line: ``python -m nlrd predict INPUT [--out result.json] [--bvh out.bvh] [--glb out.glb] ...``.

The only module of the package that parses arguments (the library itself never does); errors in the
input end the program with exit status 2 and one line on stderr, without a traceback.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

VIDEO_SUFFIXES = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"}


def _progress_bar():
    from tqdm import tqdm

    bar: dict[str, tqdm] = {}

    def update(done: int, total: int | None) -> None:
        if "b" not in bar:
            bar["b"] = tqdm(total=total, unit="frame", desc="decoding", file=sys.stderr, leave=False)
        bar["b"].update(done - bar["b"].n)

    return update


def cmd_predict(args: argparse.Namespace) -> int:
    import numpy as np

    from nlrd.data.images import load_image
    from nlrd.export import write_bvh, write_glb, write_json, write_npz
    from nlrd.inference import PosePredictor, photo_checkpoint_dir

    path = Path(args.input)
    if not path.exists():
        raise ValueError(f"{str(path)!r} does not exist")
    box = _parse_box(args.box) if args.box else None
    # Before loading the model and running inference: a bad input or output path must not cost the
    # user the whole run (and must not surface as a traceback from deep inside a writer or a decoder).
    _check_readable(path)
    _check_outputs(args)
    video = path.suffix.lower() in VIDEO_SUFFIXES
    if args.refine and not video:
        raise ValueError("--refine needs a video input")
    t0 = time.perf_counter()
    predictor = PosePredictor.from_pretrained(photo_checkpoint_dir(args.checkpoints), device=args.device)
    if video:
        result = predictor.predict_clip(path, box=box, flip_test=args.flip_test, refine=args.refine, method=args.method,
                                        progress=None if args.quiet else _progress_bar())  # fmt: skip
    else:
        result = predictor.predict_image(load_image(path), box=box, flip_test=args.flip_test, method=args.method)
    kw = dict(fps=result.fps, boxes=result.boxes, scores=result.scores, valid=result.valid, z=result.z)
    written = []
    if args.out:
        written.append(str(write_json(args.out, result.joints3d, **kw)))
    if args.npz:
        written.append(str(write_npz(args.npz, result.joints3d, **kw)))
    if args.bvh:
        written.append(str(write_bvh(args.bvh, result.joints3d, fps=result.fps)))
    if args.glb:
        written.append(str(write_glb(args.glb, result.joints3d, fps=result.fps)))
    found = int(np.sum(result.valid))
    print(f"{path.name}: {result.num_frames} frame(s), person found in {found}, model {predictor.meta.get('image_checkpoint')}, "
          f"{time.perf_counter() - t0:.1f} s" + (f"; wrote {', '.join(written)}" if written else ""))  # fmt: skip
    return 0


MIN_FREE_BYTES = 1 << 20  # refuse an output folder with less free space than this (the outputs are a few kB to MB)


def _check_readable(path: Path) -> None:
    """The input can be opened and read (a file without read permission, or a read error, is one line).

    ``os.access`` is not enough: it answers yes to root for any file and says nothing of I/O errors,
    so the file is really opened and its first bytes read.
    """
    if path.is_dir():
        raise ValueError(f"{str(path)!r} is a folder, not a file")
    try:
        with path.open("rb") as fh:
            fh.read(16)
    except OSError as exc:
        raise ValueError(f"cannot read {str(path)!r}: {exc.strerror or exc}") from None


def _check_outputs(args: argparse.Namespace) -> None:
    """Every requested output file can be written: its folder exists, is a folder, takes a new file and has
    free space, and the output itself is not a folder.

    The folder is probed by creating (and removing) a temporary file in it rather than asked with
    ``os.access``: that answers yes to root for a read-only folder, and knows nothing of read-only
    mounts' or quota's refusals in every case.
    """
    for flag in ("out", "npz", "bvh", "glb"):
        value = getattr(args, flag, None)
        if not value:
            continue
        out = Path(value)
        parent = out.parent if str(out.parent) else Path(".")
        if out.is_dir():
            raise ValueError(f"--{flag} {value!r} is a folder; give a file name")
        if not parent.exists():
            raise ValueError(f"--{flag} {value!r}: the folder {str(parent)!r} does not exist")
        if not parent.is_dir():
            raise ValueError(f"--{flag} {value!r}: {str(parent)!r} is a file, not a folder")
        try:
            with tempfile.TemporaryFile(dir=parent):
                pass
            if out.exists():  # appending nothing leaves the file as it is, but asks for write access to it
                with out.open("ab"):
                    pass
        except OSError as exc:
            raise ValueError(f"--{flag} {value!r}: the folder {str(parent)!r} is not writable ({exc.strerror or exc})") from None
        try:
            free = shutil.disk_usage(parent).free
        except OSError:
            continue  # no figure for this folder: a full device is still reported when writing
        if free < MIN_FREE_BYTES:
            raise ValueError(f"--{flag} {value!r}: no space left on the device of {str(parent)!r} ({free} bytes free)")


def _parse_box(text: str) -> list[float]:
    """'x0,y0,x1,y1' -> 4 floats (NaN and order are checked against the image later)."""
    try:
        box = [float(v) for v in text.split(",")]
    except ValueError:
        box = []
    if len(box) != 4:
        raise ValueError(f"--box needs 4 comma-separated numbers x0,y0,x1,y1, got {text!r}")
    return box


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m nlrd", description="NLRD: 3D human pose from images and videos")
    sub = p.add_subparsers(dest="command", required=True)
    pr = sub.add_parser("predict", help="predict 3D poses for an image or a video")
    pr.add_argument("input", help="an image (png, jpg, ...) or a video (mp4, mov, ...)")
    pr.add_argument("--out", help="write the result as JSON")
    pr.add_argument("--npz", help="write the result as NPZ")
    pr.add_argument("--bvh", help="write the motion as BVH (a skeleton with solved rotations, at the clip's own frame rate)")
    pr.add_argument("--glb", help="write the skeleton as GLB (a clip: an animation at its own frame rate)")
    pr.add_argument("--box", help="person box x0,y0,x1,y1 in pixels instead of detection")
    pr.add_argument("--flip-test", action="store_true", help="average with the mirrored prediction")
    pr.add_argument("--method", default="fit", choices=["fit", "g"],
                    help="fit: the pose prior fitted to MediaPipe's 2D keypoints and 3D cues, started from G (default, "
                         "for real photos); g: the image network G alone (the paper's model)")
    pr.add_argument("--refine", action="store_true", help="smooth a clip through the motion prior")
    pr.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    pr.add_argument("--checkpoints", default=None, help="folder of weights (default: the shipped ones; its views/ "
                    "sub-folder, the models built on the view-covering prior, when it has one)")
    pr.add_argument("--quiet", action="store_true", help="no progress bar")
    pr.set_defaults(func=cmd_predict)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # unreadable input, full device, ...: one line, not a traceback
        where = f" {exc.filename!r}" if exc.filename else ""
        print(f"error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
