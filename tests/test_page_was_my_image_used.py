"""AppTest of "Was my image used?": uploads, corrupt files, examples from the split, limits, calibration."""

from __future__ import annotations

import io
import json
import time

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from mia_core.attacks import DEFAULT_ATTACKS, REGISTRY
from mia_core.data import DEFAULT_SPLIT_PATH, Split, load_digits

VERDICTS = ("flagged as member at 1 % FPR", "not flagged at 1 % FPR")


def _member_png() -> tuple[str, bytes]:
    digits, split = load_digits(), Split.load(DEFAULT_SPLIT_PATH)
    mid = split.member_ids[0]
    buf = io.BytesIO()
    Image.fromarray(digits.images[digits.index_of()[mid]][..., 0]).save(buf, format="PNG")
    return mid, buf.getvalue()


@pytest.fixture()
def at(open_page) -> AppTest:
    return open_page("pages/was_my_image_used.py")


def _verdict_lines(app: AppTest) -> list[str]:
    """The per-attack verdict lines of the cards ("- **<attack title>**: score ... · :<colour>-badge[<verdict>]")."""
    lines = [line for m in app.markdown for line in m.value.splitlines()]
    return [line for line in lines if line.startswith("- **") and "-badge[" in line]


def test_upload_member_png_gets_a_verdict_per_attack(at):
    assert any("Upload one or more images" in i.value for i in at.info)
    _, data = _member_png()
    at.file_uploader(key="miu.files").set_value(("my-digit.png", data, "image/png"))
    at.run()
    assert not at.exception
    lines = _verdict_lines(at)
    # every default attack has precomputed results on the default split: one verdict line each
    for name in DEFAULT_ATTACKS:
        title = REGISTRY[name].title
        line = next(line for line in lines if line.startswith(f"- **{title}**"))
        assert any(v in line for v in VERDICTS), line
    assert any("no conversion needed" in i.value for i in at.info)
    summary = next(m.value for m in at.markdown if m.value.startswith("**my-digit.png**"))
    assert f"of {len(DEFAULT_ATTACKS)} attacks at 1 % FPR" in summary
    assert any("evidence, not proof" in c.value and "TPR at this FPR" in c.value for c in at.caption)
    # one placement figure per attack: member / non-member histograms, threshold, the image's marker
    charts = at.get("plotly_chart")
    assert len(charts) == len(DEFAULT_ATTACKS)
    spec = json.loads(charts[0].proto.spec)
    names = [t.get("name", "") for t in spec["data"]]
    assert "your image(s)" in names and any(n.startswith("threshold at 1 % FPR") for n in names)
    mark = next(t for t in spec["data"] if t.get("name") == "your image(s)")
    assert mark["text"] == ["my-digit.png"]
    _assert_calibrated_thresholds(at, charts)
    # the budget changes the verdict text without rescoring errors
    at.selectbox(key="miu.fpr").set_value(0.1)
    at.run()
    assert not at.exception and at.session_state["cfg.fpr"] == 0.1
    assert all("at 10 % FPR" in line for line in _verdict_lines(at))
    # 0.1 % FPR needs >= 1000 non-members; the split has 899: every verdict is n/a, said so, no number
    at.selectbox(key="miu.fpr").set_value(0.001)
    at.run()
    assert not at.exception
    lines = _verdict_lines(at)
    assert lines and all("n/a: needs >= 1000 calibration non-members" in line for line in lines)
    assert any("No verdict" in c.value and "only 450 calibration non-members" in c.value for c in at.caption)


