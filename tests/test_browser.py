"""A real browser against `python app.py`: load an example, run try-on, watch the preview form.

Uses Playwright with the system's chromium (never a downloaded browser). The
screenshot goes to a temporary folder, or to docs/ (the README's picture)
when OMFA_SCREENSHOTS=docs is set.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from test_ui_app import free_port, model_folder

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = next((p for p in ("/usr/lib/chromium/chromium", "/usr/bin/chromium") if Path(p).is_file()), None)
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
STARTUP_S = 120
RUN_S = 120

sync_api = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (bash scripts/setup.sh --dev)")

# Records every image the result shows (the page replaces its <img> at each streamed step).
WATCH_RESULT = """() => {
  window.__results = [];
  const note = () => {
    const img = document.querySelector('#try_on_result img');
    if (img && img.src && window.__results[window.__results.length - 1] !== img.src) window.__results.push(img.src);
  };
  new MutationObserver(note).observe(document.body, {subtree: true, childList: true, attributes: true,
                                                     attributeFilter: ['src']});
}"""


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("app") / "app.log"
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "app.py"),
                "--model",
                str(model_folder(tmp_path_factory.mktemp("model"))),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + STARTUP_S
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"app.py did not start (exit {process.poll()}):\n{log.read_text()[-3000:]}")
        time.sleep(0.5)
    yield url
    process.terminate()
    process.wait(timeout=30)


def test_example_try_on_streams_in_the_browser(app_url, tmp_path):
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1300})
        page.goto(app_url, wait_until="domcontentloaded")
        sync_api.expect(page.locator("#try_on_run")).to_be_visible(timeout=60_000)
        page.get_by_text("Top, walking").click()  # the first Try-On example
        sync_api.expect(page.locator("#try_on_portrait img")).to_be_visible(timeout=30_000)
        sync_api.expect(page.locator("#try_on_garment img")).to_be_visible(timeout=30_000)
        page.evaluate(WATCH_RESULT)
        page.locator("#try_on_run").click()
        status = page.locator("#try_on_status textarea")
        sync_api.expect(status).to_have_value(re.compile(r"Try-on done in"), timeout=RUN_S * 1000)
        sync_api.expect(page.locator("#try_on_result img")).to_be_visible()
        sync_api.expect(page.locator("#try_on_progress input[type=number]")).to_have_value("100")
        page.evaluate("window.scrollTo(0, 0)")
        page.wait_for_timeout(500)  # let the last image paint before the screenshot
        shown = page.evaluate("window.__results")
        assert len(set(shown)) >= 3, shown  # the preview changed while it formed, then the final image
        # the frames travel at the model's size (96x128) and the page shows them large
        final = page.locator("#try_on_result img").evaluate(
            "img => [img.naturalWidth, img.naturalHeight, img.clientWidth, img.clientHeight]"
        )
        assert final[:2] == [96, 128]
        assert final[3] >= 300 and abs(final[2] / final[3] - 0.75) < 0.02, final
        folder = ROOT / "docs" if os.environ.get("OMFA_SCREENSHOTS") == "docs" else tmp_path
        page.screenshot(path=str(folder / "screenshot_tryon.png"))
        browser.close()
    assert (folder / "screenshot_tryon.png").stat().st_size > 10_000


# -- every state a person can reach says what it is ------------------------------------------


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, app_url):
    page = browser.new_page(viewport={"width": 1400, "height": 1300})
    page.goto(app_url, wait_until="domcontentloaded")
    sync_api.expect(page.locator("#try_on_run")).to_be_visible(timeout=60_000)
    yield page
    page.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    """Screenshots of the states below ($OMFA_SHOTS, or a temporary folder)."""
    folder = Path(os.environ.get("OMFA_SHOTS") or tmp_path_factory.mktemp("shots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def set_steps(page, tab: str, steps: int) -> None:
    box = page.locator(f"#{tab}_steps input[type=number]")
    if not box.is_visible():
        page.locator(f"#{tab}_advanced").get_by_text("Advanced").click()
    for _ in range(3):  # a widget re-rendered while the accordion opens may drop the first fill
        box.fill(str(steps))
        box.press("Enter")
        box.blur()
        page.wait_for_timeout(200)
        if box.input_value() == str(steps):
            break
    sync_api.expect(box).to_have_value(str(steps))


def test_stop_says_where_it_stopped_and_a_real_photo_is_flagged(page, shots):
    page.get_by_text("A real photo").click()  # the astronaut: a real head-and-shoulders photo
    sync_api.expect(page.locator("#try_on_portrait img")).to_be_visible(timeout=30_000)
    set_steps(page, "try_on", 100)
    page.locator("#try_on_run").click()
    status = page.locator("#try_on_status textarea")
    sync_api.expect(status).to_have_value(re.compile(r"Try-on: step ([3-9]|\d\d)/100"), timeout=RUN_S * 1000)
    page.locator("#try_on_stop").click()
    sync_api.expect(status).to_have_value(re.compile(r"^Stopped at step \d+ of 100$"), timeout=10_000)
    step = re.search(r"step (\d+)", status.input_value())[1]
    page.wait_for_timeout(1000)  # nothing from the stopped run overwrites it
    assert status.input_value() == f"Stopped at step {step} of 100"
    notice = page.locator("#try_on_notice")
    sync_api.expect(notice).to_contain_text(f"the preview at step {step} of 100, not a finished result")
    sync_api.expect(page.locator("#try_on_result")).to_contain_text(f"Result: preview at step {step}")
    # The real photo's notice stays under it: outside the model's training data, and only a bust.
    sync_api.expect(notice).to_contain_text("looks like a real photograph")
    sync_api.expect(notice).to_contain_text("only down to the shoulders")
    page.screenshot(path=str(shots / "try_on_stopped.png"), full_page=True)
    # Running again shows a result again.
    set_steps(page, "try_on", 2)
    page.locator("#try_on_run").click()
    sync_api.expect(status).to_have_value(re.compile(r"Try-on done in"), timeout=RUN_S * 1000)
    sync_api.expect(page.locator("#try_on_result")).not_to_contain_text("preview at step")
    sync_api.expect(notice).not_to_contain_text("Stopped")


def test_bad_uploads_are_reported_when_they_arrive(page, shots, cat, tmp_path):
    broken = tmp_path / "holiday.png"
    broken.write_bytes(b"<html><script>alert(1)</script></html>")
    page.locator("#try_on_portrait input[type=file]").set_input_files(str(broken))
    check = page.locator("#try_on_portrait_check")
    sync_api.expect(check).to_contain_text("This file cannot be used", timeout=30_000)
    sync_api.expect(check).to_contain_text("Upload a PNG, JPEG or WebP photo")
    sync_api.expect(page.locator("#try_on_portrait img")).to_have_count(0)  # no broken-image icon
    page.locator("#try_on_garment input[type=file]").set_input_files(cat)
    garment = page.locator("#try_on_garment_check")
    sync_api.expect(garment).to_contain_text("No garment found in the garment photo", timeout=30_000)
    page.screenshot(path=str(shots / "uploads_checked.png"), full_page=True)
    # Run with them: the status line says why nothing ran, instead of "Preparing..." for good.
    page.locator("#try_on_run").click()
    sync_api.expect(page.locator("#try_on_status textarea")).to_have_value(re.compile(r"^Not run: "), timeout=30_000)
    page.screenshot(path=str(shots / "run_refused.png"), full_page=True)
    # The Outfit tab's garment slots are checked too.
    page.get_by_role("tab", name="Outfit").click()
    page.locator("#outfit_top input[type=file]").set_input_files(cat)
    page.locator("#outfit_bottom input[type=file]").set_input_files(str(ROOT / "assets/examples/bottom.png"))
    sync_api.expect(page.locator("#outfit_top_check")).to_contain_text("No garment found", timeout=30_000)
    sync_api.expect(page.locator("#outfit_bottom_check")).to_contain_text("Flat garment", timeout=30_000)
    page.screenshot(path=str(shots / "outfit_checked.png"), full_page=True)


def test_pose_studio_keeps_its_pose_on_a_photo_without_a_person(page, shots, cat):
    page.get_by_role("tab", name="Pose Studio").click()
    figure = page.locator("#pose_studio_figure img")
    sync_api.expect(figure).to_be_visible(timeout=30_000)
    before = figure.get_attribute("src")
    page.locator("#pose_studio_photo input[type=file]").set_input_files(cat)
    sync_api.expect(page.locator("#pose_studio_photo_check")).to_contain_text("No person found", timeout=30_000)
    page.get_by_role("button", name="Copy the pose from the photo").click()
    info = page.locator("#pose_studio_info")
    sync_api.expect(info).to_contain_text("Could not copy a pose: No person found in the photo", timeout=30_000)
    assert figure.get_attribute("src") == before
    assert page.locator(".error").count() == 0  # no red Error badge on any view
    page.screenshot(path=str(shots / "pose_studio_no_person.png"), full_page=True)
    # A pose copied from a person is no preset's: the preset box no longer names one.
    preset = page.locator("#pose_studio_preset input")
    assert preset.input_value() == "Relaxed stand"
    page.reload(wait_until="domcontentloaded")  # a fresh session, its photo slot empty
    page.get_by_role("tab", name="Pose Studio").click()
    sync_api.expect(figure).to_be_visible(timeout=60_000)
    page.locator("#pose_studio_photo input[type=file]").set_input_files(str(ROOT / "assets/examples/portrait.png"))
    sync_api.expect(page.locator("#pose_studio_photo_check")).to_contain_text("Person found", timeout=30_000)
    page.get_by_role("button", name="Copy the pose from the photo").click()
    sync_api.expect(info).to_contain_text("From a photo", timeout=30_000)
    sync_api.expect(preset).to_have_value("")
    assert figure.get_attribute("src") != before
    page.screenshot(path=str(shots / "pose_studio_copied.png"), full_page=True)


def test_try_off_marks_a_bottom_it_cannot_see_as_a_guess(page, shots):
    page.get_by_role("tab", name="Try-Off").click()
    page.locator("#try_off_photo input[type=file]").set_input_files(str(ROOT / "assets/examples/astronaut.png"))
    sync_api.expect(page.locator("#try_off_photo_check")).to_contain_text("Half-body photo", timeout=30_000)
    page.get_by_role("radio", name="Both", exact=True).check()
    set_steps(page, "try_off", 2)
    page.locator("#try_off_run").click()
    sync_api.expect(page.locator("#try_off_status textarea")).to_have_value(
        re.compile("Try-off done"), timeout=RUN_S * 1000
    )
    sync_api.expect(page.locator("#try_off_notice")).to_contain_text("The bottom is the model's guess")
    page.screenshot(path=str(shots / "try_off_guess.png"), full_page=True)


def test_the_model_card_renders_in_about(page, shots):
    page.get_by_role("tab", name="About").click()
    about = page.locator("#about")
    sync_api.expect(about.get_by_text("Preview convergence")).to_be_visible(timeout=10_000)
    cells = about.locator("td").all_inner_texts()
    assert cells and not [c for c in cells if c.strip().startswith(("---", "{'split'"))]
    headings = about.locator("h1, h2, h3, h4").all_inner_texts()
    assert sum("Limits" in h for h in headings) == 1, headings
    # The per-step tables show every step on one line each, none cut off at the right edge of the page.
    steps = about.locator("table").filter(has_text="PSNR vs final")
    headers = [h.strip() for h in steps.locator("th").all_inner_texts()]
    assert [str(k) for k in range(1, 20)] == [h for h in headers if h.isdigit()]
    for k in range(steps.count()):
        box = steps.nth(k).bounding_box()
        assert box["x"] + box["width"] <= page.viewport_size["width"]
        assert box["height"] < 3 * steps.nth(k).locator("tr").first.bounding_box()["height"] + 10  # no wrapped cells
    page.screenshot(path=str(shots / "about.png"), full_page=True)


def test_pose_gallery_views_at_a_useful_size_with_a_download(page, shots):
    page.get_by_role("tab", name="Pose Gallery").click()
    page.locator("#pose_gallery_portrait input[type=file]").set_input_files(str(ROOT / "assets/examples/portrait.png"))
    sync_api.expect(page.locator("#pose_gallery_portrait_check")).to_contain_text("Whole body found", timeout=30_000)
    page.get_by_role("checkbox", name="+90", exact=True).check()  # A-pose and walking, turns 0 and 90
    set_steps(page, "pose_gallery", 2)
    page.locator("#pose_gallery_run").click()
    status = page.locator("#pose_gallery_status textarea")
    sync_api.expect(status).to_have_value(re.compile(r"4 views done"), timeout=RUN_S * 1000)
    views = page.locator("#pose_gallery_views img")
    sync_api.expect(views).to_have_count(4)
    page.wait_for_timeout(500)  # let the last view lay out
    boxes = [views.nth(k).bounding_box() for k in range(4)]
    assert min(box["width"] for box in boxes) >= 250, boxes  # not thumbnails
    # The gallery is as tall as its views: no large empty area under them.
    gallery = page.locator("#pose_gallery_views").bounding_box()
    assert gallery["y"] + gallery["height"] - max(box["y"] + box["height"] for box in boxes) < 80, (gallery, boxes)
    for caption in ("A-pose, turn 0", "A-pose, turn 90", "Walking, turn 0", "Walking, turn 90"):
        sync_api.expect(page.locator("#pose_gallery_views").get_by_text(caption)).to_be_visible()
    # each caption sits under its view, not over it
    items = page.locator("#pose_gallery_views .thumbnail-item")
    for k in range(4):
        image = items.nth(k).locator("img").bounding_box()
        label = items.nth(k).locator(".caption-label").bounding_box()
        assert label["y"] >= image["y"] + image["height"] - 1, (image, label)
    sync_api.expect(page.locator("#pose_gallery_zip")).to_contain_text(re.compile(r"pose_gallery\s*\.zip"))
    page.screenshot(path=str(shots / "pose_gallery.png"), full_page=True)
