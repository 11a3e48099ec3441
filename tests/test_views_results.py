"""Unit tests of mia_core.views.results: figure structure, numbers against mia_core.metrics, per-sample links."""

from __future__ import annotations

import base64
import io
import math

import numpy as np
import pytest
from PIL import Image

from mia_core import metrics as M
from mia_core.attacks import AttackResult
from mia_core.views import results as F
from mia_core.views.style import MEMBER_COLOR, NONMEMBER_COLOR, attack_color


def _split(n_members: int = 300, n_nonmembers: int = 400, shift: float = 1.0, seed: int = 0):
    rng = np.random.default_rng(seed)
    is_member = np.r_[np.ones(n_members, bool), np.zeros(n_nonmembers, bool)]
    scores = rng.normal(size=is_member.size) + shift * is_member
    ids = [f"img-{i:04d}" for i in range(is_member.size)]
    return scores, is_member, ids


def _result(name: str, scores, trace, timesteps, ids, params=None) -> AttackResult:
    return AttackResult(
        attack=name,
        ids=tuple(ids),
        scores=np.asarray(scores, float),
        trace_timesteps=np.asarray(timesteps),
        trace=np.asarray(trace, float),
        trace_label="error",
        unet_calls_per_image=3,
        seconds=1.5,
        params=params or {},
    )


# --------------------------------------------------------------------------- ROC


def test_roc_log_axes_guides_diagonal_and_legend():
    scores, is_member, _ = _split()
    other = -scores + np.random.default_rng(1).normal(size=scores.size)
    fig = F.roc_figure({"secmi": (scores, is_member), "pia": (other, is_member)}, log=True)
    layout = fig.layout
    assert layout.xaxis.type == "log" and layout.yaxis.type == "log"
    n_nm = int((~is_member).sum())
    expected_min = math.log10(min(1e-4, 1 / (2 * n_nm)))
    assert layout.xaxis.range == pytest.approx((expected_min, 0.0))
    assert layout.yaxis.range == pytest.approx((expected_min, 0.0))

    diagonal = [t for t in fig.data if (t.meta or {}).get("role") == "diagonal"]
    assert len(diagonal) == 1
    assert diagonal[0].line.dash == "dash"
    assert list(diagonal[0].x) == list(diagonal[0].y)  # TPR = FPR

    guides = {s.name: s for s in layout.shapes if s.name and s.name.startswith("guide")}
    assert set(guides) == {"guide 1%", "guide 0.1%"}
    assert guides["guide 1%"].x0 == pytest.approx(0.01) and guides["guide 1%"].line.dash == "dot"
    assert guides["guide 0.1%"].x0 == pytest.approx(0.001)
    shade = [s for s in layout.shapes if s.name == "unresolvable"]
    assert len(shade) == 1 and shade[0].x1 == pytest.approx(1 / n_nm)
    assert any(f"not resolvable with {n_nm} non-members" in a.text for a in layout.annotations)

    rocs = [t for t in fig.data if (t.meta or {}).get("role") == "roc"]
    assert [t.meta["attack"] for t in rocs] == ["secmi", "pia"]
    auc = M.auc(scores, is_member)
    tpr = M.tpr_at_fpr(scores, is_member, 0.01)
    assert rocs[0].name == f"SecMI — AUC {auc:.3f} · TPR@1% {tpr:.3f}"
    assert rocs[0].line.color == attack_color("secmi")
    for trace in fig.data:
        assert trace.type == "scatter"  # SVG, never scattergl
    for trace in rocs:
        assert np.all(np.asarray(trace.x) > 0)  # FPR = 0 dropped on a log axis
        assert np.all(np.asarray(trace.y) > 0)


def test_roc_operating_point_within_budget_and_customdata():
    scores, is_member, _ = _split(shift=1.5)
    fig = F.roc_figure({"loss": (scores, is_member)}, budget=0.05)
    point = [t for t in fig.data if (t.meta or {}).get("role") == "operating point"][0]
    thr, fpr, tpr = point.customdata[0]
    assert fpr <= 0.05
    assert tpr == pytest.approx(M.tpr_at_fpr(scores, is_member, 0.05))
    assert thr == pytest.approx(M.threshold_at_fpr(scores, is_member, 0.05))
    roc = [t for t in fig.data if (t.meta or {}).get("role") == "roc"][0]
    custom = np.asarray(roc.customdata)
    assert custom.shape[1] == 3
    np.testing.assert_allclose(custom[:, 1], np.asarray(roc.x))  # customdata = [threshold, fpr, tpr]


