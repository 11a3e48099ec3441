"""End to end: the Attack lab's threat-model filter narrows the attacks offered to one access level."""

from __future__ import annotations

import re

import pytest
from e2e_helpers import no_exception, open_dropdown, wait_for_app

pytestmark = pytest.mark.browser


def test_access_level_filter(page, app_server, tmp_path):
    try:
        _filter(page, app_server)
    except Exception:
        shot = tmp_path / "threat_filter_failure.png"
        page.screenshot(path=str(shot))
        print(f"screenshot of the failure: {shot}")
        raise


def _filter(page, app_server):
    page.set_default_timeout(60_000)
    page.goto(app_server + "/")
    wait_for_app(page)
    page.get_by_test_id("stSidebarNav").get_by_role("link", name="Attack lab").click()
    wait_for_app(page)
    pills = page.locator(".st-key-attack_lab-access")  # keys' dots become dashes in the class
    pills.wait_for(state="visible")
    no_exception(page)
    # every level is on at first: switch black and gray box off, keep white box
    for level in ("Black box", "Gray box"):
        pills.get_by_role("button", name=re.compile(f"^{level}")).click()
        wait_for_app(page)
    no_exception(page)
    chooser = page.locator(".st-key-attack_lab-attacks input")
    # "Select all" is painted before the attacks: wait for an attack's option, then read them all
    open_dropdown(page, chooser, re.compile("^GSA1"))
    options = page.get_by_role("option")
    names = [t.strip() for t in options.all_inner_texts() if t.strip() != "Select all"]
    assert names and all("white box" in n for n in names), names  # GSA1, GSA2 (the chosen ones stay chosen)
    assert any(n.startswith("GSA1") for n in names) and not any(n.startswith("ReDiffuse") for n in names)
    page.keyboard.press("Escape")
    # back to black box only: ReDiffuse and the GAN-era baselines are offered, GSA is not
    pills.get_by_role("button", name=re.compile("^White box")).click()
    wait_for_app(page)
    pills.get_by_role("button", name=re.compile("^Black box")).click()
    wait_for_app(page)
    open_dropdown(page, chooser, re.compile("^ReDiffuse"))
    names = [t.strip() for t in options.all_inner_texts() if t.strip() != "Select all"]
    assert {n.split(" — ")[0] for n in names} == {"ReDiffuse", "GAN-Leaks", "Monte-Carlo set"}, names
    no_exception(page)
