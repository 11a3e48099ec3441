"""Shared fixtures: tiny random diffusers UNets wrapped as targets, and the ../shared folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from mia_core.lab.train import TrainConfig, build_unet
from mia_core.schedule import NoiseSchedule
from mia_core.target import Target

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = REPO_ROOT.parent / "shared"
OFFICIAL_DIR = SHARED_DIR / "fixtures" / "official"

TINY_CONFIG = TrainConfig(block_out_channels=(16, 32), layers_per_block=1, norm_num_groups=8)


def make_tiny_unet(resolution: int = 8, channels: int = 1, seed: int = 0):
    """A randomly initialised tiny UNet2DModel (two levels, 16/32 channels), fixed by ``seed``."""
    torch.manual_seed(seed)
    return build_unet(resolution, channels, TINY_CONFIG)


def make_tiny_target(resolution: int = 8, channels: int = 1, seed: int = 0) -> Target:
    return Target(make_tiny_unet(resolution, channels, seed), NoiseSchedule.linear(), device=torch.device("cpu"))


@pytest.fixture(scope="session")
def tiny_unet_factory():
    """``make_tiny_unet(resolution=8, channels=1, seed=0)``: a fresh tiny random UNet2DModel per call.

    A fixture rather than an import: ``from conftest import ...`` breaks when another conftest.py
    (tests/e2e/) is imported first under the same module name.
    """
    return make_tiny_unet


@pytest.fixture(scope="session")
def tiny_target() -> Target:
    """8x8 grayscale tiny random UNet on the CPU with the linear schedule (read-only: do not modify)."""
    return make_tiny_target(8, 1)


@pytest.fixture(scope="session")
def tiny_rgb_target() -> Target:
    """32x32 RGB tiny random UNet on the CPU with the linear schedule (read-only: do not modify)."""
    return make_tiny_target(32, 3)


@pytest.fixture(scope="module")
def single_thread():
    """Run torch on one CPU thread for a module, then restore the previous count.

    With two OpenMP threads on a 2-core machine that is busy with anything else, the threads'
    barriers collapse (a 60-step tiny training went from ~5 s to ~180 s); these models are too
    small to gain much from a second thread when the machine is idle. Modules opt in with an
    autouse module fixture that requests this one.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED_DIR.is_dir():
        pytest.skip("../shared not found: the shared data and fixtures are not available here")
    return SHARED_DIR


@pytest.fixture(scope="session")
def official_dir() -> Path:
    if not OFFICIAL_DIR.is_dir():
        pytest.skip("../shared/fixtures/official not found: the papers' reference scores are not available here")
    return OFFICIAL_DIR


APP = Path(__file__).resolve().parents[1] / "app.py"


@pytest.fixture()
def open_page(monkeypatch, tmp_path):
    """Open one page of the app in AppTest with a fresh result store ($MIA_STORE) for this test.

    ``open_page("pages/data.py", id="digits-0001")`` sets query parameters first; ``run=False``
    switches to the page without running it yet.
    """
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("MIA_STORE", str(tmp_path / "store"))
    # The app reads only inside MIA_ALLOWED_ROOTS: the project and this test's own folder.
    monkeypatch.setenv("MIA_ALLOWED_ROOTS", os.pathsep.join([str(REPO_ROOT), str(tmp_path)]))

    def _open(page: str, *, run: bool = True, **query: str) -> AppTest:
        at = AppTest.from_file(str(APP), default_timeout=60)
        for key, value in query.items():
            at.query_params[key] = value
        at.run()
        at.switch_page(page)
        if run:
            at.run()
            assert not at.exception, at.exception
        return at

    return _open