def test_roc_downsampled_and_conservative():
    rng = np.random.default_rng(3)
    is_member = np.r_[np.ones(4000, bool), np.zeros(4000, bool)]
    scores = rng.normal(size=8000) + 0.8 * is_member
    fig = F.roc_figure({"pia": (scores, is_member)})
    roc = [t for t in fig.data if (t.meta or {}).get("role") == "roc"][0]
    assert len(roc.x) <= 320
    exact = M.roc_curve(scores, is_member)
    for x, y in zip(roc.x, roc.y):  # every drawn vertex lies on the exact ROC
        tpr_max = exact.tpr[np.asarray(exact.fpr) <= x + 1e-12].max()
        assert y <= tpr_max + 1e-12
    # 8000 scores, 4000 non-members: the axis reaches down to 1 / (2 * 4000)
    assert fig.layout.xaxis.range[0] == pytest.approx(math.log10(1e-4))


def test_roc_linear_version():
    scores, is_member, _ = _split()
    fig = F.roc_figure({"sima": (scores, is_member)}, log=False)
    assert fig.layout.xaxis.type == "linear" and fig.layout.yaxis.type == "linear"
    assert tuple(fig.layout.xaxis.range) == (0, 1)
    assert not [s for s in fig.layout.shapes if s.name and s.name.startswith("guide")]
    roc = [t for t in fig.data if (t.meta or {}).get("role") == "roc"][0]
    assert roc.x[0] == 0.0  # the (0, 0) point stays on linear axes


# --------------------------------------------------------------------------- metric table


def test_metric_table_values_and_na():
    scores, is_member, ids = _split(n_members=200, n_nonmembers=150)
    metrics = {
        "secmi": M.evaluate(scores, is_member, n_bootstrap=50),
        "pia": M.evaluate(-scores, is_member, n_bootstrap=50),
    }
    results = {"secmi": _result("secmi", scores, np.zeros((350, 0)), [], ids)}
    table = F.metric_table(metrics, results, {"secmi": 11, "pia": 2})
    assert list(table.index) == ["secmi", "pia"]
    assert table.loc["secmi", "AUC"] == pytest.approx(M.auc(scores, is_member))
    assert table.loc["pia", "AUC"] == pytest.approx(M.auc(-scores, is_member))
    assert table.loc["secmi", "TPR@1%FPR"] == f"{M.tpr_at_fpr(scores, is_member, 0.01):.3f}"
    assert table.loc["secmi", "TPR@0.1%FPR"] == "n/a (needs >= 1000 non-members)"
    ci = metrics["secmi"].auc_ci
    assert table.loc["secmi", "AUC 95% CI"] == f"[{ci.low:.3f}, {ci.high:.3f}]"
    assert table.loc["secmi", "members"] == 200 and table.loc["secmi", "non-members"] == 150
    assert table.loc["secmi", "UNet calls / image"] == 11
    assert table.loc["secmi", "seconds"] == pytest.approx(1.5)
    assert math.isnan(table.loc["pia", "seconds"])  # no result given for pia


# --------------------------------------------------------------------------- histogram


def test_score_histogram_shared_density_bins_strip_ids_and_threshold():
    scores, is_member, ids = _split()
    thr = M.threshold_at_fpr(scores, is_member, 0.05)
    fig = F.score_histogram(scores, is_member, threshold=thr, ids=ids, highlight_id="img-0007", log_score=False)
    bars = [t for t in fig.data if (t.meta or {}).get("role") == "histogram"]
    assert {b.meta["group"] for b in bars} == {"member", "non-member"}
    np.testing.assert_allclose(bars[0].x, bars[1].x)  # shared bins
    for bar in bars:
        assert bar.type == "bar" and bar.opacity == pytest.approx(0.6)
        assert float(np.sum(np.asarray(bar.y) * bar.width)) == pytest.approx(1.0)  # density
    colors = {b.meta["group"]: b.marker.color for b in bars}
    assert colors == {"member": MEMBER_COLOR, "non-member": NONMEMBER_COLOR}

    strips = {t.meta["group"]: t for t in fig.data if (t.meta or {}).get("role") == "strip"}
    ids_arr = np.asarray(ids)
    assert list(strips["member"].customdata) == list(ids_arr[is_member])
    assert list(strips["non-member"].customdata) == list(ids_arr[~is_member])
    np.testing.assert_allclose(strips["member"].x, scores[is_member])

    highlight = [t for t in fig.data if (t.meta or {}).get("role") == "highlight"]
    assert len(highlight) == 1 and list(highlight[0].customdata) == ["img-0007"]

    tpr = float(np.mean(scores[is_member] >= thr))
    fpr = float(np.mean(scores[~is_member] >= thr))
    assert any(f"at this threshold: TPR {tpr:.3f}, FPR {fpr:.3f}" in a.text for a in fig.layout.annotations)
    assert any(s.type == "line" and s.x0 == pytest.approx(thr) for s in fig.layout.shapes)


