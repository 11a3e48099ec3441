"""End to end: from a cold server to a usable first page (this module has a server of its own, so it is cold)."""

from __future__ import annotations

import time

import pytest
from e2e_helpers import no_exception, wait_for_app

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def app_server(own_app_server):
    """A server of its own: the check is from a cold server."""
    return own_app_server


#: Widgets a first page may show (any one of them visible = the page can be used).
WIDGETS = ", ".join(
    f'[data-testid="stMain"] [data-testid="{t}"]'
    for t in (
        "stButton",
        "stSlider",
        "stSelectbox",
        "stRadio",
        "stTextInput",
        "stNumberInput",
        "stCheckbox",
        "stMultiSelect",
        "stFileUploader",
        "stSegmentedControl",
        "stButtonGroup",
        "stTabs",
        "stPageLink",
    )
)


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
