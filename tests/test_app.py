"""The Gradio app (app.py): handlers called directly, then the served app through gradio_client.

The handler tests build a small context in-process (200-pose bank, one synthetic example). The
client tests start ``app.py`` as a subprocess on a free 127.0.0.1 port with one torch thread and call
every named endpoint, including bad uploads (a text file as a photo, a corrupt mp4) after which the
next call must still work. Weights: ``checkpoints/`` when it holds an image model, else
``$NLRD_TEST_CHECKPOINTS``, else ``<tmp>/ckpt`` (the pilot folder used while the image model trains).
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import cv2
import numpy as np
import pytest
import torch

from nlrd.data.synthetic import demo_poses, render_clip
from nlrd.inference import IMAGE_CHECKPOINTS, PosePredictor
from nlrd.priors import POSE_CHECKPOINT
from nlrd.transforms import RELATIONS, flip_image, flip_pose

REPO = Path(__file__).resolve().parents[1]
ENDPOINTS = {"/predict_image", "/predict_clip", "/decode_latent", "/relation_pair", "/adapt"}


# ----------------------------------------------------------------------------- shared helpers
def checkpoint_dir() -> Path:
    """The weights to test with (see the module docstring), or skip."""
    candidates = [REPO / "checkpoints", os.environ.get("NLRD_TEST_CHECKPOINTS"), Path(tempfile.gettempdir()) / "ckpt"]
    for c in candidates:
        if c and (Path(c) / POSE_CHECKPOINT).exists() and any((Path(c) / n).exists() for n in IMAGE_CHECKPOINTS):
            return Path(c)
    pytest.skip("no checkpoint folder with an image model (checkpoints/ or $NLRD_TEST_CHECKPOINTS)")


def load_app_module() -> ModuleType:
    """app.py lives at the repository root, outside the package: import it by path."""
    if "nlrd_app" in sys.modules:
        return sys.modules["nlrd_app"]
    spec = importlib.util.spec_from_file_location("nlrd_app", REPO / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["nlrd_app"] = module  # dataclasses look their module up while the class is created
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_test_clip(path: Path, frames: int = 10, size: int = 160) -> Path:
    """A short synthetic mp4 (mp4v) of a rendered person."""
    rng = np.random.default_rng(3)
    clip = render_clip(demo_poses.random_windows(1, rng, length=frames)[0], "source", rng, size=size)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (size, size))
    assert writer.isOpened()
    for f in clip.image:
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def write_corrupt_mp4(path: Path) -> Path:
    path.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"not really a video " * 50)
    return path


def start_server(checkpoints: Path, examples: Path | None, log: Path,
                 extra_args: list[str] | None = None) -> tuple[subprocess.Popen, str, float]:  # fmt: skip
    """Run app.py on a free port; returns (process, url, seconds until it served the page)."""
    import httpx

    port = free_port()
    cmd = [sys.executable, str(REPO / "app.py"), "--checkpoints", str(checkpoints), "--port", str(port), "--device", "cpu"]
    if examples is not None:
        cmd += ["--examples", str(examples)]
    # Adapted models from the client tests go to the log's folder, not into the repository.
    cmd += ["--runs-dir", str(log.parent / "runs"), *(extra_args or [])]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 240
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"app.py exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return proc, url, time.perf_counter() - t0
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"app.py did not serve within 240 s:\n{log.read_text()[-3000:]}")


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=20)


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def app() -> ModuleType:
    return load_app_module()


@pytest.fixture(scope="module")
def predictor() -> PosePredictor:
    torch.set_num_threads(1)
    return PosePredictor.from_pretrained(checkpoint_dir(), device="cpu")


@pytest.fixture(scope="module")
def user_examples(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A user's examples folder: one photo and one clip."""
    folder = tmp_path_factory.mktemp("user_examples")
    write_test_clip(folder / "walk.mp4")
    rng = np.random.default_rng(11)
    frame = render_clip(demo_poses.random_windows(1, rng, length=1)[0], "source", rng, size=200).image[0]
    cv2.imwrite(str(folder / "me.jpg"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    (folder / "notes.txt").write_text("not an example")
    return folder


@pytest.fixture(scope="module")
def ctx(app: ModuleType, predictor: PosePredictor, user_examples: Path, tmp_path_factory: pytest.TempPathFactory):
    return app.build_context(predictor, user_examples, temp_dir=tmp_path_factory.mktemp("app_tmp"), bank_size=200,
                             motion_bank_size=16, synthetic_examples=1)  # fmt: skip


def _random_motion_prior(predictor: PosePredictor):
    """An untrained motion prior over the real pose prior: exercises the motion code paths when the
    shipped motion prior is not there yet."""
    from nlrd.models.motion_ae import MotionAEConfig, MotionDecoder, MotionEncoder
    from nlrd.priors import GaussianLatentPrior, MotionPrior

    torch.manual_seed(0)
    cfg = MotionAEConfig(pose_latent_dim=predictor.pose.latent_dim)
    return MotionPrior(predictor.pose, MotionEncoder(cfg), MotionDecoder(cfg), GaussianLatentPrior(cfg.motion_latent_dim),
                       {}, predictor.device)  # fmt: skip


@pytest.fixture(scope="module")
def motion_ctx(app: ModuleType, predictor: PosePredictor, tmp_path_factory: pytest.TempPathFactory):
    """A context whose predictor has a motion prior (the shipped one, else an untrained one)."""
    p = predictor
    with_motion = PosePredictor(p.encoder, p.pose, p.motion or _random_motion_prior(p), p.device, p.meta)
    return app.build_context(with_motion, None, temp_dir=tmp_path_factory.mktemp("app_tmp_motion"), bank_size=100,
                             motion_bank_size=16, synthetic_examples=0)  # fmt: skip


@pytest.fixture(scope="module")
def no_motion_ctx(app: ModuleType, ctx):
    p = ctx.predictor
    return app.AppContext(**{**ctx.__dict__, "predictor": PosePredictor(p.encoder, p.pose, None, p.device, p.meta),
                             "motion_bank_v": None})  # fmt: skip


def _rgb(path: str) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB)


def _trace_count(fig) -> int:
    return len(fig.data)


def _figure(value) -> dict:
    """A handler's plot output as the plotly JSON document (figures and pre-serialised PlotData alike)."""
    from gradio.components.plot import PlotData

    return json.loads(value.plot if isinstance(value, PlotData) else value.to_json())


# ----------------------------------------------------------------------------- start-up work
def test_context_builds_banks_influence_and_examples(app: ModuleType, ctx, user_examples: Path) -> None:
    d, j = ctx.latent_dim, ctx.predictor.skeleton.num_joints
    assert ctx.bank_z.shape == (200, d) and ctx.bank_joints.shape == (200, j, 3)
    assert ctx.influence.shape == (d, j) and (ctx.influence >= 0).all() and ctx.influence.max() > 1.0
    # Synthetic examples are rendered into the temp dir; the user's photo and clip are listed first, the .txt is not.
    assert ctx.image_examples[0] == str(user_examples / "me.jpg") and ctx.clip_examples[0] == str(user_examples / "walk.mp4")
    synthetic = [p for p in ctx.image_examples + ctx.clip_examples if Path(p).parent == ctx.temp_dir / "examples"]
    assert len(synthetic) == 2 and all(Path(p).stat().st_size > 1000 for p in synthetic)
    assert not any(p.endswith(".txt") for p in ctx.image_examples + ctx.clip_examples)
    lo, hi = np.array(ctx.explore_range).T
    assert np.allclose(hi - lo, (hi - lo)[0]) and (hi - lo)[0] > 500  # equal, metric axes


def test_missing_examples_folder_is_refused(app: ModuleType, predictor: PosePredictor, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        app.build_context(predictor, tmp_path / "nope", temp_dir=tmp_path, bank_size=10, synthetic_examples=0)
    for argv in (["--examples", str(tmp_path / "nope")], ["--max-upload-mb", "0"], ["--checkpoints", str(tmp_path / "nope")]):
        with pytest.raises(SystemExit):  # argparse's error exit, before anything is served
            app.main(argv)


# ----------------------------------------------------------------------------- Predict
def test_predict_image_outputs_json_figure_overlay_and_exports(app: ModuleType, ctx) -> None:
    image = _rgb(ctx.image_examples[-1])
    doc, fig, pred = app.predict_image(ctx, image, False)
    assert doc["format"] == "nlrd-pose" and doc["num_frames"] == 1 and len(doc["frames"][0]["joints3d"]) == 17
    assert _trace_count(fig) == 4 and fig.layout.uirevision == app.UIREV_PREDICT
    overlay, files, glb_view, slider, row, status, playing, timer, button = app.show_prediction(ctx, pred)
    preview = pred.preview_glb
    assert glb_view.camera_position[2] >= 3.0  # framed from far enough to see the whole skeleton
    assert overlay.shape == image.shape and overlay.dtype == np.uint8 and not np.array_equal(overlay, image)
    assert [Path(f).suffix for f in files] == [".json", ".bvh", ".glb"]
    assert json.loads(Path(files[0]).read_text())["num_frames"] == 1
    assert Path(files[1]).read_text().startswith("HIERARCHY")
    assert Path(files[2]).read_bytes()[:4] == b"glTF" and Path(preview).read_bytes()[:4] == b"glTF"
    assert all(Path(f).is_relative_to(ctx.temp_dir) for f in [*files, preview])  # served from the app's temp dir only
    assert slider["visible"] is False and row["visible"] is False and playing is False
    assert "Person" in status or "No person" in status
    # Flip test runs too (and is reported).
    _, _, pred_flip = app.predict_image(ctx, image, True)
    assert any("Flip test" in n for n in pred_flip.notes)


def test_predict_image_bad_inputs_raise_gradio_errors(app: ModuleType, ctx, tmp_path: Path) -> None:
    import gradio as gr
    from gradio.data_classes import ImageData

    with pytest.raises(gr.Error, match="Add a photo"):
        app.predict_image(ctx, None, False)
    with pytest.raises(gr.Error):
        app.predict_image(ctx, np.zeros((4, 4, 3), np.uint8), False)  # too small to hold a person
    text = tmp_path / "photo.png"
    text.write_text("this is not an image")
    with pytest.raises(gr.Error, match="not an image"):
        app.readable_image_input(gr.Image(type="numpy")).preprocess(ImageData(path=str(text), orig_name="photo.png"))


def test_predict_clip_frames_playback_and_exports(app: ModuleType, ctx, tmp_path: Path) -> None:
    video = write_test_clip(tmp_path / "clip.mp4", frames=10)
    doc, pred = app.predict_clip(ctx, str(video), False, False, progress=lambda *a, **k: None)
    assert doc["num_frames"] == 10 and doc["fps"] == pytest.approx(30.0) and len(pred.frames) == 10
    _, files, _, slider, row, status, *_ = app.show_prediction(ctx, pred)
    assert slider["maximum"] == 9 and slider["visible"] is True and row["visible"] is True
    assert json.loads(Path(files[0]).read_text())["num_frames"] == 10 and "10 frames" in status
    # The GLB preview is the downloadable file, an animation with one key per frame at the clip's rate.
    from nlrd.gltf import accessor_array, read_glb

    assert pred.preview_glb == files[2]
    doc_glb, blob = read_glb(Path(files[2]).read_bytes())
    keys = accessor_array(doc_glb, blob, doc_glb["animations"][0]["samplers"][0]["input"])[:, 0]
    np.testing.assert_allclose(keys, np.arange(10) / 30.0, atol=1e-6)
    fig, overlay = app.prediction_frame(ctx, pred, 4)
    assert _trace_count(fig) == 4 and overlay.ndim == 3
    # One fixed 3D range for the whole clip, so the view does not jump between frames.
    fig0, _ = app.prediction_frame(ctx, pred, 0)
    assert fig0.layout.scene.xaxis.range == fig.layout.scene.xaxis.range
    i, _, _ = app.prediction_tick(ctx, pred, 8)
    assert 0 <= i < 10 and i != 8  # advances and wraps around
    playing, timer, button = app.toggle_play(False)
    assert playing is True and timer.active is True and "Pause" in button["value"]


def test_predict_clip_bad_inputs(app: ModuleType, ctx, no_motion_ctx, tmp_path: Path) -> None:
    import gradio as gr

    bad = write_corrupt_mp4(tmp_path / "broken.mp4")
    with pytest.raises(gr.Error) as info:
        app.predict_clip(ctx, str(bad), False, False, progress=lambda *a, **k: None)
    assert "broken.mp4" in str(info.value) and str(tmp_path) not in str(info.value)  # no server paths in messages
    with pytest.raises(gr.Error, match="Add a video"):
        app.predict_clip(ctx, None, False, False)
    video = write_test_clip(tmp_path / "clip.mp4", frames=10)
    with pytest.raises(gr.Error, match="motion prior"):
        app.predict_clip(no_motion_ctx, str(video), False, True, progress=lambda *a, **k: None)


def test_predict_clip_with_motion_refinement(app: ModuleType, motion_ctx, tmp_path: Path) -> None:
    video = write_test_clip(tmp_path / "clip.mp4", frames=10)
    doc, pred = app.predict_clip(motion_ctx, str(video), False, True, progress=lambda *a, **k: None)
    assert doc["num_frames"] == 10 and any("motion prior" in n for n in pred.notes)


# ----------------------------------------------------------------------------- Latent explorer
def test_decode_latent_figure_and_validation(app: ModuleType, ctx) -> None:
    import gradio as gr

    from nlrd import viz

    d = ctx.latent_dim
    fig, fig2 = _figure(app.decode_latent(ctx, *([0.0] * d))), _figure(app.decode_latent(ctx, *([0.5] * d)))
    assert len(fig["data"]) == 4 and fig["layout"]["uirevision"] == fig2["layout"]["uirevision"] == app.UIREV_EXPLORE
    assert fig["layout"]["scene"]["zaxis"]["range"] == fig2["layout"]["scene"]["zaxis"]["range"]  # fixed while dragging
    assert fig["data"][3]["x"] != fig2["data"][3]["x"]
    clipped = _figure(app.decode_latent(ctx, *([5.0] * d)))  # outside the prior's support: clipped to 1
    assert clipped["data"][3]["x"] == _figure(app.decode_latent(ctx, *([1.0] * d)))["data"][3]["x"]
    # The fast path writes exactly the figure viz.pose_figure builds.
    joints = ctx.predictor.decode(np.full((1, d), 0.5, np.float32))[0]
    full = viz.pose_figure(joints, labels="decoded pose", axis_range=ctx.explore_range, uirevision=app.UIREV_EXPLORE)
    assert fig2 == json.loads(full.to_json())
    with pytest.raises(gr.Error, match=f"expected {d}"):
        app.decode_latent(ctx, 0.0, 0.0)
    with pytest.raises(gr.Error, match="finite"):
        app.decode_latent(ctx, *([float("nan")] * d))


def test_random_reset_and_encode_last_prediction(app: ModuleType, ctx) -> None:
    import gradio as gr

    a, b = app.random_latent(ctx, 5), app.random_latent(ctx, 5)
    assert a == b and len(a) == ctx.latent_dim and all(-1 <= v <= 1 for v in a)
    assert a != app.random_latent(ctx, 6)
    assert app.reset_latent(ctx) == [0.0] * ctx.latent_dim
    assert app.next_seed(4) == 5 and app.next_seed(None) == 0
    with pytest.raises(gr.Error, match="No prediction"):
        app.encode_last_prediction(ctx, None, 0)
    _, _, pred = app.predict_image(ctx, _rgb(ctx.image_examples[-1]), False)
    z = app.encode_last_prediction(ctx, pred, 0)
    assert len(z) == ctx.latent_dim and all(-1 <= v <= 1 for v in z)


def test_nearest_pose_finds_a_bank_pose_exactly(app: ModuleType, ctx) -> None:
    # The bank is decode(sample(N, seed=0)): decoding bank latent k must find bank pose k at ~0 mm.
    k = 17
    z = ctx.predictor.sample(len(ctx.bank_joints), seed=0)[k]
    fig, text = app.nearest_pose(ctx, *z.tolist())
    assert f"#{k}**" in text and "MPJPE **0.0 mm**" in text
    assert _trace_count(fig) == 8  # decoded and nearest, overlaid


def test_interpolation_endpoints_and_playback(app: ModuleType, ctx) -> None:
    d = ctx.latent_dim
    sliders = [0.25] * d
    seq, fig, slider, text = app.interpolate(ctx, "random seed", 3, "current sliders", 0, 12, *sliders)
    assert seq.joints.shape == (12, 17, 3) and slider["maximum"] == 11 and "12 steps" in text
    za = ctx.predictor.sample(1, seed=3)
    np.testing.assert_allclose(seq.joints[0], ctx.predictor.decode(za)[0], atol=1e-3)
    np.testing.assert_allclose(seq.joints[-1], ctx.predictor.decode(np.full((1, d), 0.25, np.float32))[0], atol=1e-3)
    assert app.sequence_tick(ctx, seq, 11)[0] == 0 and app.sequence_tick(ctx, seq, 3)[0] == 4
    assert _trace_count(app.sequence_frame(ctx, seq, 5)) == 4


# ----------------------------------------------------------------------------- Relations
@pytest.mark.parametrize("name", [n for n, r in RELATIONS.items() if r.order == "pose"])
def test_pose_relation_pairs_are_exact(app: ModuleType, ctx, name: str) -> None:
    fig, dist, ref = app.relation_pair(ctx, name, 4)
    view = app.relation_view(ctx, ref)  # the state names the pair; the server keeps it
    has_net = name in ctx.predictor.relations
    assert _trace_count(fig) == 8 + 4 * has_net and view is not None and dist == pytest.approx(view.distance, abs=1e-3)
    rel = RELATIONS[name]
    np.testing.assert_allclose(view.counterpart[0], rel.pose_pair(view.anchor[0])[1], atol=1e-3)
    np.testing.assert_array_equal(view.counterpart_images[0], rel.image_pair(view.anchor_images[0])[1])
    za, zc = ctx.predictor.encode(view.anchor), ctx.predictor.encode(view.counterpart)
    assert view.distance == pytest.approx(float(np.linalg.norm(za - zc)), rel=1e-4)
    img_a, img_c, pca, slider, row, playing, timer, net_md = app.show_relation(ctx, ref)
    assert img_a.shape == img_c.shape and row["visible"] is False
    if has_net:
        # The shipped relation network lands nearer the exact counterpart than the anchor is.
        assert view.latent_predicted is not None and "Relation network prediction" in net_md
        assert np.linalg.norm(view.latent_predicted - view.latent_counterpart) < 0.5 * view.distance
    assert [t.name for t in pca.data][1:3] == ["anchor", "counterpart"]
    # Same seed, same pair.
    assert app.relation_pair(ctx, name, 4)[1] == dist


def test_pose_flip_counterpart_is_the_mirrored_render(app: ModuleType, ctx) -> None:
    view = app.compute_relation(ctx, "pose-flip", 9)
    np.testing.assert_array_equal(view.counterpart_images[0], flip_image(view.anchor_images[0]))
    np.testing.assert_allclose(view.counterpart[0], flip_pose(view.anchor[0]), atol=1e-4)


@pytest.mark.parametrize("name", [n for n, r in RELATIONS.items() if r.order == "motion"])
def test_motion_relation_pairs(app: ModuleType, motion_ctx, name: str) -> None:
    fig, dist, ref = app.relation_pair(motion_ctx, name, 2)
    view = app.relation_view(motion_ctx, ref)
    assert view is not None and view.anchor.shape == view.counterpart.shape == (30, 17, 3)
    assert view.anchor_images.shape[0] == 30 and view.anchor_images.shape == view.counterpart_images.shape
    assert dist is not None and dist >= 0 and view.latent_anchor.shape == (motion_ctx.predictor.motion.latent_dim,)
    rel = RELATIONS[name]
    if rel.window == 30:  # the counterpart is the exact relation of the anchor window
        np.testing.assert_allclose(view.counterpart, rel.pose_pair(view.anchor)[1], atol=1e-3)
    _, _, pca, slider, row, _, _, _ = app.show_relation(motion_ctx, ref)
    assert slider["maximum"] == 29 and row["visible"] is True and len(pca.data) >= 3
    i, fig_t, img_a, img_c = app.relation_tick(motion_ctx, ref, 0)
    assert i > 0 and _trace_count(fig_t) == 8 and img_a.shape == view.anchor_images[i].shape


def test_motion_relation_without_motion_prior_says_so(app: ModuleType, no_motion_ctx) -> None:
    fig, dist, view = app.relation_pair(no_motion_ctx, "backward", 0)
    assert dist is None and view is None and "motion prior" in fig.layout.annotations[0].text
    assert "not loaded" in app.relation_explanation(no_motion_ctx, "backward")
    img_a, img_c, pca, slider, row, _, _, _ = app.show_relation(no_motion_ctx, None)
    assert img_a is None and row["visible"] is False


def test_relation_bad_inputs(app: ModuleType, ctx) -> None:
    import gradio as gr

    with pytest.raises(gr.Error, match="unknown relation"):
        app.relation_pair(ctx, "teleport", 0)
    with pytest.raises(gr.Error, match="seed"):
        app.relation_pair(ctx, "pose-flip", "abc")


def test_explanations_and_diagram(app: ModuleType, ctx) -> None:
    for name, rel in RELATIONS.items():
        text = app.relation_explanation(ctx, name)
        assert rel.description in text and "non-local" in text
    root = ET.fromstring(app.stages_svg())  # well-formed inline SVG
    assert root.tag.endswith("svg") and len(root.findall("{http://www.w3.org/2000/svg}rect")) == 5


# ----------------------------------------------------------------------------- Adapt
@pytest.fixture(scope="module")
def adapt_ctx(ctx, tmp_path_factory: pytest.TempPathFactory):
    """The shared context with small built-in target clips (2 clips, 8 labelled renders) and its own runs folder."""
    from nlrd.adapt_session import builtin_target_data

    ctx.adapt_data["builtin"] = builtin_target_data(ctx.predictor.image_size, ctx.style, clips=2, eval_images=8)
    ctx.runs_dir = tmp_path_factory.mktemp("runs")
    return ctx


def _no_progress(*args, **kwargs) -> None:
    return None


def test_adapt_streams_curves_then_a_summary_and_saves(app: ModuleType, adapt_ctx) -> None:
    import gradio as gr

    ctx = adapt_ctx
    outs = list(app.adapt(ctx, app.ADAPT_SOURCES[0], None, ["lcr", "pose-flip"], 3, None, "cpu", progress=_no_progress))
    assert len(outs) >= 3 and all(len(o) == 6 for o in outs)
    summary, loss_fig, err_fig, cmp_fig, status, session = outs[-1]  # the session's id (the server keeps it)
    assert summary["phase"] == "done" and summary["steps_done"] == 3 and summary["terms"] == ["lcr", "pose-flip"]
    assert np.isfinite(summary["before_mpjpe_mm"]) and np.isfinite(summary["after_mpjpe_mm"]) and "Done" in status
    assert {t.name for t in loss_fig.data} == {"lcr", "pose-flip"} and loss_fig.layout.yaxis.type == "log"
    assert len(err_fig.data) == 1 and len(err_fig.data[0].x) >= 2  # before step 0 and after
    assert len(cmp_fig.data) == 3 * 3 * 4  # 3 frames x (truth, before, after) x 4 traces
    assert all(isinstance(o[1], type(loss_fig)) for o in outs[1:])  # the curves update while it runs
    frames = app.adapt_frames(ctx, session)
    assert len(frames) == 3 and frames[0][0].shape == (ctx.predictor.image_size, ctx.predictor.image_size, 3)
    assert "→" in frames[0][1]
    # The three frames are the spread behind the headline figure, named as such; the kept weights are said.
    assert [t.split(",")[0] for _, t in frames] == ["most improved", "median change", "most worsened"]
    assert "keeps G as it is after its last step (step 3)" in status
    # Save: a plain name below the runs folder; never a path, never twice, never into the shipped weights.
    msg = app.save_adaptation(ctx, session, "first_run")
    saved = ctx.runs_dir / "first_run" / "adapted_g.safetensors"
    assert saved.exists() and "first_run" in msg
    for bad in ("", "../escape", "/abs", "a/b", ".hidden"):
        with pytest.raises(gr.Error, match="Name the run folder"):
            app.save_adaptation(ctx, session, bad)
    with pytest.raises(gr.Error, match="already exists"):
        app.save_adaptation(ctx, session, "first_run")
    with pytest.raises(gr.Error, match="Run an adaptation first"):
        app.save_adaptation(ctx, None, "x")
    shipped = ctx.runs_dir / "shipped"
    shipped.mkdir()
    ctx.protected_dirs.append(shipped)
    try:
        with pytest.raises(gr.Error, match="shipped checkpoints"):
            app.save_adaptation(ctx, session, "shipped")
    finally:
        ctx.protected_dirs.remove(shipped)
    # Cancel with nothing running says so; the queue-level cancel is gradio's.
    assert "No adaptation was running" in app.cancel_adaptation(ctx, session)[-1]


def test_adapt_on_real_photos_shows_agreement_and_keypoints(app: ModuleType, adapt_ctx, data_root: Path) -> None:
    """The real source: uploaded photos get MediaPipe's keypoints; the curve is the agreement on the held-out
    frames and the compared frames carry the keypoints (green) and G before / after."""
    from nlrd.vision import tuning_exercise_photos

    ctx = adapt_ctx
    photos = [str(p) for p in tuning_exercise_photos(data_root)[:16:2]]
    outs = list(app.adapt(ctx, app.ADAPT_SOURCES[2], photos, ["keypoints", "source"], 2, None, "cpu",
                          progress=_no_progress))  # fmt: skip
    summary, _, err_fig, _, status, session = outs[-1]
    assert summary["phase"] == "done" and 0.0 <= summary["after_agreement_pck"] <= 1.0
    assert "agreement with MediaPipe" in status and err_fig.data[0].name == "PCK@0.2"
    frames = app.adapt_frames(ctx, session)
    assert frames[0][0].shape == (256, 256, 3) and "green MediaPipe" in frames[0][1]
    terms, _ = app.adapt_defaults(ctx, "cpu", app.ADAPT_SOURCES[2])
    assert terms["value"] == ["keypoints", "fit3d", "source"]


def test_adapt_status_says_which_weights_are_kept(app: ModuleType) -> None:
    """The last step's weights are kept and saved; a lower point earlier on the curve is named, not picked."""
    from nlrd.adapt_session import Report

    dipped = Report(60, 60, {}, [(0, 150.0), (20, 140.0), (60, 146.0)], 1.0, "done")
    note = app._kept_weights_note(dipped)
    assert "after its last step (step 60)" in note and "best at step 20 (140.0 mm)" in note
    assert "best at" not in app._kept_weights_note(Report(60, 60, {}, [(0, 150.0), (60, 140.0)], 1.0, "done"))
    real = Report(40, 40, {}, [], 1.0, "done", agreement=[(0, 0.6), (20, 0.7), (40, 0.65)])
    assert "best at step 20 (PCK 0.700)" in app._kept_weights_note(real)


def test_adapt_says_on_screen_when_built_in_clips_are_demo_motions(app: ModuleType) -> None:
    """Without prepared mocap the built-in clips change what the target error measures: the status says so."""
    from types import SimpleNamespace

    from nlrd.adapt_session import DEMO_MOTIONS, Report

    report = Report(3, 3, {"lcr": [(3, 1.0)]}, [(0, 150.0), (3, 149.0)], 1.0, "done")
    data = SimpleNamespace(description=f"2 clips from {DEMO_MOTIONS}")
    session = SimpleNamespace(device=SimpleNamespace(type="cpu"), data=data)
    assert "synthetic demo motions" in app._adapt_status(report, session) and "⚠" in app._adapt_status(report, session)
    session.data.description = "2 clips from held-out test-split motion capture"
    assert "⚠" not in app._adapt_status(report, session)


def test_app_start_prepares_the_mocap_the_adapt_tab_needs(app: ModuleType, data_root: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    import nlrd.adapt_session as session_module

    monkeypatch.setattr(session_module, "PREPARED_DATA", tmp_path / "data")
    monkeypatch.setattr(app, "default_data_root", lambda: tmp_path / "no_such_folder")
    assert app.prepare_mocap_if_possible() is False and not (tmp_path / "data" / "mocap.npz").exists()
    monkeypatch.setattr(app, "default_data_root", lambda: data_root)
    assert app.prepare_mocap_if_possible() is True and (tmp_path / "data" / "mocap.npz").exists()


def test_adapt_cancel_shows_where_the_session_got_to(app: ModuleType, adapt_ctx) -> None:
    import threading

    ctx = adapt_ctx
    gen = app.adapt(ctx, app.ADAPT_SOURCES[0], None, "lcr", 200, 1e-4, "cpu", progress=_no_progress)
    sid = next(gen)[5]
    session = ctx.adapt_sessions.get(sid)
    out: list = []
    worker = threading.Thread(target=lambda: out.extend(gen))  # the generator runs as in a server thread
    worker.start()
    while session.step < 1 and worker.is_alive():
        session.stopped.wait(0.05)
    summary, *_, status = app.cancel_adaptation(ctx, sid)
    worker.join(timeout=120)
    assert summary["phase"] == "cancelled" and 1 <= summary["steps_done"] < 200 and "Cancelled" in status
    assert summary["learning_rates"]["relation"] == pytest.approx(1e-4)


def test_adapt_state_holds_an_id_and_the_server_keeps_few_sessions(app: ModuleType, adapt_ctx,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """Memory: each /adapt call used to leave its session (a copy of G, its optimisers, the evaluation
    tensors) in the caller's gr.State for an hour, about 25 MB a call. The state now holds an id; a finished
    session keeps only G and its curves; a browser session's new run releases its previous one; and the
    server keeps at most its capacity of sessions, whoever calls: nothing else keeps one alive."""
    import gc
    import weakref

    import gradio as gr

    ctx = adapt_ctx
    monkeypatch.setattr(ctx, "adapt_sessions", app.AdaptSessions(2))

    def run(previous: str | None = None) -> str:
        outs = list(app.adapt(ctx, app.ADAPT_SOURCES[0], None, ["pose-flip"], 1, None, "cpu", previous=previous,
                              progress=_no_progress))  # fmt: skip
        assert outs[-1][0]["phase"] == "done"
        return outs[-1][-1]

    sids, alive = [], []
    for _ in range(4):  # four callers, each with a fresh state (a script, or four browser tabs)
        sid = run()
        assert isinstance(sid, str) and len(sid) == 32
        session = ctx.adapt_sessions.get(sid)
        assert session is not None and session.stage is None and session._eval_x is None
        assert all(p.grad is None for p in session.g.parameters())
        sids.append(sid)
        alive.append(weakref.ref(session))
        del session
    gc.collect()
    assert len(ctx.adapt_sessions) == 2 and [r() is not None for r in alive] == [False, False, True, True]
    # The evicted ones' users are told why; the kept ones still work.
    with pytest.raises(gr.Error, match="no longer kept on the server"):
        app.save_adaptation(ctx, sids[0], "gone")
    assert app.adapt_frames(ctx, sids[0]) == gr.skip() and len(app.adapt_frames(ctx, sids[3])) == 3
    # One per browser session: a new run from the state that names sids[3] releases it (sids[2] stays).
    newer = run(previous=sids[3])
    assert ctx.adapt_sessions.get(sids[3]) is None and ctx.adapt_sessions.get(sids[2]) is not None
    # gradio's state expiry calls the delete callback with the id.
    ctx.adapt_sessions.release(newer)
    assert ctx.adapt_sessions.get(newer) is None and len(ctx.adapt_sessions) == 1


def test_adapt_sessions_never_drop_a_running_one(app: ModuleType) -> None:
    from types import SimpleNamespace

    kept = app.AdaptSessions(1, ttl_s=0.0)
    running = SimpleNamespace(phase="training", cancel=lambda: None)
    done = SimpleNamespace(phase="done", cancelled=False)
    done.cancel = lambda: setattr(done, "cancelled", True)
    a, b = kept.add(running), kept.add(done)
    # Over capacity and past its time, the finished one goes (asked to stop, in case); the running one stays.
    assert kept.get(a) is running and kept.get(b) is None and done.cancelled


def test_relation_state_names_the_pair_and_the_server_keeps_few(app: ModuleType, ctx,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """/relation_pair kept its pair (images, poses, latents; 9 MB for a motion relation) in every caller's
    state for an hour. The state now holds the name and seed; recent pairs are kept on the server, bounded,
    and an evicted one is recomputed, identical, when an older tab moves its frame slider."""
    monkeypatch.setattr(ctx, "relation_views", app.LruStore(2))
    refs = [app.relation_pair(ctx, "pose-flip", seed)[2] for seed in range(4)]
    assert refs == [app.RelationRef("pose-flip", seed) for seed in range(4)] and len(ctx.relation_views) == 2
    _, img_a, _ = app.relation_frame(ctx, refs[0], 0)
    np.testing.assert_array_equal(img_a, app.compute_relation(ctx, "pose-flip", 0).anchor_images[0])
    assert len(ctx.relation_views) == 2


def test_adapt_bad_inputs_and_defaults(app: ModuleType, adapt_ctx, tmp_path: Path) -> None:
    import gradio as gr

    ctx = adapt_ctx
    cases = [((app.ADAPT_SOURCES[0], None, ["teleport"], 2, None, "cpu"), "unknown adaptation terms"),
             ((app.ADAPT_SOURCES[0], None, [], 2, None, "cpu"), "at least one"),
             ((app.ADAPT_SOURCES[0], None, ["lcr"], 0, None, "cpu"), "steps"),
             ((app.ADAPT_SOURCES[0], None, ["lcr"], "many", None, "cpu"), "whole number"),
             ((app.ADAPT_SOURCES[0], None, ["lcr"], 2, -1.0, "cpu"), "learning rate"),
             ((app.ADAPT_SOURCES[1], None, ["lcr"], 2, None, "cpu"), "Add one or more videos"),
             ((app.ADAPT_SOURCES[1], [str(write_corrupt_mp4(tmp_path / "broken.mp4"))], ["lcr"], 2, None, "cpu"), "broken.mp4"),
             (("somewhere else", None, ["lcr"], 2, None, "cpu"), "clips source")]  # fmt: skip
    for args, pattern in cases:
        with pytest.raises(gr.Error, match=pattern) as info:
            next(app.adapt(ctx, *args, progress=_no_progress))
        assert str(tmp_path) not in str(info.value)  # no server paths in messages
    if not torch.cuda.is_available():
        with pytest.raises(gr.Error, match="CUDA"):
            next(app.adapt(ctx, app.ADAPT_SOURCES[0], None, ["lcr"], 2, None, "cuda", progress=_no_progress))
    terms, steps = app.adapt_defaults(ctx, "cpu")
    assert set(terms["value"]) <= set(app.available_terms(ctx.predictor)) and steps["value"] == app.default_settings(
        ctx.predictor, "cpu").steps  # fmt: skip
    assert app.adapt_devices()[0] == "cpu"


def test_blocks_build_with_named_endpoints(app: ModuleType, ctx) -> None:
    demo = app.build_blocks(ctx)
    names = {d.api_name for d in demo.fns.values() if d.api_visibility == "public"}
    assert ENDPOINTS <= {f"/{n}" for n in names if n}
    assert demo.nlrd_context is ctx


# ----------------------------------------------------------------------------- the served app
@pytest.fixture(scope="module")
def server(user_examples: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, float]]:
    log = tmp_path_factory.mktemp("server") / "app.log"
    proc, url, startup = start_server(checkpoint_dir(), user_examples, log)
    try:
        yield url, startup
    finally:
        stop_server(proc)


@pytest.fixture(scope="module")
def client(server: tuple[str, float]):
    from gradio_client import Client

    return Client(server[0], verbose=False)


def _plot_data(value: dict) -> list:
    assert value["type"] == "plotly"
    return json.loads(value["plot"])["data"]


def test_client_sees_the_named_endpoints(client) -> None:
    api = client.view_api(print_info=False, return_format="dict")
    assert set(api["named_endpoints"]) == ENDPOINTS
    assert len(api["named_endpoints"]["/decode_latent"]["parameters"]) == 32


def test_client_decode_latent(client) -> None:
    data = _plot_data(client.predict(*([0.0] * 32), api_name="/decode_latent"))
    data2 = _plot_data(client.predict(*([0.6] * 32), api_name="/decode_latent"))
    assert len(data) == 4 and data[3]["x"] != data2[3]["x"]


def test_client_predict_image_and_clip(client, user_examples: Path) -> None:
    from gradio_client import handle_file

    doc, plot = client.predict(handle_file(str(user_examples / "me.jpg")), False, api_name="/predict_image")
    assert doc["format"] == "nlrd-pose" and doc["num_frames"] == 1 and len(_plot_data(plot)) == 4
    doc = client.predict(handle_file(str(user_examples / "walk.mp4")), False, False, api_name="/predict_clip")
    assert doc["num_frames"] == 10 and all(len(f["joints3d"]) == 17 for f in doc["frames"])


def test_client_relation_pair(client) -> None:
    plot, dist = client.predict("pose-flip", 3, api_name="/relation_pair")
    # anchor and exact counterpart (4 traces each), plus the relation network's prediction when shipped
    expected = 12 if (REPO / "checkpoints" / "relations" / "pose-flip.safetensors").exists() else 8
    assert len(_plot_data(plot)) == expected and isinstance(dist, float) and dist > 0


def test_client_adapt_returns_a_summary(client) -> None:
    from gradio_client.exceptions import AppError

    summary, losses, errors, compare, status = client.predict(
        "built-in synthetic target clips", None, ["lcr", "pose-flip"], 2, None, "cpu", api_name="/adapt")  # fmt: skip
    assert summary["phase"] == "done" and summary["steps_done"] == 2 and summary["labelled"] is True
    assert summary["eval_images"] == 64 and np.isfinite(summary["after_mpjpe_mm"]) and "Done" in status
    # Without a start, a session adapts a copy of the source-only Gs when it is shipped (as the method does).
    has_gs = (checkpoint_dir() / "source_gs.safetensors").exists() and (checkpoint_dir() / "adapted_g.safetensors").exists()
    assert summary["started_from"] == ("source_gs.safetensors" if has_gs else summary["started_from"])
    assert {t["name"] for t in _plot_data(losses)} == {"lcr", "pose-flip"} and len(_plot_data(compare)) == 36
    with pytest.raises(AppError, match="not in the list of choices|unknown adaptation terms"):
        client.predict("built-in synthetic target clips", None, ["lcr", "teleport"], 2, None, "cpu", api_name="/adapt")
    with pytest.raises(AppError, match="Add one or more videos"):
        client.predict("my videos", None, ["lcr"], 2, None, "cpu", api_name="/adapt")
    # After the refusals the next session runs (and a learning rate can be given).
    summary = client.predict("built-in synthetic target clips", None, ["pose-flip"], 1, 2e-5, "cpu", "predictor",
                             api_name="/adapt")[0]  # fmt: skip
    assert summary["steps_done"] == 1 and summary["started_from"] != "source_gs.safetensors"
    with pytest.raises(AppError, match="not in the list of choices|start must be one of"):
        client.predict("built-in synthetic target clips", None, ["lcr"], 1, None, "cpu", "oracle", api_name="/adapt")


def test_client_bad_uploads_fail_and_the_app_keeps_serving(client, tmp_path: Path, user_examples: Path) -> None:
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    text = tmp_path / "holiday.png"
    text.write_text("definitely not a PNG")
    with pytest.raises(AppError, match="not an image"):
        client.predict(handle_file(str(text)), False, api_name="/predict_image")
    assert len(_plot_data(client.predict(*([0.1] * 32), api_name="/decode_latent"))) == 4
    with pytest.raises(AppError, match="broken.mp4"):
        client.predict(handle_file(str(write_corrupt_mp4(tmp_path / "broken.mp4"))), False, False, api_name="/predict_clip")
    doc, _ = client.predict(handle_file(str(user_examples / "me.jpg")), False, api_name="/predict_image")
    assert doc["num_frames"] == 1
    with pytest.raises(AppError, match="not in the list of choices|unknown relation"):
        client.predict("teleport", 0, api_name="/relation_pair")
    assert client.predict("inplane-10", 1, api_name="/relation_pair")[1] > 0


def test_server_serves_no_files_outside_its_folders(server: tuple[str, float]) -> None:
    import httpx

    url = server[0]
    for path in (REPO / "app.py", checkpoint_dir() / POSE_CHECKPOINT, Path("/etc/passwd")):
        r = httpx.get(f"{url}gradio_api/file={path}", timeout=10)
        assert r.status_code in (403, 404), (path, r.status_code)
    assert server[1] < 240