def _assert_calibrated_thresholds(at, charts) -> None:
    """The thresholds are the transferred ones (calibration half -> test half, Compare's cut), not the oracle
    threshold of every known non-member; the caveat line names the part, its sizes and the achieved FPR."""
    from mia_core.calibration import calibration_partition, transferred_tpr_at_fpr
    from mia_core.metrics import verdict_at_fpr
    from mia_core.views.attack_info import short_name
    from tests.test_page_compare import _stored_scores

    exp, stored = _stored_scores()
    part = calibration_partition(exp.is_member)
    sizes = part.sizes()
    line = next(c.value for c in at.caption if "calibrated, not oracle" in c.value)
    assert f"{sizes['calibration_members']} members and {sizes['calibration_nonmembers']} non-members" in line
    assert f"test part ({sizes['test_members']} members, {sizes['test_nonmembers']} non-members)" in line
    specs = [json.loads(c.proto.spec) for c in charts]
    differs = 0
    for name in DEFAULT_ATTACKS:
        rate = transferred_tpr_at_fpr(stored[name].scores, exp.is_member, part, 0.01, n_bootstrap=0)
        flagged = round(rate.fpr * sizes["test_nonmembers"])
        assert f"{short_name(name)} {rate.fpr * 100:.1f} % ({flagged} of {sizes['test_nonmembers']})" in line
        spec = next(x for x in specs if x["layout"]["title"]["text"].startswith(f"{REGISTRY[name].title}: "))
        thr = next(t for t in spec["data"] if t.get("name", "").startswith("threshold at"))["x"][0]
        assert thr == pytest.approx(rate.threshold)
        oracle = verdict_at_fpr(stored[name].scores[~exp.is_member], 0.0, 0.01)[1]
        differs += thr != pytest.approx(oracle)
    assert differs


def test_corrupt_file_is_reported_and_good_file_scored(at):
    _, data = _member_png()
    at.file_uploader(key="miu.files").set_value(
        [("broken.png", b"\x89PNG\r\n\x1a\n this is not an image", "image/png"), ("good.png", data, "image/png")]
    )
    at.run()
    assert not at.exception
    assert any("broken.png" in e.value for e in at.error)
    assert not any("good.png" in e.value for e in at.error)
    assert any(m.value.startswith("**good.png**") for m in at.markdown)
    assert not any(m.value.startswith("**broken.png**") for m in at.markdown)
    assert len(_verdict_lines(at)) == len(DEFAULT_ATTACKS)


def test_examples_from_the_split(at):
    at.button(key="miu.try_member").click()
    at.run()
    assert not at.exception
    summary = next(m.value for m in at.markdown if m.value.startswith("**digits-"))
    image_id = summary[2:].split("**")[0]
    split = Split.load(DEFAULT_SPLIT_PATH)
    assert image_id.removesuffix(".png") in split.member_ids
    assert any("known member of the split" in c.value for c in at.caption)
    from mia_core.calibration import calibration_partition
    from tests.test_page_compare import _stored_scores

    exp, _ = _stored_scores()
    in_cal = calibration_partition(exp.is_member).calibration[exp.ids.index(image_id.removesuffix(".png"))]
    expected = "calibration part, so its own score helped" if in_cal else "test part: no threshold saw its score"
    assert any(expected in c.value for c in at.caption)
    at.button(key="miu.try_nonmember").click()
    at.run()
    summary = next(m.value for m in at.markdown if m.value.startswith("**digits-"))
    assert summary[2:].split("**")[0].removesuffix(".png") in split.nonmember_ids
    at.button(key="miu.clear_example").click()
    at.run()
    assert not _verdict_lines(at)


def test_too_many_files_refused(at):
    _, data = _member_png()
    at.file_uploader(key="miu.files").set_value([(f"f{k}.png", data, "image/png") for k in range(65)])
    at.run()
    assert not at.exception
    assert any("at most 64" in e.value for e in at.error)
    assert not _verdict_lines(at)


def test_more_than_32_images_scored_on_the_worker(at):
    at.session_state["cfg.attacks"] = ["sima"]
    _, data = _member_png()
    at.file_uploader(key="miu.files").set_value([(f"f{k}.png", data, "image/png") for k in range(33)])
    at.run()
    assert not at.exception
    for _ in range(60):  # the worker thread finishes in about a second; AppTest does not tick fragments
        if _verdict_lines(at):
            break
        time.sleep(0.5)
        at.run()
    assert not at.exception
    assert len(at.pagination) == 1  # 33 cards, 8 per page
    assert len(_verdict_lines(at)) == 8


def test_no_stored_results_points_to_the_attack_lab(at):
    at.session_state["cfg.attacks"] = ["pia"]
    at.session_state["cfg.params"] = {"pia": {"timestep": 123}}  # nothing stored for these params
    at.run()
    assert not at.exception
    assert any("No stored attack results" in w.value for w in at.warning)
    assert at.page_link[0].proto.page.endswith("attack_lab")
    assert not at.get("plotly_chart")


