"""The benchmark scripts' own logic: report rendering, the combined tables, stage builders on synthetic inputs.

The measurements themselves are not run here (they take minutes); the pieces that turn numbers into
tables and the fall-backs for a machine without the prepared data are.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch

from nlrd.inference import IMAGE_CHECKPOINTS

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks"


def load(name: str) -> ModuleType:
    """Import ``benchmarks/<name>.py`` (a folder of scripts, not a package)."""
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))  # renderer_throughput imports training_throughput by name
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is created
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def accuracy() -> ModuleType:
    return load("accuracy_report")


@pytest.fixture(scope="module")
def run_all() -> ModuleType:
    return load("run_all")


@pytest.fixture(scope="module")
def training() -> ModuleType:
    return load("training_throughput")


FULL_RESULTS: dict[str, Any] = {
    "pose_aae": {"test_mpjpe_mm": 17.56, "test_pa_mpjpe_mm": 14.49, "prior_plausible_fraction": 0.9988,
                 "prior_coverage_mm": 52.6, "latent_ks_median": 0.0141},
    "motion_ae": {"test_mpjpe_mm": 37.4},
    "source": {"source_test_mpjpe_mm": 91.1, "source_test_pa_mpjpe_mm": 68.2, "target_test_mpjpe_mm": 144.8,
               "target_test_pa_mpjpe_mm": 92.9, "target_test_pck150": 0.654, "target_test_auc": 0.376,
               "domain_gap_ratio": 1.59, "oracle_target_test_mpjpe_mm": 125.8, "oracle_target_test_pa_mpjpe_mm": 85.5,
               "oracle_gain_vs_gs": 0.131, "source_test_mpjpe_mm_flip_test": 78.8, "target_test_mpjpe_mm_flip_test": 133.5},
    "relations": {"nonlocalness": {"pose-flip": 3.59, "inplane-10": 1.46, "flip-backward": None}},
    "adapt": {"rows": [{"name": "lcr", "terms": ["lcr"], "mpjpe_mm": 139.0, "pa_mpjpe_mm": 90.0, "pck150": 0.67, "auc": 0.38},
                       {"name": "all", "terms": ["lcr", "hcr", "pose-flip"], "mpjpe_mm": 131.0, "pa_mpjpe_mm": None,
                        "pck150": 0.7, "auc": 0.4},
                       "not a row"]},
}  # fmt: skip


# ----------------------------------------------------------------------------- accuracy_report
def test_every_section_renders_from_full_results(accuracy: ModuleType) -> None:
    md, numbers = accuracy.render_markdown(FULL_RESULTS)
    assert "not measured" not in md
    assert "| pose prior: test MPJPE (mm) | 17.6 |" in md
    assert "| lcr | lcr | 139.0 | 90.0 | 0.670 | 0.380 |" in md
    assert "| all | lcr, hcr, pose-flip | 131.0 | n/a |" in md  # a missing number is n/a, not a crash
    assert "MPJPE: source-test 78.8, target-test 133.5 mm" in md
    assert "oracle (target labels, reference)" in md and "Gs (no adaptation, reference)" in md
    assert md.index("| inplane-10 |") < md.index("| pose-flip |") < md.index("| flip-backward | n/a |")
    assert [r["name"] for r in numbers["ablation"]["rows"]] == ["lcr", "all"]


def test_missing_sections_render_as_not_measured(accuracy: ModuleType) -> None:
    md, numbers = accuracy.render_markdown({"pose_aae": {"test_mpjpe_mm": 20.0}})
    assert md.count("not measured") >= 5  # motion row, source, oracle, ablation, non-localness
    assert numbers["source"] is None and numbers["ablation"] is None and numbers["priors"] is not None
    md_empty, _ = accuracy.render_markdown({})
    assert md_empty.count("\n\nnot measured") == len(accuracy.SECTIONS)


def test_ablation_chart_has_a_bar_per_row_and_reference_lines(accuracy: ModuleType) -> None:
    fig = accuracy.ablation_figure(FULL_RESULTS)
    assert [list(t.x) for t in fig.data] == [["lcr", "all"], ["lcr", "all"]]
    assert len(fig.layout.shapes) == 2  # Gs and oracle
    assert accuracy.ablation_figure({"source": FULL_RESULTS["source"]}) is None


def test_report_main_writes_markdown_json_and_html(accuracy: ModuleType, tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    results.write_text(json.dumps(FULL_RESULTS))
    report = accuracy.main(["--results", str(results), "--out-dir", str(tmp_path / "out")])
    assert report["not_measured"] == []
    for name in ("accuracy_report.md", "accuracy_report.json", "accuracy_ablation.html"):
        assert (tmp_path / "out" / name).stat().st_size > 0


@pytest.mark.parametrize(("text", "match"), [("{oops", "not valid JSON"), ("[1, 2]", "JSON object")])
def test_report_refuses_a_bad_results_file(accuracy: ModuleType, tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "results.json"
    path.write_text(text)
    with pytest.raises(SystemExit, match=match):
        accuracy.load_results(path)


# ----------------------------------------------------------------------------- run_all
def test_headlines_survive_empty_and_partial_json(run_all: ModuleType) -> None:
    for script in run_all.SCRIPTS:
        assert isinstance(script.headline({}), list)
    heads = dict(run_all.head_renderer_throughput({"styles": {"source": {"images_per_cpu_second": 480.0}},
                                                   "training_source_step": {"consumption_images_per_s": 160.0},
                                                   "ratios": {"source": 3.0}}))  # fmt: skip
    assert heads["renderer, source style"] == "480 img/s/core"
    assert heads["ratio renderer/training, source (target >= 2)"] == "3.00"


def test_best_adaptation_row_leaves_out_the_references(run_all: ModuleType) -> None:
    rows = [{"name": "source-only", "terms": "none", "mpjpe_mm": 144.8},
            {"name": "pose-flip", "terms": "pose-flip", "mpjpe_mm": 143.8},
            {"name": "+CR", "terms": "lcr, hcr", "mpjpe_mm": 145.6},
            {"name": "oracle (target labels)", "terms": "supervised", "mpjpe_mm": 125.8}]  # fmt: skip
    heads = dict(run_all.head_accuracy_report({"sections": {"ablation": {"rows": rows}}}))
    assert heads["best adaptation row"] == "pose-flip: 143.8 mm"
    only_references = {"sections": {"ablation": {"rows": [rows[0], rows[3]]}}}
    assert dict(run_all.head_accuracy_report(only_references))["best adaptation row"] == "not measured"


def test_combined_table_lists_status_and_headlines(run_all: ModuleType) -> None:
    entries = {
        "training_throughput": {"status": "ok", "seconds": 95.0,
                                "json": {"stages": {"source": {"steps_per_s": 2.5, "samples_per_s": 160.0, "unit": "images"},
                                                    "adapt": {"error": "ValueError: no pool"}}}},
        "app_load": {"status": "timed out (240 s)", "seconds": 240.0, "json": None, "log_tail": ["still waiting"]},
        "inference_latency": {"status": "absent", "seconds": 0.0, "json": None},
    }  # fmt: skip
    table = run_all.combined_table(entries)
    assert "| training_throughput | ok | 95 | source | 2.50 steps/s, 160 images/s |" in table
    assert "failed: ValueError: no pool" in table
    assert "| app_load | timed out (240 s) | 240 | output | still waiting |" in table
    assert "| inference_latency | absent | 0 |" in table


def test_run_script_reports_absent_and_skipped(run_all: ModuleType, tmp_path: Path) -> None:
    ghost = run_all.Script("no_such_benchmark", [], 5, run_all.head_app_latency)
    assert run_all.run_script(ghost, tmp_path, full=False, threads=None, timeout=None, results=tmp_path)["status"] == "absent"
    acc = next(s for s in run_all.SCRIPTS if s.name == "accuracy_report")
    entry = run_all.run_script(acc, tmp_path, full=False, threads=None, timeout=None, results=tmp_path / "none.json")
    assert entry["status"] == "skipped" and "none.json" in entry["reason"]


# ----------------------------------------------------------------------------- training_throughput
def test_training_args_are_checked(training: ModuleType) -> None:
    with pytest.raises(SystemExit):
        training.parse_args(["--stages", "pose_aae,warp"])
    with pytest.raises(SystemExit):
        training.parse_args(["--steps", "0"])
    assert training.parse_args(["--stages", "source, adapt"]).stage_list == ["source", "adapt"]


def test_adapt_crop_counts_follow_the_terms(training: ModuleType) -> None:
    from nlrd.stages.adapt import AdaptStageConfig

    cfg = AdaptStageConfig(clips=2, frames=48)
    counts = {t: training.adapt_crops_per_step(t, cfg) for t in ("lcr", "hcr", "pose-flip", "flip-backward", "slow-backward")}
    assert counts == {"lcr": 96, "hcr": 120, "pose-flip": 96, "flip-backward": 120, "slow-backward": 120}


def test_stages_run_on_synthetic_inputs_without_data(training: ModuleType, tmp_path: Path) -> None:
    """No prepared mocap and no checkpoints: random poses and fresh priors, one timed step each."""
    torch.set_num_threads(1)
    ctx = training.make_context("cpu", str(tmp_path / "no_data"), str(tmp_path / "no_root"), str(tmp_path / "no_ckpt"))
    results = training.run(["pose_aae", "motion_ae"], ctx, steps=1, warmup=0, repeats=1)
    assert set(results) == {"pose_aae", "motion_ae"}
    for r in results.values():
        assert r["steps_per_s"] > 0 and r["samples_per_s"] == pytest.approx(r["steps_per_s"] * r["samples_per_step"])
    assert "random" in results["pose_aae"]["note"] and "fresh priors" in results["motion_ae"]["note"]
    table = training.markdown_table(results | {"adapt": {"error": "ValueError: x"}})
    assert table.count("\n") == 4 and "| adapt | | | | | | | failed: ValueError: x |" in table


def test_domain_gap_variants_change_only_what_they_name() -> None:
    gap = load("domain_gap")
    styles = dict(gap.VARIANTS)
    src, tgt = gap.SOURCE, gap.TARGET
    assert styles["source style"] is src and styles["target style"] is tgt
    assert len({s.name for s in styles.values()}) == len(styles)  # render caches key on the name
    assert styles["source + photo backgrounds"] == dataclasses.replace(src, name="source+photos", background="photo")
    assert styles["target, procedural backgrounds"] == dataclasses.replace(tgt, name="target-photos", background="procedural")
    no_occ = styles["target, no occluders"]
    assert no_occ.effects.occluder_prob == 0
    assert dataclasses.replace(no_occ.effects, occluder_prob=tgt.effects.occluder_prob) == tgt.effects
    assert styles["source + target camera"].camera == tgt.camera


def test_domain_gap_measures_every_variant_on_the_same_poses(prepared_data: Path, data_root: Path) -> None:
    gap = load("domain_gap")
    from nlrd.data.poses import load_split

    poses = load_split(prepared_data, "test").joints
    seen: list[np.ndarray] = []

    def fake_model(images: np.ndarray) -> np.ndarray:
        seen.append(images)
        return np.zeros((len(images), 17, 3), np.float32)

    variants = gap.VARIANTS[:1] + gap.VARIANTS[5:7]
    rows = gap.measure(variants, poses, {"zero": fake_model}, 3, 7, data_root / "backgrounds")
    assert [r["variant"] for r in rows] == [name for name, _ in variants]
    # Zero predictions: MPJPE is the mean joint distance from the root of the same poses in every row.
    assert rows[0]["mpjpe_mm"]["zero"] == pytest.approx(rows[1]["mpjpe_mm"]["zero"], rel=1e-5)
    assert all(img.shape == (3, 128, 128, 3) for img in seen) and not np.array_equal(seen[0], seen[1])
    md = gap.table(rows)
    assert md.count("\n") == len(rows) + 1 and "| target style |" in md


# ----------------------------------------------------------------------------- adapt_session
def test_adapt_session_variants_parse_and_are_checked() -> None:
    bench = load("adapt_session")
    v = bench.Variant.parse("gs:pose-flip+inplane-10:2e-4")
    assert (v.start, v.terms, v.lr, v.label) == ("gs", ("pose-flip", "inplane-10"), 2e-4, "gs:pose-flip+inplane-10:0.0002")
    assert bench.Variant.parse("auto:default:default") == bench.Variant("auto", None, None)
    for bad in ("shipped:default:default", "gs:pose-flip", "gs:pose-flip:fast"):
        with pytest.raises(argparse.ArgumentTypeError):
            bench.Variant.parse(bad)


@pytest.mark.skipif(not (REPO / "checkpoints" / "source_gs.safetensors").exists(), reason="shipped Gs not found")
def test_adapt_session_compares_starts_on_the_same_frames(tmp_path: Path) -> None:
    """Two 2-step sessions from Gs and from the shipped G: same evaluation frames, different starts, a curve each."""
    bench = load("adapt_session")
    out = tmp_path / "adapt.json"
    bench.main(["--variants", "auto:pose-flip:default", "predictor:pose-flip:1e-5", "--steps", "2", "--eval-every", "1",
                "--threads", "1", "--out", str(out)])  # fmt: skip
    rows = json.loads(out.read_text())["rows"]
    shipped = next(n for n in IMAGE_CHECKPOINTS if (REPO / "checkpoints" / n).exists())  # the predictor's own G
    assert [r["started_from"] for r in rows] == ["source_gs.safetensors", shipped]
    for r in rows:
        assert [s for s, _ in r["curve_mm"]] == [0, 1, 2] and r["seconds"] > 0 and r["data_seconds"] > 0
        assert r["change_mm"] == pytest.approx(r["end_mm"] - r["start_mm"], abs=0.011) and 50 < r["start_mm"] < 400
    assert rows[0]["start_mm"] != rows[1]["start_mm"] and rows[1]["lr_relation"] == pytest.approx(1e-5)


def test_source_echo_times_each_factor_with_rendering_in_the_loop(tmp_path: Path) -> None:
    """Two echo factors on random poses: one row each, renders per second follow batch / echo, bad factors refused."""
    bench = load("source_echo")
    out = tmp_path / "echo.json"
    bench.main(["--echo", "1", "2", "--sizes", "128", "96", "--batch", "4", "--steps", "2", "--warmup", "1", "--repeats", "1",
                "--threads", "1", "--data", str(tmp_path / "none"), "--out", str(out)])  # fmt: skip
    report = json.loads(out.read_text())
    assert report["inputs"] == "random poses"
    assert [(r["echo"], r["size"]) for r in report["rows"]] == [(1, 128), (1, 96), (2, 128), (2, 96)]
    for r in report["rows"]:
        assert r["steps_per_s"] > 0 and r["fresh_renders_per_s"] == pytest.approx(r["steps_per_s"] * 4 / r["echo"])
    assert report["rows"][0]["speedup"] == 1.0
    with pytest.raises(SystemExit):
        bench.parse_args(["--echo", "3", "--batch", "4"])
    with pytest.raises(SystemExit):
        bench.parse_args(["--sizes", "100"])


# ----------------------------------------------------------------------------- relation_ceiling
def test_relation_ceiling_moving_mean_and_targets() -> None:
    bench = load("relation_ceiling")
    t = np.arange(7, dtype=np.float64)
    seq = np.broadcast_to(t[None, :, None, None], (2, 7, 17, 3)).copy()  # a joint moving at constant speed
    out = bench.moving_mean(seq, 5)
    np.testing.assert_allclose(out[:, 2:5], seq[:, 2:5])  # a centred mean keeps a linear motion inside the clip
    assert out[0, 0, 0, 0] == pytest.approx((0 + 0 + 0 + 1 + 2) / 5)  # edges repeat the first frame
    with pytest.raises(ValueError, match="odd"):
        bench.moving_mean(seq, 4)
    results = {"Gs": {"images": {"plain": 140.0}}, "oracle": {"images": {"plain": 100.0}}}
    assert bench.targets(results) == {"30% below Gs": pytest.approx(98.0), "half the gap to the oracle": 120.0}
    assert bench.targets({"Gs": results["Gs"]}) is None


@pytest.mark.skipif(not (REPO / "checkpoints" / "source_gs.safetensors").exists(), reason="shipped Gs not found")
def test_relation_ceiling_on_real_target_renders(prepared_data: Path, data_root: Path) -> None:
    """The shipped Gs on a few target-style renders and clips of test poses: every measure is finite, an
    ensemble is never worse than its views' mean error (triangle inequality), the table has a row per measure."""
    bench = load("relation_ceiling")
    from nlrd.data.poses import load_split
    from nlrd.data.synthetic import fixed_test_clips, fixed_test_set
    from nlrd.evaluation import predict_joints
    from nlrd.inference import load_image_encoder
    from nlrd.metrics import mpjpe
    from nlrd.models.image_encoder import encode_images
    from nlrd.priors import MotionPrior, PosePrior
    from nlrd.transforms import ensemble_views

    test = load_split(prepared_data, "test")
    bg = data_root / "backgrounds"
    imgs = fixed_test_set(test.joints, "target", 6, seed=5, backgrounds=bg)
    clips = fixed_test_clips(test.windows(30, stride=15), "target", 2, seed=6, backgrounds=bg)
    pose = PosePrior.from_pretrained(REPO / "checkpoints" / "pose_aae.safetensors")
    motion = MotionPrior.from_pretrained(REPO / "checkpoints" / "motion_ae.safetensors", pose=pose)
    enc = load_image_encoder(REPO / "checkpoints" / "source_gs.safetensors")

    def predict(x: np.ndarray) -> np.ndarray:
        return predict_joints(enc, pose.decoder, x)

    def predict_z(x: np.ndarray) -> np.ndarray:
        return encode_images(enc, x, torch.device("cpu"), amp=False).cpu().numpy()

    rows = bench.image_rows(predict, imgs["images"], imgs["joints3d"])
    per_view = bench.view_predictions(predict, imgs["images"], ensemble_views())
    view_errors = [mpjpe(p, imgs["joints3d"]) for p in per_view.values()]
    assert rows["plain"] == pytest.approx(view_errors[0], rel=1e-6)
    assert rows["flip ensemble"] <= (view_errors[0] + view_errors[1]) / 2 + 1e-6
    assert rows["flip + in-plane +-10 ensemble"] <= np.mean(view_errors) + 1e-6
    crows = bench.clip_rows(predict_z, motion, clips["images"], clips["joints3d"])
    assert all(np.isfinite(v) and 0 < v < 1000 for v in [*rows.values(), *crows.values()])
    results = {"Gs": {"images": rows, "clips": crows}}
    assert bench.table(results, "clips").count("\n") == len(crows) + 1


