"""End to end: Compare's "Export audit report" gives one HTML file that opens with the network blocked and
shows every section (the ROC drawn by its own inlined plotly.js, the sample images from data URIs), and
prints to PDF offline with headless Chromium (mia_core.lab.report.write_pdf)."""

from __future__ import annotations

import pytest
from e2e_helpers import no_exception, wait_for_app

from mia_core.lab.report import write_pdf
from mia_core.views.report import SECTIONS

pytestmark = pytest.mark.browser


def test_exported_report_opens_offline_with_every_section(browser, page, app_server, tmp_path):
    page.goto(app_server + "/")
    wait_for_app(page)
    page.get_by_test_id("stSidebarNav").get_by_role("link", name="Compare").click()
    wait_for_app(page, 240_000)  # the first Compare run loads the experiment and evaluates every run
    button = page.get_by_role("button", name="Export audit report (HTML)")
    button.wait_for(state="visible", timeout=240_000)  # the page may still be loading the experiment
    no_exception(page)
    with page.expect_download(timeout=240_000) as download:
        button.click()
    path = tmp_path / "audit_report.html"
    download.value.save_as(path)

    offline = browser.new_context(viewport={"width": 1280, "height": 900}, offline=True)
    requests: list[str] = []
    offline.on("request", lambda r: requests.append(r.url))
    offline.route(
        "**/*", lambda route: route.continue_() if route.request.url.startswith(("file:", "data:")) else route.abort()
    )
    report = offline.new_page()
    report.goto(path.as_uri())
    report.wait_for_load_state("load")
    for sid, title in SECTIONS:
        heading = report.locator(f"section#{sid} h2")
        assert heading.inner_text() == title and heading.is_visible(), sid
    # the ROC: plotly drew it (its SVG with one curve per run, the blind baseline among them)
    report.locator("#roc .main-svg").first.wait_for(state="attached", timeout=30_000)
    legend = report.locator("#roc .legendtext").all_text_contents()
    assert any(t.startswith("Loss — AUC") for t in legend) and any("blind baseline" in t for t in legend), legend
    # the metric table, one row per run + the blind baseline; the vulnerable samples' images decoded
    assert report.locator("section#metrics tbody tr").count() == 6
    images = report.locator("section#vulnerable img")
    assert images.count() == 5 * 8
    assert images.evaluate_all("els => els.every(e => e.complete && e.naturalWidth > 0)")
    assert "mia attack --target default --data default" in report.locator("section#reproduce pre").inner_text()
    assert [u for u in requests if not u.startswith(("file:", "data:"))] == []  # nothing fetched
    offline.close()

    problem = write_pdf(path, tmp_path / "audit_report.pdf")
    assert problem is None, problem
    assert (tmp_path / "audit_report.pdf").read_bytes()[:5] == b"%PDF-"
