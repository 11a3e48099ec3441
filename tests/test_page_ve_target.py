"""AppTest: the Learn, Target and Presenter pages on a score-based (VE-SDE) target (a tiny random NCSN-style
UNet saved with a ScoreSdeVeScheduler config, as tests/test_page_attack_lab_ve.py builds it)."""

from __future__ import annotations

import json

import torch

SIGMA_MAX = 8.0


def _ve_folder(tmp_path):
    from diffusers import ScoreSdeVeScheduler

    from mia_core.lab.train_ve import VETrainConfig, build_score_unet
    from mia_core.lazy import MODEL_BUILD_LOCK

    cfg = VETrainConfig(block_out_channels=(16, 32), layers_per_block=1, attention=False, sigma_max=SIGMA_MAX)
    # under the lock: a model loading on the app's loader thread switches weight initialisation off meanwhile
    with MODEL_BUILD_LOCK:
        torch.manual_seed(0)
        unet = build_score_unet(8, 1, cfg)
    unet.save_pretrained(tmp_path / "ve" / "unet", safe_serialization=True)
    ScoreSdeVeScheduler(num_train_timesteps=1000, sigma_min=0.01, sigma_max=SIGMA_MAX).save_pretrained(
        tmp_path / "ve" / "scheduler"
    )
    return str(tmp_path / "ve")


def _open_on_ve(open_page, tmp_path, page):
    folder = _ve_folder(tmp_path)  # built before the app starts loading anything
    at = open_page(page, run=False)
    at.session_state["cfg.target"] = folder  # session state: pages/_common reads $MIA_TARGET once
    at.session_state["cfg.limit"] = 4
    at.run()
    assert not at.exception, at.exception
    return at


def _metric(at, startswith):
    values = [m.value for m in at.metric if m.label.startswith(startswith)]
    assert values, f"no metric labelled {startswith!r}: {[m.label for m in at.metric]}"
    return values[0]


def test_learn_page_noises_with_sigma_and_shows_the_dsm_error_curve(open_page, tmp_path):
    at = _open_on_ve(open_page, tmp_path, "pages/learn.py")
    assert not at.error, [e.value for e in at.error]
    sigma200 = 0.01 * (SIGMA_MAX / 0.01) ** (1e-5 + (1 - 1e-5) * 200 / 999)
    assert _metric(at, r"noise level $\sigma(t)$") == f"{sigma200:.4g}"
    assert any(r"\sigma(t)\,z" in m.value for m in at.get("latex"))  # x_t = x0 + sigma z
    dsm = float(_metric(at, "DSM error mean"))
    assert dsm > 0
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    curves = [s for s in specs if "DSM" in str(s["layout"].get("yaxis", {}).get("title", ""))]
    assert curves, "no DSM error curve over t"
    at.slider(key="learn.t").set_value(900).run()
    assert not at.exception and float(_metric(at, "DSM error mean")) != dsm


def test_target_page_card_and_predictor_corrector_samples(open_page, tmp_path):
    at = _open_on_ve(open_page, tmp_path, "pages/target.py")
    card = at.dataframe[0].value.set_index("property")["value"]
    assert card["parameterisation"].startswith("score") and "step 999: 8" in card["sigma at step"]
    assert "ScoreSdeVeScheduler" in card["scheduler config"] and "secmi" in card["not applicable"]
    at.number_input(key="target.steps").set_value(4)
    at.number_input(key="target.n").set_value(2)
    generate = [b for b in at.button if b.label == "Generate samples"][0]
    generate.click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]  # was "Sampling failed: NotADDPMError"
    captions = " ".join(c.value for c in at.caption)
    assert "predictor-corrector" in captions and "ScoreSdeVeScheduler" in captions
    assert _metric(at, "Closer to a member").endswith("of 2")


def test_presenter_says_in_one_line_which_slides_do_not_apply(open_page, tmp_path):
    at = _open_on_ve(open_page, tmp_path, "pages/presenter.py")
    infos = [i.value for i in at.info]
    assert len(infos) == 1, infos
    line = infos[0]
    assert "\n" not in line and "VE-SDE" in line and "only Loss applies" in line
    for title in ("SecMI", "PIA", "PIAN", "SimA"):
        assert title in line
    assert "needs a DDPM" in line
    frames = at.get("iframe")
    assert frames and frames[0].proto.srcdoc.count("<section class='slide'") == 9  # the default deck still runs


def test_no_presenter_line_for_a_ddpm_target(tmp_path):
    from mia_core.lab.presenter_data import not_applicable_on

    assert not_applicable_on("default") == {} and not_applicable_on(str(tmp_path / "missing")) == {}
    assert set(not_applicable_on(_ve_folder(tmp_path))) == {"secmi", "pia", "pian", "sima"}
