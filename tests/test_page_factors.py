"""AppTest of the Factors & defences page: a study made in tmp_path, and every shipped study."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from test_factors_view import make_study

PAGE = "pages/factors.py"
REPO = Path(__file__).resolve().parents[1]
SHIPPED = sorted((REPO / "assets" / "studies").glob("*/study.json"))


def _texts(at) -> str:
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption] + [e.value for e in at.error]
    parts += [e.value for e in at.info] + [e.value for e in at.success]
    return "\n".join(str(p) for p in parts)


def _chart(at) -> dict:
    charts = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    assert len(charts) == 1, len(charts)
    return charts[0]


def _open_typed(at, path) -> None:
    at.text_input(key="factors.path").set_value(str(path))
    at.button(key="factors.open").click()
    at.run()
    assert not at.exception, at.exception


@pytest.fixture()
def study_dir(tmp_path) -> Path:
    folder = tmp_path / "my_dp_study"
    folder.mkdir()
    study = make_study()
    # one model folder that exists: the embedded default (it has a split.json), relative to the study
    no_dp = next(m for m in study["models"] if m["label"] == "no DP")
    no_dp["target_dir"] = os.path.relpath(REPO / "assets" / "default_target", folder)
    (folder / "study.json").write_text(json.dumps(study))
    return folder


def test_a_study_from_a_folder_shows_figure_findings_table_and_command(open_page, study_dir):
    at = open_page(PAGE)
    assert at.title[0].value.endswith("Factors & defences")
    _open_typed(at, study_dir)
    assert at.selectbox(key="factors.choice").value == str((study_dir / "study.json").resolve())
    text = _texts(at)
    assert "AUC of **PIA** (the strongest attack here) falls from 0.97 to 0.52" in text
    assert "What DP-SGD's ε means" in text
    spec = _chart(at)
    names = [t["name"] for t in spec["data"]]
    assert names[:2] == ["Loss", "PIA"] and "held-out loss (utility)" in names
    assert spec["layout"]["xaxis"]["categoryarray"] == ["no DP", "10", "4", "1"]
    table = at.dataframe[0].value
    assert len(table) == 8 and list(table["DP target epsilon"][:2]) == ["no DP", "no DP"]
    assert any(c.value == "mia study ..." for c in at.code)
    assert [b.label for b in at.get("download_button")][:2] == ["Chart (HTML)", "Data (CSV)"]


def test_switching_to_tpr_redraws(open_page, study_dir):
    at = open_page(PAGE)
    _open_typed(at, study_dir)
    at.segmented_control(key="factors.metric").set_value("tpr_at_1pct").run()
    assert not at.exception
    assert "TPR at 1% FPR of **PIA**" in _texts(at)
    assert _chart(at)["layout"]["yaxis"]["title"]["text"] == "attack TPR at 1% FPR"


def test_a_model_of_the_study_becomes_the_target(open_page, study_dir):
    at = open_page(PAGE)
    _open_typed(at, study_dir)
    assert at.selectbox(key="factors.model").options == ["no DP"]  # the only model folder that exists
    at.button(key="factors.use").click().run()
    assert not at.exception
    default_dir = (REPO / "assets" / "default_target").resolve()
    assert at.session_state["cfg.target"] == str(default_dir)
    assert at.session_state["cfg.data"] == str(default_dir / "split.json")
    assert "The session now attacks" in _texts(at)


def test_bad_folder_and_bad_file_say_why(open_page, tmp_path):
    at = open_page(PAGE)
    _open_typed(at, tmp_path / "nowhere")
    assert "is not a study folder" in at.error[0].value
    (tmp_path / "study.json").write_text(json.dumps({"format": "something-else"}))
    _open_typed(at, tmp_path)
    assert "Could not read" in at.error[0].value and "not a study" in at.error[0].value


@pytest.mark.skipif(not SHIPPED, reason="no shipped studies in assets/studies (they are computed separately)")
@pytest.mark.parametrize("path", SHIPPED, ids=[p.parent.name for p in SHIPPED])
def test_every_shipped_study_loads_and_renders(open_page, path):
    at = open_page(PAGE)
    choice = at.selectbox(key="factors.choice")
    names = [o for o in choice.options if o.startswith(f"{path.parent.name} —")]
    assert names, choice.options
    choice.set_value(names[0]).run()
    assert not at.exception, at.exception
    spec = _chart(at)
    assert [t for t in spec["data"] if t.get("meta", {}).get("role") == "attack"]
    from mia_core.lab.study import load_study
    from mia_core.views import factors as fv

    assert f"- {fv.findings(fv.study_view(load_study(path)))[0]}" in _texts(at)
    assert len(at.dataframe[0].value) > 0


def test_url_opens_a_shipped_study(open_page):
    from pathlib import Path

    if not (Path(__file__).resolve().parents[1] / "assets" / "studies" / "digits_dp_epsilon" / "study.json").is_file():
        pytest.skip("the shipped digits_dp_epsilon study is not in assets/studies")
    at = open_page("pages/factors.py", study="digits_dp_epsilon")
    assert at.selectbox(key="factors.choice").value.startswith("digits_dp_epsilon — ")


def test_shipped_shift_study_plots_every_attack_and_the_blind_baseline(open_page):
    """?study=digits_shift: every attack's AUC and the blind baseline's against the share of shifted non-members."""
    from mia_core.lab.study import load_study
    from mia_core.views import factors as fv

    path = REPO / "assets" / "studies" / "digits_shift" / "study.json"
    assert path.is_file(), "the shipped shift study (mia study --factor shift ...) is missing"
    at = open_page(PAGE, study="digits_shift")
    assert at.selectbox(key="factors.choice").value.startswith("digits_shift — ")
    spec = _chart(at)
    study = load_study(path)
    attacks = {t["meta"]["attack"]: t for t in spec["data"] if t.get("meta", {}).get("role") == "attack"}
    assert set(attacks) == {"loss", "pia", "sima", "secmi"}
    from test_page_learn import _values as _arr

    (blind,) = [t for t in spec["data"] if t.get("meta", {}).get("role") == "reference"]
    expected = [r["auc"] for r in sorted(study.rows, key=lambda r: r["value"]) if r["attack"] == "blind"]
    assert _arr(blind["y"]) == pytest.approx(expected) and _arr(blind["x"])[0] == "0% shifted"
    assert expected[0] < 0.6 < 0.9 < expected[-1]  # chance on the default split, separated when all are shifted
    text = _texts(at)
    assert "The **blind baseline**" in text and fv.SHIFT_CAVEAT in text
    assert "--factor shift" in " ".join(c.value for c in at.code)


def test_shift_study_runs_from_the_page(open_page, tmp_path, monkeypatch):
    """The mixing experiment runs on the worker from the page and is then shown, with the blind baseline."""
    import time

    monkeypatch.setenv("MIA_RUNS", str(tmp_path / "runs"))
    at = open_page(PAGE, run=False)
    at.session_state["cfg.attacks"] = ["sima", "secmi_nn"]  # a learned attack is left out
    at.run()
    at.selectbox(key="factors.shift.limit").set_value(50)
    at.button(key="factors.shift.run").click().run()
    assert not at.exception, at.exception
    file = tmp_path / "runs" / "studies" / "shift_40_50" / "study.json"
    for _ in range(240):  # the worker thread; AppTest does not tick the polling fragment
        if file.is_file() and not at.get("progress"):
            break
        time.sleep(0.5)
        at.run()
    assert not at.exception, at.exception
    assert file.is_file()
    at.run()
    study = json.loads(file.read_text())
    assert study["factor"] == "shift" and study["attacks"] == ["sima", "blind"]
    assert "--shift brightness:40" in study["command"] and "--limit 50" in study["command"]
    spec = _chart(at)
    assert [t["meta"]["attack"] for t in spec["data"] if t.get("meta", {}).get("role") == "attack"] == ["sima"]
    assert [t["meta"]["attack"] for t in spec["data"] if t.get("meta", {}).get("role") == "reference"] == ["blind"]
