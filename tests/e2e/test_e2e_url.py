"""End to end: a Compare link reproduces the view. A selection of runs and an FPR budget are made in the
page, the URL is copied, and a NEW browser context (a fresh session: no cookies, no session state) opens
it and shows the same runs and budget."""

from __future__ import annotations

import re

import pytest
from e2e_helpers import no_exception, wait_for_app

pytestmark = pytest.mark.browser


def _chips(page) -> list[str]:
    chips = page.locator(".st-key-compare-runs [data-tag]")  # the multiselect's chips (aria-label = the label)
    chips.first.wait_for(state="visible", timeout=240_000)  # the page may still be loading the experiment
    return [c.get_attribute("aria-label") for c in chips.all()]


def _legend(page) -> list[str]:
    roc = page.locator(".st-key-roc_log [data-testid='stPlotlyChart']")
    roc.locator(".legendtext").first.wait_for(state="attached", timeout=60_000)
    return roc.locator(".legendtext").all_text_contents()


def test_copied_compare_url_reproduces_runs_and_budget_in_a_new_context(browser, app_server):
    first = browser.new_context(viewport={"width": 1440, "height": 900})
    page = first.new_page()
    page.set_default_timeout(60_000)
    page.goto(app_server + "/")  # a first visit to the root registers the st.navigation pages
    wait_for_app(page)
    page.get_by_test_id("stSidebarNav").get_by_role("link", name="Compare").click()
    wait_for_app(page, 240_000)  # the first Compare run loads the experiment and evaluates every run
    assert _chips(page) == ["Loss", "SecMI", "PIA", "PIAN", "SimA"]  # the Attack lab's selection

    # the selection: drop three runs with their chips' remove buttons, then a 5 % budget
    for label in ("SimA", "PIAN", "PIA"):
        page.locator(".st-key-compare-runs").get_by_role("button", name=f"Remove {label}", exact=True).click()
        wait_for_app(page, 240_000)
        page.locator(f".st-key-compare-runs [data-tag][aria-label='{label}']").wait_for(state="detached")
    page.locator(".st-key-fpr").get_by_role("radio", name="5%", exact=True).click()  # a segmented control
    wait_for_app(page)
    no_exception(page)
    assert _chips(page) == ["Loss", "SecMI"]
    legend = _legend(page)
    assert any(t.startswith("Loss — AUC") and "TPR@5%" in t for t in legend), legend
    assert not any(t.startswith("PIA") for t in legend)
    url = page.url
    assert re.search(r"[?&]runs=loss(%7C|\|)secmi(&|$)", url) and re.search(r"[?&]fpr=5(%25|%)", url), url
    first.close()

    fresh = browser.new_context(viewport={"width": 1440, "height": 900})  # nothing shared with the first
    page = fresh.new_page()
    page.set_default_timeout(60_000)
    page.goto(url)
    wait_for_app(page, 240_000)
    no_exception(page)
    page.get_by_role("heading", name=re.compile("Compare attacks")).wait_for(state="visible")
    assert _chips(page) == ["Loss", "SecMI"]
    checked_radio = page.locator(".st-key-fpr [role='radio'][aria-checked='true']")
    checked_radio.first.wait_for(state="visible")  # the picker is painted after the heading: wait, then read
    checked = checked_radio.all_inner_texts()
    assert checked == ["5%"], checked
    legend = _legend(page)
    assert sum(t.startswith(("Loss — AUC", "SecMI — AUC")) and "TPR@5%" in t for t in legend) == 2, legend
    assert re.search(r"[?&]runs=loss(%7C|\|)secmi(&|$)", page.url)
    fresh.close()
