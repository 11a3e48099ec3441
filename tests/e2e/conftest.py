"""Playwright end-to-end fixtures: one Streamlit server shared by the modules, a server of its own for a module
whose stored runs would show in the others' pages (or that measures a cold start); Debian's Chromium.

Run with ``python -m pytest tests/e2e``. Skipped with a reason when Chromium or Playwright is
missing (``apt-get install -y chromium``; the Playwright Python package comes with the test extra).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_helpers import CHROMIUM, CHROMIUM_ARGS, AppDidNotStart, start_app, stop_app

pytestmark = pytest.mark.browser


def _serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Start ``streamlit run app.py`` on a free port with a fresh result store; yield its URL."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"Chromium not found at {CHROMIUM} (apt-get install -y chromium)")
    pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    store = tmp_path_factory.mktemp("store")
    log_path = tmp_path_factory.mktemp("log") / "streamlit.log"
    try:
        proc, url = start_app(store, log_path, timeout_s=60)
    except AppDidNotStart as err:
        pytest.fail(str(err))
    yield url
    stop_app(proc)


@pytest.fixture(scope="session")
def app_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The server the modules share (one result store): its caches warm once, not per module (a cold server
    spends ~15 s loading the default experiment). What a module stores must not change what another module's
    pages show; a module whose runs would (or that measures a cold start) overrides ``app_server`` with
    :func:`own_app_server` (see test_e2e_attack_lab)."""
    yield from _serve(tmp_path_factory)


@pytest.fixture(scope="module")
def own_app_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server of the module's own, with an empty result store."""
    yield from _serve(tmp_path_factory)


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture()
def page(browser, app_server):
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    pg = context.new_page()
    pg.set_default_timeout(30_000)
    yield pg
    context.close()
