"""The one Streamlit internal the app relies on (pages/_common._leave_legacy_pages_mode).

These fail the day Streamlit renames ``PagesManager.uses_pages_directory``, stops detecting a
``pages/`` folder through it, or stops consulting it to pick the legacy multipage mode: then the
workaround must be revisited (ideally replaced by a public switch, if Streamlit offers one).
"""

from __future__ import annotations

import inspect

from streamlit.runtime.pages_manager import PagesManager
from streamlit.runtime.scriptrunner import script_runner


def test_streamlit_still_detects_a_pages_folder_through_the_flag(tmp_path, monkeypatch):
    assert hasattr(PagesManager, "uses_pages_directory")
    (tmp_path / "pages").mkdir()
    (tmp_path / "app.py").write_text("")
    monkeypatch.setattr(PagesManager, "uses_pages_directory", None)
    PagesManager(str(tmp_path / "app.py"))
    assert PagesManager.uses_pages_directory is True  # the legacy mode the app has to leave


def test_streamlit_still_picks_the_legacy_runner_from_the_flag():
    source = inspect.getsource(script_runner.ScriptRunner)
    assert "if PagesManager.uses_pages_directory:" in source and "_mpa_v1(" in source


def test_the_workaround_clears_the_flag_and_reruns_once(monkeypatch):
    import streamlit as st

    from pages import _common

    reruns = []
    monkeypatch.setattr(st, "rerun", lambda: reruns.append(1))
    monkeypatch.setattr(PagesManager, "uses_pages_directory", True)
    _common._leave_legacy_pages_mode()
    assert PagesManager.uses_pages_directory is False and reruns == [1]
    _common._leave_legacy_pages_mode()  # out of the legacy mode: nothing to do
    assert reruns == [1]


def test_no_other_file_touches_streamlit_internals():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    files = {p.resolve() for folder in ("pages", "mia_core") for p in (root / folder).rglob("*.py")}
    hits = sorted(str(p.relative_to(root)) for p in files | {root / "app.py"} if "streamlit.runtime" in p.read_text())
    assert hits == ["pages/_common.py"]
