"""The app in a real browser: headless Chromium (Debian's /usr/bin/chromium) through Playwright.

Loads the page, visits every tab, runs a prediction on the prefilled example, moves a latent slider
and checks the 3D plot's data changed, switches relations, runs a six-step adaptation and waits for
its curves and before / after skeletons, and uses the About tab's buttons. Saves 1280x800
screenshots to ``docs/screenshots/`` (for the README; ``$NLRD_SCREENSHOT_DIR`` overrides).
Skipped when Chromium or Playwright is missing (``scripts/install_browser.sh`` installs Chromium).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from nlrd.adapt_session import CPU_TERMS

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip
REPO = Path(__file__).resolve().parents[1]
VIEWPORT = {"width": 1280, "height": 800}
TIMEOUT_MS = 90_000  # generous: the test machine may be busy training

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} not found (run scripts/install_browser.sh as root)")


def _plot_js(elem_id: str) -> str:
    """JS expression: the plotly div inside a gr.Plot (plotly stores the drawn traces on it as .data)."""
    return f"document.querySelector('#{elem_id} [data-testid=plotly]')"


@pytest.fixture(scope="module")
def shots() -> Path:
    folder = Path(os.environ.get("NLRD_SCREENSHOT_DIR", REPO / "docs" / "screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def page(app_server: str) -> Iterator:
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        pg = browser.new_page(viewport=VIEWPORT)
        pg.set_default_timeout(TIMEOUT_MS)
        errors: list[str] = []
        pg.on("pageerror", lambda exc: errors.append(str(exc)))
        pg.nlrd_errors = errors  # type: ignore[attr-defined]
        t0 = time.perf_counter()
        pg.goto(app_server)
        pg.get_by_role("button", name="Estimate 3D pose").wait_for()
        pg.nlrd_ready_s = time.perf_counter() - t0  # type: ignore[attr-defined]
        yield pg
        browser.close()


_TAB_SELECTED = (
    "() => [...document.querySelectorAll('button[role=tab]')].some("
    "b => b.textContent.trim() === '{name}' && b.getAttribute('aria-selected') === 'true')"
)


def _open_tab(page, name: str) -> None:
    page.get_by_role("tab", name=name, exact=True).click()
    page.wait_for_function(_TAB_SELECTED.format(name=name))


def _wait_plot(page, elem_id: str, traces: int) -> None:
    page.wait_for_function(f"() => {{ const d = {_plot_js(elem_id)}; return d && d.data && d.data.length === {traces}; }}")


def test_page_loads_with_every_tab(page) -> None:
    print(f"page ready in {page.nlrd_ready_s:.2f} s")
    names = [t.strip() for t in page.locator("button[role=tab]").all_inner_texts()]
    for tab in ("Predict", "Latent explorer", "Relations", "Adapt", "About"):
        assert tab in names
    assert page.title().startswith("NLRD")


def test_predict_an_example(page, shots: Path) -> None:
    _open_tab(page, "Predict")
    page.get_by_role("button", name="Estimate 3D pose").click()
    _wait_plot(page, "predict-plot", 4)
    # The downloads list the three exports (gradio splits a file name into stem and extension elements).
    page.wait_for_function("() => { const t = document.querySelector('#predict-files').textContent; "
                           "return ['nlrd_pose', 'json', 'bvh', 'glb'].every(s => t.includes(s)); }")  # fmt: skip
    page.get_by_text("detector score").or_(page.get_by_text("No person detected")).first.wait_for()
    page.wait_for_timeout(1500)  # let the GLB viewer and the overlay finish drawing
    page.screenshot(path=str(shots / "predict.png"))


def test_failed_upload_clears_the_last_result_and_says_so_in_view(page, tmp_path: Path) -> None:
    """After a good prediction, a text file named .jpg fails: the downloads, the 3D plot and the JSON of the
    earlier prediction are gone, and the status, above the fold at 1280x800, says the request failed."""
    _open_tab(page, "Predict")
    page.get_by_role("button", name="Estimate 3D pose").click()
    page.wait_for_function("() => document.querySelector('#predict-files').textContent.includes('glb')")
    bad = tmp_path / "notes.jpg"
    bad.write_text("this is not an image\n" * 50)
    page.locator("#predict-photo input[type=file]").set_input_files(str(bad))
    page.wait_for_timeout(500)
    page.get_by_role("button", name="Estimate 3D pose").click()
    page.get_by_text("The last request failed").wait_for()
    page.wait_for_function("() => !document.querySelector('#predict-files').textContent.includes('glb')")
    assert page.evaluate(f"!{_plot_js('predict-plot')}")  # the old 3D plot is gone
    box = page.locator("#predict-status").bounding_box()
    assert box is not None and 0 <= box["y"] and box["y"] + box["height"] <= VIEWPORT["height"]


def test_latent_slider_changes_the_3d_plot(page, shots: Path) -> None:
    _open_tab(page, "Latent explorer")
    _wait_plot(page, "explore-plot", 4)
    before = page.evaluate(f"JSON.stringify({_plot_js('explore-plot')}.data[3].x)")
    slider = page.locator(".latent-grid input[type=range]").first
    slider.fill("0.9")  # sets the value and fires the input event, like a drag
    page.wait_for_function(f"() => JSON.stringify({_plot_js('explore-plot')}.data[3].x) !== {before!r}")
    # Random sample: the sliders move and the plot follows.
    after_drag = page.evaluate(f"JSON.stringify({_plot_js('explore-plot')}.data[3].x)")
    page.get_by_role("button", name="Random sample").click()
    page.wait_for_function(f"() => JSON.stringify({_plot_js('explore-plot')}.data[3].x) !== {after_drag!r}")
    page.wait_for_timeout(800)
    page.screenshot(path=str(shots / "explorer.png"))


def test_relations_tab_switches_relation(page, shots: Path) -> None:
    _open_tab(page, "Relations")
    # anchor + exact counterpart, plus the relation network's prediction when its weights are shipped
    shipped = (Path(__file__).resolve().parents[1] / "checkpoints" / "relations").is_dir()
    _wait_plot(page, "relation-plot", 12 if shipped else 8)
    dist = page.locator("#relation-distance input")
    page.wait_for_function("() => document.querySelector('#relation-distance input').value !== ''")
    first = dist.input_value()
    page.get_by_label("Relation").click()
    page.get_by_role("option", name="inplane-50").first.click()
    page.wait_for_function(f"() => document.querySelector('#relation-distance input').value !== {first!r}")
    page.get_by_role("heading", name="inplane-50").wait_for()
    page.wait_for_timeout(1000)
    page.screenshot(path=str(shots / "relations.png"))


def test_adapt_small_session_draws_curves(page, shots: Path) -> None:
    _open_tab(page, "Adapt")
    steps = page.locator("#adapt-steps input")
    steps.fill("6")
    steps.press("Tab")
    page.get_by_role("button", name="Start adaptation").click()
    # Live: one loss curve per default CPU term (CPU_TERMS) and the target-error curve appear.
    n = len(CPU_TERMS)
    page.wait_for_function(f"() => {{ const d = {_plot_js('adapt-loss-plot')}; return d && d.data && d.data.length === {n}; }}")
    _wait_plot(page, "adapt-error-plot", 1)
    page.locator("#adapt-status").get_by_text("Done").wait_for()
    # which weights the session keeps is said on screen, and the compared frames are named by their place
    page.locator("#adapt-status").get_by_text("keeps G as it is after its last step (step 6)").wait_for()
    _wait_plot(page, "adapt-compare-plot", 36)  # 3 frames x (truth, before, after) x 4 traces
    assert "most improved" in (page.locator("#adapt-compare-plot").inner_text() or "")
    page.wait_for_function(f"() => {_plot_js('adapt-error-plot')}.data[0].x.length >= 2")
    page.wait_for_timeout(1500)  # let the 3D scenes and the frames finish drawing
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(shots / "adapt.png"))


def test_adapt_real_source_proposes_the_keypoint_terms(page) -> None:
    """Choosing real photos and videos as the target switches the proposed terms to the keypoint terms, and back."""
    _open_tab(page, "Adapt")
    terms = page.locator("#adapt-terms")
    page.get_by_label("real photos and videos").check()
    for name in ("keypoints", "fit3d", "source"):
        expect_checked = terms.get_by_label(name, exact=True)
        expect_checked.wait_for()
        page.wait_for_function("(el) => el.checked", arg=expect_checked.element_handle())
    assert not terms.get_by_label(CPU_TERMS[0], exact=True).is_checked()
    page.get_by_label("built-in synthetic target clips").check()
    page.wait_for_function("(el) => el.checked", arg=terms.get_by_label(CPU_TERMS[0], exact=True).element_handle())
    assert not terms.get_by_label("keypoints", exact=True).is_checked()


def test_about_buttons(page, shots: Path) -> None:
    _open_tab(page, "About")
    page.locator(".nlrd-diagram svg").wait_for()
    page.screenshot(path=str(shots / "about.png"))
    page.get_by_role("button", name="Open Latent explorer").click()
    page.wait_for_function(_TAB_SELECTED.format(name="Latent explorer"))
    assert page.nlrd_errors == []  # no uncaught JavaScript errors on the whole tour