def test_one_log_scale_rule_for_scores():
    # automatic: every score < 0 and max(-s) / min(-s) > 100 (negated distances over decades)
    assert F.display_scores(-np.array([1.0, 100.0]))[1] is False  # ratio 100: linear
    values, logged = F.display_scores(-np.array([1.0, 101.0, 10.0]))
    assert logged and np.allclose(values, -np.log10([1.0, 101.0, 10.0]))
    assert F.display_scores(np.array([-1.0, 0.0, -1000.0]))[1] is False  # a zero score: linear
    assert F.display_scores(np.array([-1.0, -2.0]), True)[1] is True  # forced
    with pytest.raises(ValueError, match="every score < 0"):
        F.display_scores(np.array([1.0, -2.0]), True)
    from mia_core.views import presenter

    assert not hasattr(presenter, "_log_magnitude")  # the presenter uses this rule too


def test_score_histogram_log_score_axis_keeps_order_and_raw_threshold():
    rng = np.random.default_rng(5)
    is_member = np.r_[np.ones(100, bool), np.zeros(100, bool)]
    distance = 10 ** rng.uniform(-3, 2, size=200) / np.where(is_member, 10, 1)
    scores = -distance  # negated distances over 5 decades
    values, transformed = F.display_scores(scores)
    assert transformed
    assert np.array_equal(np.argsort(values), np.argsort(scores))  # order kept
    thr = M.threshold_at_fpr(scores, is_member, 0.1)
    fig = F.score_histogram(scores, is_member, threshold=thr)
    assert fig.layout.meta["log_score"] is True
    line = [s for s in fig.layout.shapes if s.type == "line"][0]
    assert line.x0 == pytest.approx(-math.log10(-thr))
    tpr, fpr = F.operating_point(scores, is_member, thr)
    assert any(f"TPR {tpr:.3f}, FPR {fpr:.3f}" in a.text for a in fig.layout.annotations)
    assert F.display_scores(np.array([1.0, -2.0]))[1] is False  # mixed signs: never transformed


# --------------------------------------------------------------------------- per timestep


def test_timestep_metric_figure_matches_metrics_per_column():
    rng = np.random.default_rng(2)
    is_member = np.r_[np.ones(120, bool), np.zeros(130, bool)]
    ids = [str(i) for i in range(250)]
    trace = rng.gamma(2.0, size=(250, 4)) * np.where(is_member[:, None], [0.5, 0.8, 1.0, 1.2], 1.0)
    res = {
        "pia": _result("pia", -trace[:, 1], trace, [0, 50, 100, 150], ids, {"timestep": 50}),
        "sima": _result("sima", -trace[:, 0], trace[:, :2], [0, 100], ids, {"timestep": 100}),
        "none": _result("none", -trace[:, 0], np.zeros((250, 0)), [], ids),
    }
    fig = F.timestep_metric_figure(res, is_member, budget=0.01)
    lines = {
        (t.meta["attack"], t.meta["metric"]): t for t in fig.data if (t.meta or {}).get("metric") in ("auc", "tpr")
    }
    assert {a for a, _ in lines} == {"pia", "sima"}  # an attack without a trace is skipped
    for k in range(4):
        assert lines[("pia", "auc")].y[k] == pytest.approx(M.auc(-trace[:, k], is_member))
        assert lines[("pia", "tpr")].y[k] == pytest.approx(M.tpr_at_fpr(-trace[:, k], is_member, 0.01))
    assert list(lines[("sima", "auc")].x) == [0, 100]
    marker = [t for t in fig.data if (t.meta or {}).get("metric") == "score timestep" and t.meta["attack"] == "pia"]
    assert list(marker[0].x) == [50]
    frame = F.timestep_metrics(res["pia"], is_member)
    assert list(frame["timestep"]) == [0, 50, 100, 150]
    diverged = trace.copy()
    diverged[3, 2] = np.inf  # one non-finite value at t = 100: no number there, the others unchanged
    frame = F.timestep_metrics(_result("pia", -diverged[:, 1], diverged, [0, 50, 100, 150], ids), is_member)
    assert math.isnan(frame["auc"][2]) and math.isnan(frame["tpr"][2])
    assert frame["auc"][1] == pytest.approx(M.auc(-trace[:, 1], is_member))


# --------------------------------------------------------------------------- error curves


