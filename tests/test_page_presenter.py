"""AppTest of Presenter mode: the page is the HTML deck (stepped in the browser), opened at ?slide=N.

Stepping itself happens on the client (no server round trip per key); tests/e2e/test_e2e_presenter.py
measures it in Chromium. Here: the page draws exactly one deck, at the requested slide, with no
server-side Back / Next, and the download is that same deck.
"""

from __future__ import annotations

import re

import pytest

PAGE = "pages/presenter.py"


@pytest.fixture()
def at(open_page):
    return open_page(PAGE, run=False)


def _deck(app) -> str:
    frames = [el for el in app.main if getattr(el, "type", None) == "iframe"]
    if not frames:  # inside the keyed container
        frames = [el for el in app.get("iframe")]
    assert len(frames) == 1
    return frames[0].proto.srcdoc


def _start(deck: str) -> int:
    return int(re.search(r"show\(Number\.isFinite\(h\)\?h-1:(\d+)-1\)", deck).group(1))


def test_one_client_side_deck_at_the_requested_slide(at):
    at.query_params["slide"] = "3"
    at.run()
    assert not at.exception
    deck = _deck(at)
    n = deck.count("<section class='slide'")
    assert n == 9 and _start(deck) == 3
    assert "What is membership inference?" in deck and "The model fits its training images more closely" in deck
    assert "addEventListener('keydown'" in deck  # the keys step the deck in the browser
    assert deck.count("plotly.js v") <= 2
    assert not at.button  # no Back / Next round trips
    assert at.query_params["slide"] == "3" and at.session_state["present.slide"] == 3
    assert at.get("download_button")[0].proto.label.startswith("The whole deck")
    # issue 19: smooth (labelled) upscaling of the low-resolution images, on by default here; off = sharp pixels
    assert at.toggle(key="present.smooth").value is True
    assert "Images smoothly enlarged (bicubic, display only)" in deck
    at.toggle(key="present.smooth").set_value(False).run()
    assert not at.exception
    assert "smoothly enlarged" not in _deck(at) and _start(_deck(at)) == 3


def test_bad_or_out_of_range_slide_parameter_keeps_the_page_working(at):
    at.query_params["slide"] = "seven"
    at.run()
    assert not at.exception and _start(_deck(at)) == 1
    at.query_params["slide"] = "99"
    at.run()
    assert not at.exception and _start(_deck(at)) == 9
