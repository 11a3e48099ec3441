"""The presenter deck: built from the precomputed demo store, every slide's figure builds, big fonts."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mia_core.attacks import DEFAULT_ATTACKS, AttackResult
from mia_core.lab.presenter_data import (
    DEFENCE_STUDY,
    DEMO_COMMAND,
    DeckData,
    load_default_deck_data,
    load_defence_study,
    missing_attacks,
)
from mia_core.lab.runs import ResultStore
from mia_core.metrics import auc, tpr_at_fpr
from mia_core.paths import DEMO_STORE_DIR
from mia_core.views import results as F
from mia_core.views.attack_info import short_name
from mia_core.views.html import deck_html
from mia_core.views.presenter import build_deck, defence_slide, nearest_pairs, roc_figure, summarise
from mia_core.views.style import MEMBER_COLOR, NONMEMBER_COLOR, attack_color

EXPECTED_KEYS = ["what", "pairs", "error_curve", "histogram", "roc", "tpr_bars", "timestep_auc", "defence", "meaning"]


@pytest.fixture(scope="module")
def demo_deck(tmp_path_factory):
    if not any(DEMO_STORE_DIR.glob("*/meta.json")):
        pytest.skip(f"no precomputed results in {DEMO_STORE_DIR}; make them with: {DEMO_COMMAND}")
    store = ResultStore(tmp_path_factory.mktemp("store"), extra_readonly=[DEMO_STORE_DIR])
    data, missing = load_default_deck_data(store)
    return build_deck(data, load_defence_study()), missing


def _synthetic(n: int = 60, with_results: bool = True, seed: int = 0) -> DeckData:
    rng = np.random.default_rng(seed)
    ids = tuple(f"img-{i:03d}" for i in range(n))
    images = rng.integers(0, 256, size=(n, 8, 8, 1), dtype=np.uint8)
    is_member = np.arange(n) < n // 2
    results = {}
    if with_results:
        ts = np.array([0, 100, 200])
        for k, name in enumerate(("loss", "pia")):
            trace = rng.uniform(1, 2, size=(n, 3)) - 0.3 * (k + 1) * is_member[:, None]
            results[name] = AttackResult(name, ids, -trace[:, 1], ts, trace, "err", 2, 1.0, {})
    return DeckData(ids, images, is_member, results, "a synthetic test")


def test_demo_deck_has_every_slide(demo_deck):
    slides, missing = demo_deck
    assert missing == []
    assert [s.key for s in slides] == EXPECTED_KEYS
    titles = [s.title for s in slides]
    assert titles[0] == "What is membership inference?"
    assert titles[-1] == "What this does and does not mean"
    assert len(set(titles)) == len(titles)
    for s in slides:
        assert s.takeaway[-1] in ".?" and len(s.takeaway) < 200, s.key
    assert [s.key for s in slides if s.is_text] == ["what", "meaning"]


def test_demo_deck_every_figure_builds_with_big_fonts(demo_deck):
    slides, _ = demo_deck
    for s in slides:
        fig = s.figure()
        if s.is_text:
            assert fig is None and "**" in s.body
            continue
        assert fig is not None and len(fig.data) > 0, s.key
        spec = json.loads(fig.to_json())
        assert spec["layout"]["font"]["size"] >= 20, s.key
        for trace in spec["data"]:
            assert trace["type"] in ("scatter", "bar", "histogram", "heatmap", "image"), s.key  # no WebGL
            width = trace.get("line", {}).get("width")
            if (
                trace["type"] == "scatter"
                and trace.get("mode", "").startswith("lines")
                and trace.get("showlegend", True)
            ):
                if width == 0:  # an invisible band edge: its legend entry is the filled band
                    assert trace.get("fill"), (s.key, trace.get("name"))
                    continue
                assert width is None or width >= 3, (s.key, trace.get("name"))


def test_demo_deck_roc_is_log_log_with_every_attack(demo_deck):
    slides, _ = demo_deck
    roc = next(s for s in slides if s.key == "roc").figure()
    assert roc.layout.xaxis.type == "log" and roc.layout.yaxis.type == "log"
    named = [t for t in roc.data if t.name and "AUC" in t.name]
    assert len(named) == len(DEFAULT_ATTACKS)
    titles = {short_name(n) for n in DEFAULT_ATTACKS}
    assert {t.name.split(" — ")[0] for t in named} == titles
    assert {t.line.color for t in named} == {attack_color(n) for n in DEFAULT_ATTACKS}


def test_demo_deck_numbers_match_the_metrics(demo_deck, tmp_path):
    slides, _ = demo_deck
    bars = next(s for s in slides if s.key == "tpr_bars").figure()
    values = list(bars.data[0].y)
    assert values == sorted(values, reverse=True)  # best first
    # SimA is the best attack on the embedded target (it leaks visibly: that is the point of the demo)
    assert bars.data[0].x[0] == "SimA"
    assert "SimA" in next(s for s in slides if s.key == "histogram").takeaway
    hist = next(s for s in slides if s.key == "histogram").figure()
    assert [t.marker.color for t in hist.data] == [NONMEMBER_COLOR, MEMBER_COLOR]
    assert any("threshold at 1 % FPR" in (a.text or "") for a in hist.layout.annotations)


def test_summary_and_timestep_numbers_are_the_metrics():
    data = _synthetic()
    summary = summarise(data)
    assert [s.name for s in summary] == ["pia", "loss"]  # pia separates better by construction
    for s in summary:
        assert s.auc == pytest.approx(auc(data.results[s.name].scores, data.is_member))
        assert (
            s.tpr is None and tpr_at_fpr(data.results[s.name].scores, data.is_member, 0.5) is not None
        )  # 30 non-members: 1 % is n/a
    slides = build_deck(data)
    curve = next(s for s in slides if s.key == "timestep_auc").figure()
    pia = next(t for t in curve.data if t.name == "PIA")
    trace = data.results["pia"].trace
    assert list(pia.x) == [0, 100, 200]
    assert pia.y[1] == pytest.approx(auc(-trace[:, 1], data.is_member))


def test_deck_without_results_keeps_the_text_and_images():
    data = _synthetic(with_results=False)
    slides = build_deck(data)
    assert [s.key for s in slides] == ["what", "pairs", "meaning"]
    assert missing_attacks(data.results) == list(DEFAULT_ATTACKS)
    assert "mia attack" in DEMO_COMMAND and "assets/demo_store" in DEMO_COMMAND
    assert slides[1].figure() is not None


def test_deck_data_rejects_results_of_other_images():
    data = _synthetic()
    other = AttackResult(
        "loss",
        tuple(reversed(data.ids)),
        np.zeros(len(data.ids)),
        np.zeros(0, dtype=np.int64),
        np.zeros((len(data.ids), 0)),
        "",
        1,
        1.0,
        {},
    )
    with pytest.raises(ValueError, match="other images"):
        DeckData(data.ids, data.images, data.is_member, {"loss": other})


def test_nearest_pairs_are_member_then_closest_nonmember():
    data = _synthetic(n=40)
    pairs = nearest_pairs(data.images, data.is_member, 4)
    assert len(pairs) == 4 and len({n for _, n in pairs}) == 4
    flat = data.images.reshape(40, -1).astype(float)
    for m, nm in pairs[:1]:  # the first pick gets its true nearest non-member
        assert data.is_member[m] and not data.is_member[nm]
        d = ((flat[~data.is_member] - flat[m]) ** 2).sum(1)
        assert ((flat[nm] - flat[m]) ** 2).sum() == pytest.approx(d.min())


def test_deck_html_embeds_plotly_once():
    slides = build_deck(_synthetic())
    html = deck_html(slides)
    assert html.count("<section class='slide'") == len(slides)
    assert html.count("plotly.js v") <= 2  # the library is embedded once (its banner appears in the bundle)
    assert "What is membership inference?" in html and "<li>" in html


def test_defence_slide_shows_the_shipped_dp_study():
    if not DEFENCE_STUDY.is_file():
        pytest.skip(f"{DEFENCE_STUDY} is not shipped here")
    slide = defence_slide(load_defence_study())
    assert slide.takeaway.startswith("AUC of SimA (the strongest attack here) falls from 0.91 to 0.56")
    fig = slide.figure()
    attacks = [t for t in fig.data if t.meta and t.meta.get("role") == "attack"]
    assert {t.meta["attack"] for t in attacks} == {"loss", "pia", "sima", "secmi"}
    assert list(attacks[0].x) == ["no DP", "100", "10", "1"]  # privacy grows left to right
    assert load_defence_study(DEFENCE_STUDY.parent / "missing.json") is None


def test_presenter_roc_is_the_compare_roc_restyled():
    data = _synthetic(n=200)
    slide_fig = roc_figure(data)
    page_fig = F.roc_figure(
        {s.name: (data.results[s.name].scores, data.is_member) for s in summarise(data)}, log=True, budget=0.01
    )
    assert len(slide_fig.data) == len(page_fig.data)
    for a, b in zip(slide_fig.data, page_fig.data):
        assert a.name == b.name and a.meta == b.meta
        np.testing.assert_array_equal(np.asarray(a.x, float), np.asarray(b.x, float))
        np.testing.assert_array_equal(np.asarray(a.y, float), np.asarray(b.y, float))
        if "lines" in (a.mode or ""):
            assert a.line.width >= 3 and a.line.width >= (b.line.width or 0)
    assert slide_fig.layout.font.size >= 20 > page_fig.layout.font.size
    assert slide_fig.layout.xaxis.type == "log" == page_fig.layout.xaxis.type


def test_presenter_error_curve_is_the_sample_explorer_curve_restyled():
    data = _synthetic(n=40)
    slides = build_deck(data)
    slide_fig = next(s for s in slides if s.key == "error_curve").figure()
    page_fig = F.attack_error_curve(data.results["loss"], data.is_member)
    assert [t.meta for t in slide_fig.data] == [t.meta for t in page_fig.data]
    for a, b in zip(slide_fig.data, page_fig.data):
        np.testing.assert_array_equal(np.asarray(a.y, float), np.asarray(b.y, float))
    assert slide_fig.layout.font.size >= 20


def test_presenter_histogram_uses_the_shared_log_rule():
    data = _synthetic(n=60)
    spread = -np.logspace(0, 4, 60)  # negated distances over four decades: the shared rule logs them
    res = data.results["loss"]
    data = DeckData(
        data.ids,
        data.images,
        data.is_member,
        {"loss": AttackResult("loss", data.ids, spread, res.trace_timesteps, res.trace, "err", 2, 1.0, {})},
    )
    values, logged = F.display_scores(spread)
    assert logged
    hist = next(s for s in build_deck(data) if s.key == "histogram").figure()
    shown = np.concatenate([np.asarray(t.x, float) for t in hist.data])
    assert shown.min() >= values.min() - 1e-9 and shown.max() <= values.max() + 1e-9
    assert "log scale" in hist.layout.xaxis.title.text
