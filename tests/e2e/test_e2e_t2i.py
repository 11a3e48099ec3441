"""End to end on the shipped text-to-image target: one click on the Start page, the model loads, the loss attack runs
on a small subset in the Attack lab, and Compare shows the run with its conditioning in the label."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import pytest
from e2e_helpers import no_exception, wait_for_app

pytestmark = pytest.mark.browser

T2I_BUTTON = "Use the tiny text-to-image target (MNIST digits with captions)"  # = pages._common.T2I_BUTTON
LIMIT = 4  # members and non-members each: 8 images


def _nav(page, title: str) -> None:
    page.get_by_test_id("stSidebarNav").get_by_role("link", name=title, exact=True).click()
    wait_for_app(page)


def test_t2i_target_in_one_click_then_loss_then_compare(page, app_server):
    shots = Path(os.environ.get("TMPDIR") or tempfile.gettempdir())
    try:
        _flow(page, app_server)
    except Exception:
        page.screenshot(path=str(shots / "e2e_t2i_failure.png"), full_page=True)
        print(f"screenshot of the failure: {shots / 'e2e_t2i_failure.png'}")
        raise
    page.screenshot(path=str(shots / "e2e_t2i_compare.png"), full_page=True)
    print(f"screenshot: {shots / 'e2e_t2i_compare.png'}")


def _flow(page, app_server):
    import time

    t0 = time.time()

    def lap(what):
        print(f"[{time.time() - t0:6.1f} s] {what}", flush=True)

    page.set_default_timeout(60_000)
    page.goto(app_server + "/")
    wait_for_app(page)
    # Start page: one click on the text-to-image target, and it loads
    page.get_by_role("button", name=T2I_BUTTON).click()
    wait_for_app(page)
    page.get_by_text("Switched to the tiny text-to-image target").wait_for(state="visible")
    page.get_by_text("Model ready").wait_for(state="visible", timeout=240_000)
    assert "100 members and 100 non-members" in page.get_by_test_id("stAlertContentSuccess").last.inner_text()
    no_exception(page)
    lap("model ready")

    # a small subset (the Data page's control), then the loss attack alone in the Attack lab
    _nav(page, "Data")
    box = page.locator(".st-key-data-limit input")
    box.fill(str(LIMIT))
    box.press("Enter")
    wait_for_app(page)
    lap("limit set")
    _nav(page, "Attack lab")
    page.get_by_text("Attacks to run").wait_for(state="visible")
    page.get_by_text(f"limited to {LIMIT} per side").first.wait_for(state="visible")
    for title in ("SecMI", "PIA", "PIAN", "SimA", "CLiD"):
        page.get_by_role("button", name=re.compile(f"^Remove {title} ")).click()
        wait_for_app(page)
    chips = page.get_by_test_id("stMultiSelect").first.get_by_role("button", name=re.compile("^Remove "))
    assert chips.count() == 1 and chips.first.get_attribute("aria-label").startswith("Remove Loss")
    lap("chips removed")
    # conditioning: each image's own caption (the default)
    assert page.locator(".st-key-attack_lab-cond-mode input[type=radio]").first.is_checked()
    page.locator(".st-key-attack_lab-run button").click()
    page.get_by_text(f"Done — 1 attack(s) finished on {2 * LIMIT} images").wait_for(state="visible", timeout=240_000)
    lap("done")
    page.get_by_text("Conditioned on each image's own caption").first.wait_for(state="visible")
    no_exception(page)

    # Compare: the run, labelled with its conditioning
    _nav(page, "Compare")
    page.get_by_test_id("stPlotlyChart").first.wait_for(state="visible", timeout=60_000)
    lap("compare chart")
    runs = page.locator(".st-key-compare-runs")
    runs.get_by_text("Loss own caption").first.wait_for(state="visible")
    no_exception(page)
