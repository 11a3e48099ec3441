"""AppTest: the Learn page on the embedded default target."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from mia_core.schedule import NoiseSchedule
from mia_core.views.style import format_number


@pytest.fixture()
def at(open_page) -> AppTest:
    return open_page("pages/learn.py")


def _values(v) -> list:
    """A plotly JSON array: a list, or plotly's typed-array encoding {"bdata": base64, "dtype": ...}."""
    if isinstance(v, dict) and "bdata" in v:
        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=v["dtype"]).tolist()
    return list(v)


def _metric(at: AppTest, startswith: str) -> str:
    values = [m.value for m in at.metric if m.label.startswith(startswith)]
    assert values, f"no metric labelled {startswith!r}: {[m.label for m in at.metric]}"
    return values[0]


def test_learn_renders_views_and_images(at):
    assert at.title[0].value.startswith("Learn")
    headers = [h.value for h in at.header]
    assert any(h.startswith("1 ·") for h in headers) and any(h.startswith("3 ·") for h in headers)
    images = at.get("image")
    assert len(images) >= 7  # x0 / noise / x_t, the denoising row, the member / non-member pair
    assert all(im.proto.imgs[0].url.endswith(".png") for im in images)  # lossless: no JPEG blur on 8x8 digits
    captions = [img.caption for im in images for img in im.proto.imgs]
    assert any("(member)" in c for c in captions) and any(c.startswith("x̂₀") for c in captions)
    assert not at.error
    # The default t is 200 and the shown abar is the schedule's.
    abar = float(NoiseSchedule.linear().alphas_cumprod[200])
    assert at.slider(key="learn.t").value == 200
    assert _metric(at, r"$\bar\alpha_t$") == format_number(abar, 4)


def test_slider_changes_abar(at):
    at.slider(key="learn.t").set_value(600).run()
    assert not at.exception
    abar600 = float(NoiseSchedule.linear().alphas_cumprod[600])
    assert _metric(at, r"$\bar\alpha_t$") == format_number(abar600, 4) == "0.02557"
    assert any(f"abar_t = {format_number(abar600, 4)}" in c.value for c in at.caption)


def test_member_and_nonmember_errors_shown(at):
    m = float(_metric(at, "member reconstruction error"))
    nm = float(_metric(at, "non-member reconstruction error"))
    assert m > 0 and nm > 0
    charts = at.get("plotly_chart")
    specs = [json.loads(c.proto.spec) for c in charts]
    bars = [s for s in specs if s["data"] and s["data"][0]["type"] == "bar"]
    assert bars and bars[0]["data"][0]["y"] == pytest.approx([m, nm], rel=5e-3)  # 3 significant digits shown
    curves = [s for s in specs if s["layout"].get("yaxis", {}).get("type") == "log"]
    assert curves and _values(curves[0]["data"][0]["x"]) == [10, 50, 100, 200, 300, 400, 500, 600, 700, 850]
    assert _values(curves[0]["data"][0]["y"])[3] == pytest.approx(m, abs=0.05)  # t=200 point, 4-draw average
    # Choosing another pair changes the member's error.
    other = at.selectbox(key="learn.member").options[5]
    at.selectbox(key="learn.member").set_value(other).run()
    assert not at.exception
    assert float(_metric(at, "member reconstruction error")) != m


def test_random_buttons_and_attack_table(at):
    at.button(key="learn.rand_nm").click().run()
    assert not at.exception
    assert "non-member" in at.selectbox(key="learn.image").format_func(at.selectbox(key="learn.image").value)
    table = at.table[0].value
    assert {"what it measures", "access", "UNet calls / image", "paper"} <= set(table.columns)
    calls = dict(zip(table.index, table["UNet calls / image"]))
    assert calls["SecMI"] == 11 and calls["PIA"] == 2  # short names of views.attack_info


def test_population_view_adds_bands(at):
    at.toggle(key="learn.population").set_value(True).run()
    assert not at.exception, at.exception
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    curve = next(s for s in specs if s["layout"].get("yaxis", {}).get("type") == "log")
    names = [d.get("name") for d in curve["data"]]
    assert "members: median" in names and "non-members: median" in names  # the shared error-curve figure
    assert sum(d.get("fill") == "tonexty" for d in curve["data"]) == 2  # the two IQR bands
    assert sum((d.get("meta") or {}).get("role") == "sample" for d in curve["data"]) == 2  # the pair on top


def test_readable_numbers_strips_and_the_play_button(open_page, monkeypatch):
    """Issue 19: three significant digits at t = 0 (not "0.0001" beside "1.53x lower"), 160 px images one per
    column (with the columns' gap, not a strip of touching 88 px thumbnails), a client-side forward animation."""
    from streamlit.elements.image import ImageMixin

    shown = []  # (caption, width, array shape) of every st.image call
    original = ImageMixin.image

    def spy(self, image, caption=None, width="content", **kwargs):
        shown.append((caption, width, np.shape(image)))
        return original(self, image, caption=caption, width=width, **kwargs)

    monkeypatch.setattr(ImageMixin, "image", spy)
    at = open_page("pages/learn.py")
    in_strip = ("x₀", "x̂₀")
    strip = [(c, w, sh) for c, w, sh in shown if isinstance(c, str) and (c in in_strip or c.startswith("x_t (t="))]
    assert len(strip) == 6, shown  # member and non-member: x0, x_t, x0_hat, each its own element
    assert all(w >= 160 and min(sh[:2]) >= 160 for _, w, sh in strip), strip

    spec = next(
        json.loads(c.proto.spec)
        for c in at.get("plotly_chart")
        if json.loads(c.proto.spec)["layout"].get("meta", {}).get("role") == "forward_animation"
    )
    assert len(spec["frames"]) >= 20 and spec["frames"][0]["name"] == "t=0"
    assert spec["frames"][-1]["name"] == f"t={NoiseSchedule.linear().num_timesteps - 1}"
    buttons = spec["layout"]["updatemenus"][0]["buttons"]
    assert buttons[0]["method"] == "animate" and "Play" in buttons[0]["label"]
    assert all(f["data"][0]["source"].startswith("data:image/png;base64,") for f in spec["frames"])

    at.slider(key="learn.cmp_t").set_value(0).run()
    assert not at.exception
    m = _metric(at, "member reconstruction error")
    nm = _metric(at, "non-member reconstruction error")
    assert m != nm and len(m.replace("0.", "", 1).lstrip("0")) >= 3, (m, nm)  # three significant digits
    sentence = next(md.value for md in at.markdown if md.value.startswith("At t = 0 with the same noise"))
    ratio = float(sentence.split("× lower")[0].split(", ")[-1])
    assert max(float(m), float(nm)) / min(float(m), float(nm)) == pytest.approx(ratio, rel=0.01)
    assert m in sentence and nm in sentence
