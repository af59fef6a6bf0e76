"""The HTML report in a real browser (headless Chromium): no script errors, every image loads, the
tables sort on a click; a screenshot is kept. Skipped with the reason when Chromium is absent,
failed instead when CPR_REQUIRE_BROWSER=1 (CI installs Debian's chromium)."""
import html
import json
import os
import re
import shutil
import subprocess

import pytest

from cpr_engine.cli.eval import main as eval_main

pytest.importorskip("matplotlib")

# first in <head>: every script error of the page is recorded
RECORD_ERRORS = """<script>window.__errors = [];
window.addEventListener("error", e => window.__errors.push(String(e.message || e)));</script>"""
# last in <body>: load every image (lazy ones too), sort the image table by score both ways, report
CHECK = """<script>
window.addEventListener("load", async () => {
  const images = [...document.images];
  images.forEach(i => { i.loading = "eager"; });
  await Promise.all(images.map(i => i.complete ? null : new Promise(done => { i.onload = i.onerror = done; })));
  const broken = images.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.getAttribute("src"));
  const table = [...document.querySelectorAll("table.sortable")].pop();
  const column = [...table.tHead.rows[0].cells].findIndex(th => th.textContent === "score");
  const scores = () => [...table.tBodies[0].rows].map(r => parseFloat(r.cells[column].dataset.value));
  table.tHead.rows[0].cells[column].click();
  const up = scores();
  table.tHead.rows[0].cells[column].click();
  const down = scores();
  document.body.setAttribute("data-check", JSON.stringify({errors: window.__errors, images: images.length,
                                                           broken, up, down}));
});
</script>"""


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if not found:
        if os.environ.get("CPR_REQUIRE_BROWSER") == "1":
            pytest.fail("CPR_REQUIRE_BROWSER=1 but no chromium on PATH (apt-get install chromium)", pytrace=False)
        pytest.skip("no chromium on PATH (apt-get install chromium)")
    return found


def _run(browser: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files",
                           *args], capture_output=True, text=True, timeout=120)


def test_report_in_headless_chromium(tiny_detector, demo_root, tmp_path):
    browser = _chromium()
    runs, report = tmp_path / "runs", tmp_path / "report"
    tiny_detector.save(runs / "coffee" / "model.pt")
    assert eval_main(["--data", str(demo_root), "--category", "coffee", "--models", str(runs), "--report",
                      str(report), "--quiet", "--device", "cpu"]) == 0
    page = (report / "index.html").read_text()
    (report / "check.html").write_text(page.replace("<head>", "<head>" + RECORD_ERRORS, 1)
                                       .replace("</body>", CHECK + "</body>", 1))
    result = _run(browser, "--virtual-time-budget=20000", "--dump-dom", (report / "check.html").as_uri())
    found = re.search(r'data-check="([^"]*)"', result.stdout)
    assert found, f"the check did not run: {result.stderr[-2000:]}"
    check = json.loads(html.unescape(found.group(1)))
    assert check["errors"] == [] and check["images"] >= 2 and check["broken"] == [], check
    assert check["up"] == sorted(check["up"]) and check["down"] == sorted(check["down"], reverse=True), check
    assert len(check["up"]) > 1 and check["up"] != check["down"]
    shot = tmp_path / "report.png"
    result = _run(browser, f"--screenshot={shot}", "--window-size=1280,1600", "--virtual-time-budget=10000",
                  (report / "index.html").as_uri())
    assert shot.is_file() and shot.stat().st_size > 10_000, result.stderr[-2000:]