@pytest.mark.skipif(not (REPO / "checkpoints" / "source_gs.safetensors").exists(), reason="shipped Gs not found")
def test_real_adaptation_scores_models_on_the_same_held_out_photos(data_root: Path, prepared_data: Path, tmp_path: Path) -> None:
    """Two models side by side on the same held-out photos, renders and videos; the scores are in range and
    the same model scores the same twice."""
    bench = load("real_adaptation")
    ck = REPO / "checkpoints"
    out = tmp_path / "real.json"
    res = bench.main(["--data-root", str(data_root), "--data", str(prepared_data), "--photos", "8", "--renders", "24",
                      "--video-frames", "40", "--models", f"{ck / 'source_gs.safetensors'},{ck / 'oracle.safetensors'}",
                      "--out", str(out)])  # fmt: skip
    rows = json.loads(out.read_text())["models"]
    assert set(rows) == {"source_gs", "oracle"} and res["person_found"] >= 6
    for r in rows.values():
        assert 0.0 <= r["g_pck"] <= 1.0 and 0.0 <= r["fit_pck"] <= 1.0 and 0.0 <= r["g_front_back"] <= 1.0
        assert 30 < r["renders_mpjpe_mm"] < 400 and r["video_flip_mm"] > 0 and r["video_jitter_mm"] > 0
    assert rows["source_gs"]["fit_pck"] > 0.8  # the fit follows the keypoints whatever G starts it


def test_prior_ceiling_scores_the_fits_and_their_round_trip(tmp_path: Path) -> None:
    """Fits that are the renders' own labels agree with their keypoints; through the prior they can only lose."""
    from test_real_target import _render_target

    bench = load("real_adaptation")
    target = _render_target(40)
    target.clip_id[:] = -1
    target.save(tmp_path / "t.npz")
    prior = REPO / "checkpoints" / "pose_aae.safetensors"
    out = bench.main(["--ceiling", str(tmp_path / "t.npz"), "--priors", str(prior)])
    assert out["photos"] == 40 and out["fits"] > 0.95
    assert out[str(prior)]["pck"] <= out["fits"] + 1e-9 and 0 < out[str(prior)]["mm_from_fit"] < 300
