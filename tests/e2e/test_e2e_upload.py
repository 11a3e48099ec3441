"""End to end: upload a PNG on "Was my image used?" in Chromium and see a verdict."""

from __future__ import annotations

import io

import pytest
from e2e_helpers import no_exception, wait_for_app
from PIL import Image

from mia_core.data import DEFAULT_SPLIT_PATH, Split, load_digits

pytestmark = pytest.mark.browser


def _member_png() -> bytes:
    digits, split = load_digits(), Split.load(DEFAULT_SPLIT_PATH)
    image = digits.images[digits.index_of()[split.member_ids[0]]][..., 0]
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def _dismiss_page_not_found(page) -> None:
    """On a cold server the first deep link can race Streamlit's page list and show a "Page not found"
    dialog over the (correct) page; it makes the page inert, so close it."""
    dialog = page.get_by_role("dialog").filter(has_text="Page not found")
    if dialog.count():
        page.keyboard.press("Escape")
        dialog.wait_for(state="hidden", timeout=10_000)


def test_upload_png_shows_verdict(page, app_server):
    from playwright.sync_api import expect

    page.goto(f"{app_server}/was_my_image_used")
    wait_for_app(page)
    _dismiss_page_not_found(page)
    expect(page.get_by_role("heading", name="Was my image used?")).to_be_visible()
    no_exception(page)

    with page.expect_file_chooser() as fc:
        page.get_by_test_id("stFileUploaderDropzone").first.click()
    fc.value.set_files([{"name": "my-digit.png", "mimeType": "image/png", "buffer": _member_png()}])
    wait_for_app(page)

    verdict = page.get_by_text("flagged as member at 1 % FPR").or_(page.get_by_text("not flagged at 1 % FPR"))
    expect(verdict.first).to_be_visible(timeout=60_000)
    expect(page.get_by_text("my-digit.png").first).to_be_visible()
    expect(page.get_by_test_id("stPlotlyChart").first).to_be_visible(timeout=30_000)
    no_exception(page)
