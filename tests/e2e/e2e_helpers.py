"""Waiting and checking helpers shared by the Playwright tests (a module of its own: tests/conftest.py
and tests/e2e/conftest.py share a name, so neither can be imported as ``conftest``)."""

from __future__ import annotations


def wait_for_app(page, timeout: float = 60_000) -> None:
    """Wait until the script has run: connected, not running, no skeletons."""
    page.wait_for_timeout(250)  # a click may not have started the rerun yet
    page.wait_for_selector('[data-testid="stApp"][data-test-connection-state="CONNECTED"]', timeout=timeout)
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=timeout)


def no_exception(page) -> None:
    """Fail if Streamlit rendered an exception box anywhere on the page."""
    boxes = page.locator('[data-testid="stException"]')
    assert boxes.count() == 0, boxes.first.inner_text()
