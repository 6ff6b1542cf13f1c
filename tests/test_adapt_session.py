"""Interactive adaptation sessions (nlrd.adapt_session) over a tiny image model and the shipped priors.

A 48 px G keeps every step cheap; the priors come from ``checkpoints/`` and the relation network is
untrained (the session only needs one that maps latents to latents). Covers the run loop (reports,
target error before step 0 and every ``eval_every`` steps, only ``layer2`` moving, the predictor
untouched), cancelling, before / after comparison, saving (refusing the shipped folder, links into
it and existing files), where a session starts (Gs beside the predictor's weights, or the predictor's
own G) and uploaded videos as unlabelled targets.
"""

from __future__ import annotations

import threading
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from nlrd.adapt_session import (
    ADAPTED_NAME,
    CPU_STEPS,
    REPRESENTATIVE,
    AdaptSession,
    SessionSettings,
    TargetData,
    available_terms,
    builtin_target_data,
    default_settings,
    start_options,
    starting_encoder,
    target_style,
    video_target_data,
)
from nlrd.checkpoint import save_checkpoint
from nlrd.data.synthetic import demo_poses, render_clip
from nlrd.inference import SOURCE_CHECKPOINT as SOURCE_NAME
from nlrd.inference import PosePredictor, load_image_encoder
from nlrd.metrics import mpjpe
from nlrd.models.image_encoder import ImageEncoderConfig, build_image_encoder
from nlrd.models.relation_net import RelationNet, RelationNetConfig
from nlrd.priors import CHECKPOINT_DIR, POSE_CHECKPOINT, MotionPrior, PosePrior
from nlrd.stages.adapt import AdaptStageConfig

SIZE = 48

pytestmark = pytest.mark.skipif(not (CHECKPOINT_DIR / POSE_CHECKPOINT).exists(), reason="shipped priors not found")


@pytest.fixture(scope="module")
def predictor() -> PosePredictor:
    torch.set_num_threads(1)
    pose = PosePrior.from_pretrained()
    motion = MotionPrior.from_pretrained(pose=pose)
    g = build_image_encoder(ImageEncoderConfig(width=8, head_channels=16, head_hidden=32, image_size=SIZE), seed=0)
    torch.manual_seed(0)
    relations = {"pose-flip": RelationNet(RelationNetConfig(latent_dim=pose.latent_dim))}
    return PosePredictor(g, pose, motion, torch.device("cpu"), {"image_checkpoint": "tiny"}, relations)


@pytest.fixture(scope="module")
def data() -> TargetData:
    # prepared=None: synthetic demo motions, so these tests need no data folder.
    return builtin_target_data(SIZE, target_style(), clips=2, eval_images=8, seed=1, prepared=None)


def settings(**kw) -> SessionSettings:
    base = {"terms": ("lcr", "pose-flip"), "steps": 4, "device": "cpu", "eval_every": 2, "report_seconds": 0.0}
    return SessionSettings(**{**base, **kw})


def test_builtin_data_is_labelled_and_sized(data: TargetData) -> None:
    assert data.labelled and len(data.clips) == 2 and data.clips[0].shape == (60, SIZE, SIZE, 3)
    assert data.eval_images.shape == (8, SIZE, SIZE, 3) and data.eval_joints.shape == (8, 17, 3)
    assert "synthetic demo motions" in data.description and data.num_frames == 120


