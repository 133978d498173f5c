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
