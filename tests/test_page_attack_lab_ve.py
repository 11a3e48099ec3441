"""AppTest: the Attack lab on a score-based (VE-SDE) target lists the DDPM-only attacks as not applicable."""

from __future__ import annotations

import torch


def test_ve_target_lists_what_does_not_apply_and_refuses_it(open_page, tmp_path):
    from diffusers import ScoreSdeVeScheduler

    from mia_core.lab.train_ve import VETrainConfig, build_score_unet

    torch.manual_seed(0)
    cfg = VETrainConfig(block_out_channels=(16, 32), layers_per_block=1, attention=False, sigma_max=8.0)
    build_score_unet(8, 1, cfg).save_pretrained(tmp_path / "ve" / "unet", safe_serialization=True)
    ScoreSdeVeScheduler(num_train_timesteps=1000, sigma_min=0.01, sigma_max=8.0).save_pretrained(
        tmp_path / "ve" / "scheduler"
    )
    # session state, not $MIA_TARGET: pages/_common reads the environment once per process
    at = open_page("pages/attack_lab.py", run=False)
    at.session_state["cfg.target"] = str(tmp_path / "ve")
    at.session_state["cfg.limit"] = 4
    at.run()
    assert not at.exception, at.exception
    infos = "\n".join(i.value for i in at.info)
    assert "Not applicable to this target" in infos
    for title in ("SecMI-stat", "PIA", "SimA"):
        assert title in infos
    assert "VE-SDE" in infos
    attacks = at.multiselect(key="attack_lab.attacks")
    assert attacks.value == ["loss"]  # the default selection minus what does not apply
    attacks.set_value(["loss", "secmi"])
    at.button(key="attack_lab.run").click().run()
    assert not at.exception, at.exception
    errors = "\n".join(e.value for e in at.error)
    assert "Nothing was started" in errors and "does not apply to this target" in errors