def test_run_reports_curves_and_only_trainable_stages_move(predictor: PosePredictor, data: TargetData) -> None:
    g0 = {k: v.clone() for k, v in predictor.encoder.state_dict().items()}
    session = AdaptSession(predictor, data, settings())
    reports = list(session.run())
    first, last = reports[0], reports[-1]
    assert first.phase == "evaluating" and first.step == 0 and [s for s, _ in first.errors] == [0]
    assert last.phase == "done" and last.finished and last.step == 4 and session.stopped.is_set()
    assert [s for s, _ in last.errors] == [0, 2, 4]  # before step 0, every eval_every steps, at the end
    assert {k: [s for s, _ in v] for k, v in last.losses.items()} == {"lcr": [1, 3], "pose-flip": [2, 4]}  # in turn
    assert all(np.isfinite(v) for v in last.latest_losses().values())
    # The predictor keeps its G; the session's copy changed only in the recipe's trainable stages.
    assert all(torch.equal(g0[k], v) for k, v in predictor.encoder.state_dict().items())
    moved = {k.split(".")[0] for k, v in session.g.state_dict().items() if not torch.equal(g0[k], v.cpu())}
    assert "layer2" in moved and moved <= set(AdaptStageConfig().trainable), moved
    c = session.comparison(3)
    assert c["images"].shape == (3, SIZE, SIZE, 3) and c["before"].shape == c["after"].shape == c["truth"].shape == (3, 17, 3)
    assert c["before_mm"].shape == (3,) and not np.allclose(c["before"], c["after"])
    # The representative frames: the extremes and the median of the per-frame error change, in that order.
    r = session.comparison(REPRESENTATIVE)
    y = data.eval_joints
    change = np.asarray(mpjpe(session.after(), y, reduce=False)) - np.asarray(mpjpe(session.before, y, reduce=False))
    assert r["roles"] == ["most improved", "median change", "most worsened"]
    assert r["index"][0] == int(np.argmin(change)) and r["index"][2] == int(np.argmax(change))
    np.testing.assert_allclose(change[r["index"][1]], np.sort(change)[len(change) // 2])
    np.testing.assert_allclose(r["after_mm"] - r["before_mm"], change[r["index"]], atol=1e-3)
    with pytest.raises(ValueError, match="representative"):
        session.comparison("best")
    s = session.summary()
    assert s["phase"] == "done" and s["steps_done"] == 4 and s["labelled"] is True
    assert s["before_mpjpe_mm"] == last.errors[0][1] and s["after_mpjpe_mm"] == last.errors[-1][1]
    with pytest.raises(ValueError, match="runs once"):
        next(session.run())


def test_cancel_stops_after_the_current_step(predictor: PosePredictor, data: TargetData) -> None:
    stop = threading.Event()
    session = AdaptSession(predictor, data, settings(steps=50, eval_every=0), cancel=stop)
    seen = []
    for report in session.run():
        seen.append(report)
        if report.step >= 2:
            stop.set()
    last = seen[-1]
    assert last.phase == "cancelled" and 2 <= last.step < 50 and session.stopped.is_set()
    assert [s for s, _ in last.errors] == [0, last.step]  # the reached G is still evaluated
    assert session.summary()["phase"] == "cancelled" and session.comparison([0, 5])["index"].tolist() == [0, 5]


def test_save_round_trips_and_refuses_protected_places(predictor: PosePredictor, data: TargetData, tmp_path: Path) -> None:
    session = AdaptSession(predictor, data, settings(steps=1, eval_every=0))
    with pytest.raises(ValueError, match="nothing to save"):
        session.save(tmp_path / "early")
    list(session.run())
    path = session.save(tmp_path / "run1")
    assert path == (tmp_path / "run1" / ADAPTED_NAME).resolve() and path.with_name(ADAPTED_NAME + ".json").exists()
    g = load_image_encoder(path)
    x = torch.rand(2, 3, SIZE, SIZE)
    with torch.no_grad():
        assert torch.allclose(g(x), session.g.eval()(x), atol=1e-5)
    with pytest.raises(ValueError, match="already exists"):
        session.save(tmp_path / "run1")
    session.save(tmp_path / "run1", overwrite=True)
    shipped = tmp_path / "shipped"
    (shipped / "sub").mkdir(parents=True)
    for target in (shipped, shipped / "sub", tmp_path / "run1" / ".." / "shipped"):
        with pytest.raises(ValueError, match="shipped checkpoints"):
            session.save(target, protected=[shipped])
    (tmp_path / "link").symlink_to(shipped, target_is_directory=True)
    with pytest.raises(ValueError, match="shipped checkpoints"):
        session.save(tmp_path / "link", protected=[shipped])
    before = sorted(p.name for p in CHECKPOINT_DIR.iterdir())
    with pytest.raises(ValueError, match="shipped checkpoints"):
        session.save(CHECKPOINT_DIR)  # the default protects the shipped folder
    assert sorted(p.name for p in CHECKPOINT_DIR.iterdir()) == before and not list(shipped.rglob("*.safetensors"))


def test_settings_terms_and_defaults(predictor: PosePredictor, data: TargetData) -> None:
    for bad, pattern in (({"terms": ()}, "at least one"), ({"steps": 0}, "steps"), ({"lr": -1.0}, "learning rate")):
        with pytest.raises(ValueError, match=pattern):
            settings(**bad).checked()
    with pytest.raises(ValueError, match="unknown adaptation terms"):
        AdaptSession(predictor, data, settings(terms=("lcr", "teleport")))
    with pytest.raises(ValueError, match="no relation network"):
        AdaptSession(predictor, data, settings(terms=("inplane-10",)))
    labelled = ["keypoints", "fit3d", "source"]  # the real-target terms (they need real photos or videos)
    assert available_terms(predictor) == ["lcr", "hcr", "pose-flip", "ensemble", *labelled]
    no_motion = PosePredictor(predictor.encoder, predictor.pose, None, predictor.device, {}, predictor.relations)
    assert available_terms(no_motion) == ["lcr", "pose-flip", "ensemble", *labelled]
    with pytest.raises(ValueError, match="need a real target"):
        AdaptSession(predictor, data, settings(terms=("keypoints",)))
    with pytest.raises(ValueError, match="motion prior"):
        AdaptSession(no_motion, data, settings())
    d = default_settings(predictor, "cpu")
    assert d.device == "cpu" and d.steps == CPU_STEPS and set(d.terms) <= set(available_terms(predictor)) and d.terms
    # A learning rate for people: relation terms get it, contrastive terms keep the recipe's ratio.
    s = AdaptSession(predictor, data, settings(lr=1e-4))
    recipe = AdaptStageConfig()
    assert s.config.lr_relation == pytest.approx(1e-4)
    assert s.config.lr_contrastive == pytest.approx(recipe.lr_contrastive * 1e-4 / recipe.lr_relation)
    assert s.config.lr_ensemble == pytest.approx(recipe.lr_ensemble * 1e-4 / recipe.lr_relation)
    # The ensemble term needs no relation network: a session with it alone runs and moves G.
    ens = AdaptSession(predictor, data, settings(terms=("ensemble",), steps=2, eval_every=0))
    list(ens.run())
    summary = ens.summary()
    assert summary["steps_done"] == 2 and "ensemble" in summary["final_losses"]
    assert summary["learning_rates"]["ensemble"] == pytest.approx(recipe.lr_ensemble)


def test_session_starts_from_gs_beside_the_weights_or_the_predictors_g(predictor: PosePredictor, data: TargetData,
                                                                       tmp_path: Path) -> None:  # fmt: skip
    with pytest.raises(ValueError, match="start must be one of"):
        settings(start="oracle").checked()
    # Built without a checkpoint folder: only the predictor's own G; "gs" says why it cannot.
    assert start_options(predictor) == ["predictor"]
    assert starting_encoder(predictor, "auto") == (predictor.encoder, "tiny")
    with pytest.raises(ValueError, match="no source-only Gs"):
        AdaptSession(predictor, data, settings(start="gs"))
    # A folder with a Gs (other weights than the predictor's): "auto" and "gs" copy it, "predictor" does not.
    gs = build_image_encoder(predictor.encoder.config, seed=7)
    save_checkpoint(tmp_path / SOURCE_NAME, {"encoder": gs}, stage="source", config={"model": asdict(gs.config)})
    beside = PosePredictor(predictor.encoder, predictor.pose, predictor.motion, predictor.device, {"image_checkpoint": "tiny"},
                           predictor.relations, checkpoint_dir=tmp_path)  # fmt: skip
    assert start_options(beside) == ["gs", "predictor"]
    x = torch.from_numpy(data.eval_images).permute(0, 3, 1, 2).float().div(255)
    with torch.no_grad():
        from_gs, from_own = (beside.pose.decoder(g.eval()(x)).numpy() for g in (gs, beside.encoder))
    assert np.abs(from_gs - from_own).mean() > 20  # mm: the two starts are told apart

    def close(a: np.ndarray, b: np.ndarray) -> bool:
        return float(np.abs(a - b).mean()) < 2.0  # mm: the session predicts under bf16 autocast

    for start in ("auto", "gs"):
        session = AdaptSession(beside, data, settings(start=start, steps=1, eval_every=0))
        list(session.run())
        assert session.summary()["started_from"] == SOURCE_NAME and close(session.before, from_gs)  # step 0 is Gs
    session = AdaptSession(beside, data, settings(start="predictor", steps=1, eval_every=0))
    assert session.init_checkpoint == "tiny" and close(session._predict(), from_own)


def test_uploaded_video_is_an_unlabelled_target(predictor: PosePredictor, tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    clip = render_clip(demo_poses.random_windows(1, rng, length=40)[0], "source", rng, size=160)
    path = tmp_path / "walk.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (160, 160))
    for f in clip.image:
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()
    data = video_target_data([path], SIZE, eval_images=6)
    assert not data.labelled and data.clips[0].shape[1:] == (SIZE, SIZE, 3) and len(data.clips[0]) >= 30
    session = AdaptSession(predictor, data, settings(terms=("lcr",), steps=2))
    last = list(session.run())[-1]
    assert last.phase == "done" and last.errors == []  # no labels, no target error
    s = session.summary()
    assert "before_mpjpe_mm" not in s and s["mean_change_mm"] >= 0 and session.comparison(2)["truth"] is None
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video")
    with pytest.raises(ValueError):
        video_target_data([bad], SIZE)
    with pytest.raises(ValueError, match="at least one video"):
        video_target_data([], SIZE)


def test_real_photos_session_tracks_agreement_and_trains_every_stage(predictor: PosePredictor, data_root: Path) -> None:
    """Real photos as a target: MediaPipe's keypoints and the fits come with the data, every fourth frame is
    held out and measured, the keypoint terms train G (every stage), and the comparison carries the keypoints."""
    from nlrd.adapt_session import REAL_TERMS, real_target_data
    from nlrd.vision import tuning_exercise_photos

    photos = tuning_exercise_photos(data_root)[:24:2]
    real = real_target_data(photos, predictor, prepared=None)
    assert real.real is not None and real.source_set is not None and real.eval_joints is None
    assert len(real.eval_images) == int(real.real.val.sum()) >= 2
    assert default_settings(predictor, "cpu", real=True).terms == REAL_TERMS
    before = {k: v.detach().clone() for k, v in predictor.encoder.state_dict().items()}
    session = AdaptSession(predictor, real, settings(terms=REAL_TERMS, steps=3, eval_every=0))
    stem0 = session.g.stem.conv.weight.detach().clone()
    reports = list(session.run())
    assert reports[-1].phase == "done" and [s for s, _ in reports[-1].agreement] == [0, 3]
    assert all(0.0 <= a <= 1.0 for _, a in reports[-1].agreement)
    assert not torch.equal(session.g.stem.conv.weight, stem0)  # every stage trains on real people
    assert all(torch.equal(before[k], v) for k, v in predictor.encoder.state_dict().items())  # the predictor's G is untouched
    c = session.comparison(2)
    assert c["keypoints"].shape == c["before_2d"].shape == (len(c["index"]), 17, 2)
    s = session.summary()
    assert 0.0 <= s["before_agreement_pck"] <= 1.0 and 0.0 <= s["after_agreement_pck"] <= 1.0
    with pytest.raises(ValueError, match="not a photo or a video"):
        real_target_data([data_root / "exercise_photos" / "index.json"], predictor)
