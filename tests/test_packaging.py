"""A plain (non-editable) install works: the wheel carries the assets and the app, and nothing is
written inside the installed package.

The wheel is built from this checkout without build isolation (setuptools from the test venv)
and unpacked into a folder (a pure-Python wheel unpacked is what pip installs, less the ``mia``
script). Commands then run from another folder with only that folder on PYTHONPATH before the
test venv's dependencies, so ``mia_core`` comes from the wheel, never from the checkout.
CONTRIBUTING.md describes the same check with a fresh venv and ``pip install .``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    wheels = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), str(ROOT)],
        check=True,
        timeout=300,
    )
    (wheel,) = wheels.glob("mia_lab-*.whl")
    site = tmp_path_factory.mktemp("site")
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(site)
    return site


def _env(site: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIA_")}
    env["PYTHONPATH"] = str(site)
    return env


def _python(site: Path, cwd: Path, code: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=_env(site), capture_output=True, text=True, timeout=timeout
    )


def test_the_wheel_carries_the_assets_and_the_app(installed):
    pkg = installed / "mia_core"
    for rel in (
        "assets/default_target/unet/diffusion_pytorch_model.safetensors",
        "assets/default_target/split.json",
        "assets/demo_store",
        "assets/studies",
        "app/app.py",
        "app/pages/_common.py",
        "app/pages/train.py",
        "app/.streamlit/config.toml",
        "lab/train/loop.py",
        "lab/jobs.py",
        "views/style.py",
        "data/splits.py",
    ):
        assert (pkg / rel).exists(), rel
    assert not any(p.is_symlink() for p in pkg.rglob("*"))


def test_cli_attack_runs_from_another_folder_and_writes_there(installed, tmp_path):
    out = _python(
        installed,
        tmp_path,
        (
            "import mia_core, mia_core.paths as p; print(mia_core.__file__); print(p.REPO_DIR, p.runs_dir());"
            "from mia_core.lab.runs import default_store_dir; print(default_store_dir());"
            "from mia_core.cli import main;"
            "raise SystemExit(main(['attack', '--target', 'default', '--data', 'default', '--attacks', 'loss',"
            " '--limit', '16', '--out', 'res']))"
        ),
    )
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    assert lines[0].startswith(str(installed / "mia_core"))
    assert lines[1] == f"None {tmp_path / 'runs'}"
    assert "loss" in out.stdout and "AUC" in out.stdout
    assert (tmp_path / "res").is_dir() and any((tmp_path / "res").iterdir())
    assert lines[2] == str(tmp_path / "runs" / "store")  # the default result store is in the current folder
    written = [
        p
        for p in installed.rglob("*")
        if p.name in ("runs", "res", "store") or (p.suffix in (".csv", ".npz") and "assets" not in p.parts)
    ]
    assert written == []  # nothing written inside the installed package


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_mia_app_starts_from_another_folder(installed, tmp_path):
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from mia_core.cli import main; raise SystemExit(main())",
            "app",
            f"--server.port={port}",
            "--server.address=127.0.0.1",
        ],
        cwd=tmp_path,
        env=_env(installed),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )  # its own process group: `mia app` and the streamlit server it starts
    try:
        deadline, health = time.monotonic() + 90, ""
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as resp:
                    health = resp.read().decode()
                break
            except OSError:
                time.sleep(0.5)
        assert health == "ok", proc.stdout.read() if proc.poll() is not None else "no answer"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as resp:
            assert resp.status == 200 and "<html" in resp.read().decode().lower()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
    assert str(installed / "mia_core" / "app" / "app.py") in out  # the installed app, not the checkout's


def test_the_installed_app_runs_its_first_page(installed, tmp_path):
    out = _python(
        installed,
        tmp_path,
        (
            "from streamlit.testing.v1 import AppTest; from mia_core.paths import APP_DIR; print(APP_DIR);"
            "at = AppTest.from_file(str(APP_DIR / 'app.py'), default_timeout=120).run();"
            "print('EXCEPTIONS', [e.message for e in at.exception]); print('TITLE', [t.value for t in at.title])"
        ),
    )
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    assert lines[0] == str(installed / "mia_core" / "app")
    assert "EXCEPTIONS []" in lines and any(line.startswith("TITLE ['") for line in lines)