def test_collection_section_demo_sets_get_a_p_value(at):
    """Set-level test on demo sets drawn from the split: members are 'used', non-members get a large p."""
    import numpy as np

    from mia_core.lab import set_inference as SI

    assert any(e.label.startswith("📚 Was my collection used?") for e in at.expander)
    # Defaults: a member suspect set of 20 against 20 held-out non-members, every session attack with results.
    metrics = {m.label: m.value for m in at.metric}
    assert float(metrics["p-value"]) < 0.05 and metrics["verdict at α"] == "used"
    assert metrics["images in the test"] == "10 + 10"  # five attacks: CDI fits its combiner on the other half
    assert any("Likely used for training" in x.value for x in at.success)

    at.radio(key="miu.set.kind").set_value("nonmembers").run()
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["verdict at α"] == "no evidence"
    assert any("No evidence of training use" in x.value for x in at.info)

    # Same numbers as the engine on the same draw (seed 0, draw 0) with the stored scores.
    from tests.test_page_compare import _stored_scores

    exp, stored = _stored_scores()
    names = [n for n in stored]
    scores = SI.score_matrix(stored, exp.ids, names)
    s_rows, h_rows = SI.draw_demo_sets(exp.is_member, 20, 20, suspect="nonmembers", rng=np.random.default_rng([0, 0]))
    expected = SI.set_test(scores[s_rows], scores[h_rows], features=tuple(names), seed=0)
    assert float(metrics["p-value"]) == pytest.approx(expected.p_value, rel=1e-2)


def _photo_png(seed: int = 0) -> bytes:
    """A random colour "photo" (64x48 RGB noise): nothing like an 8x8 digit."""
    import numpy as np

    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, size=(48, 64, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def test_batch_headline_badges_one_caveat_ood_warning_and_what_if(at):
    """Issue 19: a headline for the batch, verdicts as coloured badges, the caveat once per page (not per card),
    an out-of-distribution warning on the photo's card only, and the what-if perturbations of one image."""
    at.session_state["cfg.attacks"] = ["loss"]  # one cheap attack keeps this test fast
    _, data = _member_png()
    at.file_uploader(key="miu.files").set_value(
        [("my-digit.png", data, "image/png"), ("photo.png", _photo_png(), "image/png")]
    )
    at.run()
    assert not at.exception
    headline = next(m.value for m in at.markdown if m.value.startswith("#### "))
    assert " of 2 images look like members at the calibrated 1 % FPR threshold" in headline, headline
    assert "1 of them is unlike the split's images" in headline
    lines = _verdict_lines(at)
    assert len(lines) == 2 and all(":orange-badge[flagged" in x or ":blue-badge[not flagged" in x for x in lines)
    cards = [m.value for m in at.markdown if m.value.startswith(("**my-digit.png**", "**photo.png**"))]
    assert len(cards) == 2 and all("-badge[" in c for c in cards)
    caveats = [c.value for c in at.caption if "evidence, not proof" in c.value]
    assert len(caveats) == 1, caveats
    warnings = [w.value for w in at.warning if "unlike the split's images" in w.value]
    assert len(warnings) == 1 and "nearest split image is" in warnings[0]
    # the warning sits on the photo's card: the same column block as its verdict line, not the digit's
    ids_near = [m.value.split("**")[1] for m in at.markdown if m.value.startswith("**") and "-badge[" in m.value]
    assert ids_near == ["my-digit.png", "photo.png"]
    assert float(warnings[0].split("nearest split image is ")[1].split(" away")[0]) > 0.3

    # what if: blur, JPEG, crop, flip of the digit, scored against the same threshold
    at.selectbox(key="miu.whatif.image").set_value("my-digit.png")
    at.button(key="miu.whatif.run").click()
    at.run()
    assert not at.exception
    fig = json.loads(at.get("plotly_chart")[-1].proto.spec)
    rows = fig["data"][0]["y"]
    assert rows[0] == "original" and any(r.startswith("blur") for r in rows) and "flipped left-right" in rows
    assert any(r.startswith("JPEG") for r in rows) and any(r.startswith("crop") for r in rows)
    assert fig["layout"]["shapes"], "the threshold line is missing"
    assert any("variants get the same verdict as the original" in c.value for c in at.caption)