def test_error_bands_hand_made():
    trace = np.array(
        [
            [1.0, 10.0],
            [2.0, 20.0],
            [3.0, 30.0],
            [4.0, 40.0],
            [5.0, 50.0],  # members
            [10.0, 1.0],
            [30.0, 3.0],
            [20.0, 2.0],  # non-members
        ]
    )
    is_member = np.array([1, 1, 1, 1, 1, 0, 0, 0], bool)
    bands = F.error_bands(trace, is_member)
    np.testing.assert_allclose(bands["member_median"], [3.0, 30.0])
    np.testing.assert_allclose(bands["member_q25"], [2.0, 20.0])
    np.testing.assert_allclose(bands["member_q75"], [4.0, 40.0])
    np.testing.assert_allclose(bands["nonmember_median"], [20.0, 2.0])
    np.testing.assert_allclose(bands["nonmember_q25"], [15.0, 1.5])
    np.testing.assert_allclose(bands["nonmember_q75"], [25.0, 2.5])


def test_error_curve_figure_bands_sample_and_score_line():
    rng = np.random.default_rng(4)
    is_member = np.r_[np.ones(50, bool), np.zeros(60, bool)]
    ids = [f"s{i}" for i in range(110)]
    trace = rng.uniform(0.1, 1.0, size=(110, 10))
    res = _result("secmi", -trace[:, -1], trace, list(range(0, 100, 10)), ids, {"t_sec": 100, "k": 10})
    fig = F.attack_error_curve(res, is_member, sample_index=7)
    assert fig.layout.yaxis.type == "log"
    bands = F.error_bands(trace, is_member)
    by_role = {}
    for t in fig.data:
        by_role.setdefault((t.meta["role"], t.meta.get("group"), t.meta.get("edge")), t)
    np.testing.assert_allclose(by_role[("median", "member", None)].y, bands["member_median"])
    np.testing.assert_allclose(by_role[("band", "non-member", "q75")].y, bands["nonmember_q75"])
    lower = by_role[("band", "member", "q25")]
    assert lower.fill == "tonexty"
    np.testing.assert_allclose(lower.y, bands["member_q25"])
    sample = by_role[("sample", None, None)]
    np.testing.assert_allclose(sample.y, trace[7])
    assert sample.meta["id"] == "s7"
    score_lines = [s for s in fig.layout.shapes if s.name == "t line"]
    assert [s.x0 for s in score_lines] == [90]  # SecMI reads its score at t_sec - k
    assert F.score_timesteps(_result("loss", [0], [[0]], [0], ["a"], {"timesteps": [100, 200]})) == [100, 200]
    assert F.score_timesteps(_result("pia", [0], [[0]], [0], ["a"], {"timestep": 200})) == [200]


def test_error_curve_figure_lines_without_a_trace_and_linear_when_negative():
    ts = np.array([10, 20, 30])
    fig = F.error_curve_figure(
        ts,
        lines=[
            F.CurveLine("member a", [0.1, 0.2, 0.4], MEMBER_COLOR, "a"),
            F.CurveLine("non-member b", [0.3, 0.5, 0.9], NONMEMBER_COLOR, "b"),
        ],
        t_lines=[(20, "t = 20")],
        ylabel="x0 error",
    )
    assert [t.meta["id"] for t in fig.data] == ["a", "b"]
    assert [t.line.color for t in fig.data] == [MEMBER_COLOR, NONMEMBER_COLOR]
    assert fig.layout.yaxis.type == "log" and fig.layout.yaxis.title.text == "x0 error"
    assert [s.x0 for s in fig.layout.shapes] == [20]
    neg = F.error_curve_figure(ts, np.array([[-1.0, 2, 3], [1, 2, 3]]), np.array([True, False]))
    assert neg.layout.yaxis.type == "linear"
    with pytest.raises(ValueError, match="2 values for 3 timesteps"):
        F.error_curve_figure(ts, lines=[F.CurveLine("x", [1, 2])])
    empty = F.attack_error_curve(_result("sima", [0.0, 1.0], np.zeros((2, 0)), [], ["a", "b"]), [True, False])
    assert "no per-timestep trace" in empty.layout.annotations[0].text


# --------------------------------------------------------------------------- per-sample views


def test_sample_scatter_customdata_ids():
    scores, is_member, ids = _split()
    res = {
        "a": _result("a", scores, np.zeros((700, 0)), [], ids),
        "b": _result("b", -scores, np.zeros((700, 0)), [], ids),
    }
    fig = F.sample_scatter(res, is_member, ids, "a", "b", highlight_id="img-0003")
    groups = {t.meta["group"]: t for t in fig.data if (t.meta or {}).get("role") == "samples"}
    assert list(groups["member"].customdata) == [i for i, m in zip(ids, is_member) if m]
    np.testing.assert_allclose(groups["non-member"].y, -scores[~is_member])
    assert "Spearman rank correlation -1.00" in fig.layout.title.text


