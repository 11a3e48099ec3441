"""What the Playwright tests and ``scripts/screenshots.py`` share: Chromium's path and flags, starting and
stopping the app, waiting for a page. A module of its own: tests/conftest.py and tests/e2e/conftest.py
share a name, so neither can be imported as ``conftest``; the screenshot script puts this folder on
``sys.path`` to import it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("MIA_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AppDidNotStart(RuntimeError):
    """``streamlit run`` exited or did not answer its health check in time; the message holds its log."""


def start_app(
    store: Path, log_path: Path, *, port: int | None = None, timeout_s: float = 90
) -> tuple[subprocess.Popen, str]:
    """``streamlit run app.py`` headless with the result store ``store``; returns (process, URL) once
    ``/_stcore/health`` answers ok. The process leads its own group (stop it with :func:`stop_app`)."""
    port = port or free_port()
    env = {**os.environ, "MIA_STORE": str(store), "PYTHONUNBUFFERED": "1"}
    cmd = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(REPO / "app.py"),
        "--server.headless",
        "true",
        "--server.port",
        str(port),
        "--browser.gatherUsageStats",
        "false",
        "--server.fileWatcherType",
        "none",
        "--global.developmentMode",
        "false",
    ]
    with open(log_path, "w") as log:  # a file, not a pipe: a full pipe can block the server
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                return proc, url
        except OSError:
            time.sleep(0.3)
        if proc.poll() is not None:
            break
    stop_app(proc)
    raise AppDidNotStart(f"streamlit did not become healthy in {timeout_s:.0f} s:\n{log_path.read_text()[-3000:]}")


def stop_app(proc: subprocess.Popen) -> None:
    """Stop the server started by :func:`start_app` and everything it started (a test server has nothing to
    save: one second to stop on its own, then killed; a graceful Streamlit shutdown takes ~3 s)."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=1)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass


def wait_for_app(page, timeout: float = 60_000) -> None:
    """Wait until the script has run: connected, not running, no skeletons."""
    page.wait_for_timeout(250)  # a click may not have started the rerun yet
    page.wait_for_selector('[data-testid="stApp"][data-test-connection-state="CONNECTED"]', timeout=timeout)
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=timeout)


def open_dropdown(page, box, option, attempts: int = 8, timeout: float = 5_000) -> None:
    """Open the dropdown of the select box ``box`` (a locator of its input) until ``option`` (a regex on an
    option's name) is visible. A rerun that lands after the click (a busy machine starts it late) repaints
    the widget and closes its menu, so the click is repeated, ``attempts`` times at most."""
    wanted = page.get_by_role("option", name=option)
    for attempt in range(attempts):
        wait_for_app(page)
        box.click()
        try:
            wanted.first.wait_for(state="visible", timeout=timeout)
            return
        except Exception:
            if attempt == attempts - 1:
                raise
            page.keyboard.press("Escape")


def no_exception(page) -> None:
    """Fail if Streamlit rendered an exception box anywhere on the page."""
    boxes = page.locator('[data-testid="stException"]')
    assert boxes.count() == 0, boxes.first.inner_text()
