"""mia_core.paths (where shipped files and working folders are) and how `mia app` starts the app."""

from __future__ import annotations

from pathlib import Path

from mia_core import cli, paths

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_files_are_found_through_the_package():
    assert paths.ASSETS_DIR == Path(paths.__file__).parent / "assets"
    assert (paths.DEFAULT_TARGET_DIR / "unet" / "config.json").is_file() and paths.DEFAULT_SPLIT_PATH.is_file()
    assert paths.DEMO_STORE_DIR.is_dir() and paths.STUDIES_DIR.is_dir()
    # in a source checkout the package's assets are the top-level assets/ folder, and the app is the checkout's
    assert paths.ASSETS_DIR.resolve() == (ROOT / "assets").resolve()
    assert paths.REPO_DIR == ROOT and (paths.APP_DIR / "app.py").is_file()


def test_runs_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("MIA_RUNS", raising=False)
    assert paths.runs_dir() == ROOT / "runs"  # a source checkout keeps its runs/ folder
    monkeypatch.setenv("MIA_RUNS", str(tmp_path))
    assert paths.runs_dir() == tmp_path
    monkeypatch.delenv("MIA_RUNS")
    monkeypatch.setattr(paths, "REPO_DIR", None)  # an installed package: the current folder
    monkeypatch.chdir(tmp_path)
    assert paths.runs_dir() == tmp_path / "runs"


def test_app_config_flags(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text('[server]\nheadless = true\nmaxUploadSize = 20\n\n[theme]\nprimaryColor = "#D55E00"\n')
    assert cli.app_config_flags(config) == [
        "--server.headless=true",
        "--server.maxUploadSize=20",
        "--theme.primaryColor=#D55E00",
    ]
    assert cli.app_config_flags(tmp_path / "missing.toml") == []


def test_mia_app_runs_the_packaged_app_with_its_config_and_passes_options_on(monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(cli.subprocess, "call", lambda command: calls.append(command) or 0)
    assert cli.main(["app", "--server.port=8611"]) == 0
    (command,) = calls
    assert command[1:5] == ["-m", "streamlit", "run", str(paths.APP_DIR / "app.py")]
    assert "--server.headless=true" in command and command[-1] == "--server.port=8611"
    try:
        cli.main(["info", "--server.port=1"])  # other commands still refuse unknown options
    except SystemExit as exc:
        assert exc.code == 2
    else:
        raise AssertionError("mia info accepted an unknown option")
