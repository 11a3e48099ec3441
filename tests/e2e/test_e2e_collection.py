"""End to end: upload a collection on "Was my image used?" (its "Was my collection used?" section) in Chromium
and get a p-value and a verdict."""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import pytest
from e2e_helpers import no_exception, wait_for_app
from PIL import Image

from mia_core.data import DEFAULT_SPLIT_PATH, Split, load_digits

pytestmark = pytest.mark.browser

N_PER_SET = 12  # images in the suspect set and in the held-out set
SCREENSHOT = Path(os.environ.get("MIA_E2E_SHOTS", "/tmp")) / "e2e_collection.png"


def _pngs(ids: list[str]) -> list[dict]:
    digits = load_digits()
    index = digits.index_of()
    files = []
    for sid in ids:
        buf = io.BytesIO()
        Image.fromarray(digits.images[index[sid]][..., 0]).save(buf, format="PNG")
        files.append({"name": f"{sid}.png", "mimeType": "image/png", "buffer": buf.getvalue()})
    return files


def _upload(page, label: str, files: list[dict]) -> None:
    uploader = page.get_by_test_id("stFileUploader").filter(has_text=label)
    with page.expect_file_chooser() as fc:
        uploader.get_by_test_id("stFileUploaderDropzone").click()
    fc.value.set_files(files)
    wait_for_app(page, timeout=180_000)


def test_upload_a_collection_get_a_p_value(page, app_server):
    from playwright.sync_api import expect

    split = Split.load(DEFAULT_SPLIT_PATH)
    suspect, heldout = _pngs(split.member_ids[:N_PER_SET]), _pngs(split.nonmember_ids[:N_PER_SET])

    page.goto(f"{app_server}/was_my_image_used")
    wait_for_app(page)
    dialog = page.get_by_role("dialog").filter(has_text="Page not found")  # cold-server race, see test_e2e_upload
    if dialog.count():
        page.keyboard.press("Escape")
    expect(page.get_by_role("heading", name="Was my image used?")).to_be_visible()

    # One cheap attack keeps the scoring short: Backspace removes the last chip (SimA, PIAN, PIA, SecMI) -> Loss.
    attacks = page.get_by_test_id("stMultiSelect").filter(has_text="Attacks")
    expect(attacks).to_be_visible(timeout=120_000)
    attacks.locator("input").click()
    for _ in range(4):
        page.keyboard.press("Backspace")
        wait_for_app(page)
    page.keyboard.press("Escape")
    wait_for_app(page)
    expect(attacks).to_contain_text("Loss")
    expect(attacks).not_to_contain_text("PIA")

    section = page.get_by_test_id("stExpander").filter(has_text="Was my collection used?")
    try:
        expect(section).to_be_visible(timeout=120_000)  # after the target and the stored scores have loaded
    finally:
        page.screenshot(path=str(SCREENSHOT.with_name("e2e_collection_start.png")))
    section.locator("summary").click()
    wait_for_app(page)
    page.get_by_test_id("stRadio").filter(has_text="Sets").get_by_text("uploaded", exact=True).click()
    wait_for_app(page)
    expect(page.get_by_text("Upload both sets")).to_be_visible()

    _upload(page, "Suspect set", suspect)
    _upload(page, "Held-out set", heldout)

    p_value = page.get_by_test_id("stMetric").filter(has_text="p-value")
    expect(p_value).to_be_visible(timeout=180_000)
    value = float(re.search(r"p-value\s*([0-9.eE+-]+)", p_value.inner_text()).group(1))
    assert 0.0 <= value <= 1.0
    used = value < 0.05  # the default significance level
    verdict = page.get_by_test_id("stMetric").filter(has_text="verdict at α")
    expect(verdict).to_contain_text("used" if used else "no evidence")
    sentence = "Likely used for training" if used else "No evidence of training use"
    expect(page.get_by_text(sentence).first).to_be_visible()
    n = N_PER_SET  # one attack: no CDI combiner, every image enters the test
    expect(page.get_by_test_id("stMetric").filter(has_text="images in the test")).to_contain_text(f"{n} + {n}")
    no_exception(page)
    page.get_by_text(sentence).first.scroll_into_view_if_needed()
    page.screenshot(path=str(SCREENSHOT), full_page=False)
