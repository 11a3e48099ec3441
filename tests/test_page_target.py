"""AppTest: the Target page (model card, switching targets safely, the memorisation view)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[1] / "app.py")


@pytest.fixture()
def at(open_page, monkeypatch) -> AppTest:
    # A Hub id must fail fast here, never download. huggingface_hub reads the variable when it is first
    # imported (an earlier test may have imported it): its constant is set too.
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return open_page("pages/target.py")


def _metric(at: AppTest, label: str) -> str:
    values = [m.value for m in at.metric if m.label == label]
    assert values, f"no metric {label!r}: {[m.label for m in at.metric]}"
    return values[0]


def _try_folder(at: AppTest, folder: str) -> None:
    at.radio(key="target.source").set_value("Local diffusers folder").run()
    at.text_input(key="target.folder").input(folder).run()
    at.button(key="target.apply").click().run()
    assert not at.exception, at.exception


def test_card_and_training_log(at):
    assert at.title[0].value.startswith("Target")
    assert _metric(at, "Parameters") == "1,112,801"
    card = at.dataframe[0].value
    props = dict(zip(card["property"], card["value"]))
    assert props["parameters"] == "1,112,801"
    assert props["block_out_channels"] == "32, 64, 64"
    assert props["schedule"].startswith("linear betas")
    assert len(props["fingerprint"]) == 16
    assert _metric(at, "Training steps") == "12,000"
    assert _metric(at, "Members (training images)") == "898"
    assert any("mia train" in c.value for c in at.code)
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    assert any(s["layout"]["yaxis"].get("type") == "log" for s in specs)  # the loss curve


def test_missing_folder_keeps_target(at, tmp_path):
    _try_folder(at, str(tmp_path / "does-not-exist"))
    assert at.session_state["cfg.target"] == "default"
    errors = [e.value for e in at.error]
    assert errors and "does not exist" in errors[0] and "not changed" in errors[0]
    assert _metric(at, "Parameters") == "1,112,801"  # the card still shows the old target


def test_pickle_only_folder_is_refused(at, tmp_path):
    folder = tmp_path / "pickled"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"_class_name": "UNet2DModel", "sample_size": 8}))
    (folder / "diffusion_pytorch_model.bin").write_bytes(b"not a real pickle")
    at.session_state["sel.sample"] = "digits-0001"
    _try_folder(at, str(folder))
    errors = [e.value for e in at.error]
    assert errors and "pickle" in errors[0] and "refusing" in errors[0]
    assert at.session_state["cfg.target"] == "default"
    assert at.session_state["sel.sample"] == "digits-0001"  # nothing was switched or cleared


def test_switch_to_a_valid_folder_and_back(at):
    default_dir = str(Path(APP).parent / "assets" / "default_target")
    at.session_state["sel.sample"] = "digits-0001"
    _try_folder(at, default_dir)
    assert at.session_state["cfg.target"] == default_dir
    assert at.session_state["sel.sample"] is None
    assert any("Switched the target" in s.value for s in at.success)
    assert _metric(at, "Parameters") == "1,112,801"
    at.radio(key="target.source").set_value("Embedded default").run()
    at.button(key="target.apply").click().run()
    assert at.session_state["cfg.target"] == "default"


def test_offline_hub_id_is_refused(at):
    at.radio(key="target.source").set_value("Hugging Face Hub id").run()
    at.text_input(key="target.hub").input("nobody-here/no-such-model").run()
    at.button(key="target.apply").click().run()
    assert not at.exception
    errors = [e.value for e in at.error]
    assert errors and "Hub" in errors[0]
    assert at.session_state["cfg.target"] == "default"


def test_generate_samples_shows_neighbours(at):
    assert any("Generate samples" in i.value for i in at.info)
    at.number_input(key="target.n").set_value(2)
    at.number_input(key="target.steps").set_value(5)
    at.button[[b.label for b in at.button].index("Generate samples")].click().run()
    assert not at.exception, at.exception
    grids = [im for im in at.get("image") if len(im.proto.imgs) == 3]
    assert len(grids) == 2  # one (sample, nearest member, nearest non-member) triple per sample
    captions = [img.caption for img in grids[0].proto.imgs]
    assert captions == ["sample 0", "member", "non-member"]
    assert any("member `digits-" in m.value and "closer to a" in m.value for m in at.markdown)
    assert _metric(at, "Closer to a member than to any non-member").endswith("of 2")
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    assert any([d.get("name") for d in s["data"]] == ["nearest member", "nearest non-member"] for s in specs)


PAPERS_CKPT = (
    Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "papers_checkpoint" / "ckpt-step5000.pt"
)


def test_convert_a_papers_checkpoint_and_use_it(at, tmp_path):
    if not PAPERS_CKPT.is_file():
        pytest.skip("../shared/fixtures/papers_checkpoint/ckpt-step5000.pt not found")
    out = tmp_path / "papers_ddpm"
    at.text_input(key="target.ckpt").input(str(PAPERS_CKPT)).run()
    at.text_input(key="target.ckpt_out").input(str(out)).run()
    at.button(key="target.convert").click().run()
    assert not at.exception, at.exception
    assert at.session_state["cfg.target"] == str(out.resolve())
    assert (out / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    assert any("converted EMA weights of ckpt-step5000.pt" in s.value for s in at.success)
    assert _metric(at, "Parameters") == "2,277,763"


def test_convert_refuses_a_malicious_checkpoint(at, tmp_path):
    import os

    import torch

    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"ema_model": {}, "x": Exploit()}, tmp_path / "evil.pt")
    at.text_input(key="target.ckpt").input(str(tmp_path / "evil.pt")).run()
    at.button(key="target.convert").click().run()
    assert not at.exception, at.exception
    errors = [e.value for e in at.error]
    assert errors and "Not converted" in errors[0] and "refusing to load" in errors[0]
    assert at.session_state["cfg.target"] == "default" and not marker.exists()
