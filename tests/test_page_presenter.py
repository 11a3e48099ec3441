"""AppTest of Presenter mode: stepping with Next / Back, the slide in the URL, one chart per slide."""

from __future__ import annotations

import json

import pytest

PAGE = "pages/presenter.py"


@pytest.fixture()
def at(open_page):
    return open_page(PAGE, run=False)


def _number(app) -> str:
    found = [m.value for m in app.markdown if " / " in m.value and len(m.value) < 10]
    assert len(found) == 1, [m.value for m in app.markdown]
    return found[0]


def test_next_and_back_step_through_the_slides(at):
    at.run()
    assert not at.exception
    assert _number(at) == "1 / 9"
    assert at.markdown[0].value == "# What is membership inference?"
    assert at.button(key="present_back").disabled
    at.button(key="present_next").click().run()
    assert _number(at) == "2 / 9"
    assert at.query_params["slide"] == "2"  # the slide is in the URL, so it can be linked
    at.button(key="present_next").click().run()
    assert _number(at) == "3 / 9"
    at.button(key="present_back").click().run()
    assert _number(at) == "2 / 9"
    assert at.session_state["present.slide"] == 2
    # the clicker keys (PageDown / PageUp) have their own buttons
    at.button(key="present_pgdn").click().run()
    assert _number(at) == "3 / 9"
    at.button(key="present_pgup").click().run()
    assert _number(at) == "2 / 9"
    assert not at.exception


def test_slide_query_param_opens_that_slide(at):
    at.query_params["slide"] = "3"
    at.run()
    assert not at.exception
    assert _number(at) == "3 / 9"
    assert at.markdown[0].value == "# The model fits its training images more closely"
    charts = at.get("plotly_chart")
    assert len(charts) == 1
    spec = json.loads(charts[0].proto.spec)
    assert spec["layout"]["font"]["size"] >= 20


def test_roc_slide_is_log_log_and_last_slide_cannot_go_further(at):
    at.query_params["slide"] = "5"
    at.run()
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert spec["layout"]["xaxis"]["type"] == "log" and spec["layout"]["yaxis"]["type"] == "log"
    assert sum("AUC" in (t.get("name") or "") for t in spec["data"]) == 5
    at.query_params["slide"] = "99"  # clamped to the last slide
    at.run()
    assert _number(at) == "9 / 9" and at.button(key="present_next").disabled
    assert "does not mean" in at.markdown[0].value and not at.get("plotly_chart")


def test_bad_slide_parameter_keeps_the_page_working(at):
    at.query_params["slide"] = "abc"
    at.run()
    assert not at.exception
    assert _number(at) == "1 / 9"