def test_vulnerable_samples_top_members_with_thumbnails():
    scores, is_member, ids = _split()
    images = np.random.default_rng(0).integers(0, 256, size=(700, 8, 8, 1), dtype=np.uint8)
    res = _result("sima", scores, np.zeros((700, 0)), [], ids)
    table = F.vulnerable_samples(res, is_member, images, k=5, budget=0.05, thumb_size=48)
    member_scores = np.sort(scores[is_member])[::-1][:5]
    np.testing.assert_allclose(table["score"], member_scores)
    assert all(is_member[ids.index(i)] for i in table["id"])
    first = ids.index(table["id"][0])
    assert table["non-members above"][0] == pytest.approx(np.mean(scores[~is_member] >= scores[first]))
    uri = table["thumbnail"][0]
    assert uri.startswith("data:image/png;base64,")
    png = np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))))
    assert png.shape == (48, 48)
    np.testing.assert_array_equal(png[::6, ::6], images[first, :, :, 0])  # nearest neighbour, no blur


def test_scores_frame_columns():
    scores, is_member, ids = _split()
    frame = F.scores_frame({"pia": _result("pia", scores, np.zeros((700, 0)), [], ids)}, ids, is_member)
    assert list(frame.columns) == ["id", "is_member", "pia"]
    assert frame["is_member"].sum() == 300


# --------------------------------------------------------------------------- images


def test_secmi_panels_draw_the_round_trip():
    x0 = np.zeros((1, 2, 2))
    x_tilde = np.array([[[0.0, 0.5], [-1.0, 1.0]]])
    x_recon = np.array([[[0.0, 0.25], [-1.0, 0.0]]])
    pics = F.secmi_panels({"x0": x0, "x_tilde": x_tilde, "x_recon": x_recon, "t_error": 1.0625, "t": 90})
    for key in ("x0", "x_tilde", "x_recon", "diff"):
        assert pics[key].shape == (2, 2, 1) and pics[key].dtype == np.uint8
    assert pics["diff_max"] == 1.0 and pics["t"] == 90 and pics["t_error"] == 1.0625
    assert pics["diff"][:, :, 0].tolist() == [[0, 64], [0, 255]]  # |x~ - x''| / max, brightest = white
    assert np.array_equal(pics["x_tilde"], F.to_uint8(x_tilde))
    same = F.secmi_panels({"x0": x0, "x_tilde": x0, "x_recon": x0, "t_error": 0.0, "t": 1})
    assert same["diff_max"] == 0.0 and (same["diff"] == 0).all()


def test_metric_table_puts_transferred_beside_oracle():
    from mia_core.calibration import calibration_partition, transferred_tpr_at_fpr

    rng = np.random.default_rng(0)
    labels = np.repeat([True, False], 300)
    scores = rng.normal(size=600) + labels
    part = calibration_partition(labels, seed=0)
    rate = transferred_tpr_at_fpr(scores, labels, part, 0.01, n_bootstrap=50)
    table = F.metric_table({"loss": M.evaluate(scores, labels, n_bootstrap=20)}, transferred={"loss": rate})
    cols = list(table.columns)
    i = cols.index("TPR@1%FPR 95% CI")
    assert cols[i + 1 : i + 5] == [
        "transferred TPR@1%FPR",
        "transferred TPR@1%FPR 95% CI",
        "achieved FPR (budget 1%)",
        "achieved FPR (budget 1%) 95% CI",
    ]
    assert table.loc["loss", "transferred TPR@1%FPR"] == f"{rate.tpr:.3f}"
    assert table.loc["loss", "achieved FPR (budget 1%)"] == f"{rate.fpr:.3f}"
    assert "transferred TPR@1%FPR" not in F.metric_table({"loss": M.evaluate(scores, labels, n_bootstrap=0)}).columns


def test_roc_figure_draws_a_reference_curve():
    labels = np.repeat([True, False], 50)
    scores = np.linspace(0, 1, 100)
    fig = F.roc_figure({"loss": (scores, labels)}, log=False, reference=("blind baseline", scores[::-1], labels))
    ref = [t for t in fig.data if (t.meta or {}).get("role") == "reference"]
    assert len(ref) == 1 and ref[0].name == "blind baseline — AUC 1.000"
    assert ref[0].line.dash == "dashdot"
