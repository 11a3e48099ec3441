"""End to end: the first page's load time, and stepping Presenter mode with the keyboard."""

from __future__ import annotations

import re
import time

import pytest
from e2e_helpers import no_exception, wait_for_app

pytestmark = pytest.mark.browser

#: Widgets a first page may show (any one of them visible = the page can be used).
WIDGETS = ", ".join(f'[data-testid="stMain"] [data-testid="{t}"]' for t in (
    "stButton", "stSlider", "stSelectbox", "stRadio", "stTextInput", "stNumberInput", "stCheckbox",
    "stMultiSelect", "stFileUploader", "stSegmentedControl", "stButtonGroup", "stTabs", "stPageLink",
))


def test_first_page_is_interactive_quickly(page, app_server):
    """From a healthy, cold server to the first page (Start, at /) being usable: within 5 s.

    The model loads on a background thread meanwhile; the page then says it is ready and Learn opens.
    """
    start = time.perf_counter()
    page.goto(app_server + "/")
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=60_000)
    page.locator(f'{WIDGETS}, [data-testid="stMain"] h1').first.wait_for(state="visible", timeout=60_000)
    elapsed = time.perf_counter() - start
    print(f"first page interactive in {elapsed:.1f} s")
    no_exception(page)
    assert page.locator("h1").first.inner_text().strip() == "Diffusion MIA lab"
    assert elapsed < 5, f"the first page took {elapsed:.1f} s to become interactive"
    page.get_by_text("Model ready").first.wait_for(state="visible", timeout=60_000)
    page.get_by_test_id("stSidebarNav").get_by_role("link", name="Learn").click()
    page.get_by_role("heading", name="Learn: membership inference on diffusion models").wait_for(timeout=30_000)
    wait_for_app(page)
    no_exception(page)


def _slide_number(page) -> str:
    return page.locator(".st-key-present_number").inner_text().strip()


def test_keyboard_steps_through_the_slides(page, app_server):
    page.goto(app_server + "/presenter?slide=1")
    wait_for_app(page)
    no_exception(page)
    number = page.locator(".st-key-present_number")
    assert re.fullmatch(r"1 / \d+", _slide_number(page))
    assert page.get_by_text("What is membership inference?").first.is_visible()

    # Shortcuts are registered once the buttons have mounted: wait for them before the first key.
    page.get_by_role("button", name=re.compile("Next")).first.wait_for(state="visible")
    page.wait_for_timeout(500)
    page.keyboard.press("ArrowRight")  # the Next button's shortcut
    page.wait_for_function("() => document.querySelector('.st-key-present_number')?.innerText.trim().startsWith('2 /')",
                           timeout=30_000)
    wait_for_app(page)
    assert _slide_number(page).startswith("2 /")
    assert "slide=2" in page.url  # the slide is in the URL, so it can be linked
    page.get_by_test_id("stPlotlyChart").first.wait_for(state="visible")  # slide 2 draws a chart

    page.keyboard.press("ArrowLeft")  # Back
    page.wait_for_function("() => document.querySelector('.st-key-present_number')?.innerText.trim().startsWith('1 /')",
                           timeout=30_000)
    assert _slide_number(page).startswith("1 /")

    page.keyboard.press("PageDown")  # what presentation clickers send
    page.wait_for_function("() => document.querySelector('.st-key-present_number')?.innerText.trim().startsWith('2 /')",
                           timeout=30_000)
    page.keyboard.press("PageUp")
    page.wait_for_function("() => document.querySelector('.st-key-present_number')?.innerText.trim().startsWith('1 /')",
                           timeout=30_000)
    assert number.is_visible()
    no_exception(page)


def test_slide_link_opens_that_slide(page, app_server):
    page.goto(app_server + "/presenter?slide=5")
    wait_for_app(page)
    assert _slide_number(page).startswith("5 /")
    page.get_by_test_id("stPlotlyChart").first.wait_for(state="visible")
    no_exception(page)
