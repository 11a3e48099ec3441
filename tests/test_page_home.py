"""AppTest: the Start page draws at once, loads the model in the background and says when it is ready."""

from __future__ import annotations

import time
from pathlib import Path

from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def test_start_page_links_every_page_and_reports_the_model(monkeypatch, tmp_path):
    monkeypatch.setenv("MIA_STORE", str(tmp_path / "store"))
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert not at.exception
    assert at.title[0].value == "Diffusion MIA lab"  # the default page
    linked = {link.proto.page for link in at.get("page_link")}
    assert {"learn", "attack_lab", "compare", "sample", "was_my_image_used", "presenter", "target", "data"} <= linked
    deadline = time.time() + 60
    while time.time() < deadline and not any("Model ready" in s.value for s in at.success):
        time.sleep(0.2)
        at.run()
        assert not at.exception
    ready = [s.value for s in at.success if "Model ready" in s.value]
    assert ready and "1,112,801 parameters" in ready[0] and "898 members" in ready[0]


def test_session_defaults_list_the_registry():
    from mia_core.attacks import DEFAULT_ATTACKS
    from pages._common import DEFAULTS

    assert DEFAULTS["cfg.attacks"] == list(DEFAULT_ATTACKS)
