"""Where the lab's shipped files and its working folders are: the one place that knows.

Shipped with the package (found through it with :mod:`importlib.resources`, so a plain
``pip install .`` works as well as an editable one or a source checkout):

    ASSETS_DIR          the embedded default target, its split, the demo result store and the
                        shipped studies: the top-level ``assets/`` folder of the source tree,
                        installed as ``mia_core/assets`` (``mia_core/assets`` in the source tree
                        is a link to it)
    DEFAULT_TARGET_DIR  the embedded default target (a diffusers folder)
    DEFAULT_SPLIT_PATH  its member / non-member split manifest
    T2I_TARGET_DIR      the tiny text-to-image target (a StableDiffusionPipeline folder, MNIST digits
                        with captions) and T2I_SPLIT_PATH its split manifest
    LATENT_TARGET_DIR   the tiny unconditional latent-diffusion target (AutoencoderKL + UNet, the
                        same MNIST digits and split) and LATENT_SPLIT_PATH its split manifest
    DEMO_STORE_DIR      precomputed results of the default run (read-only)
    STUDIES_DIR         the shipped factor studies
    APP_DIR             the Streamlit app: ``app.py`` and ``pages/`` (installed as ``mia_core/app``;
                        in a source checkout the repository root, where they live)

Written by the lab (never inside the installed package):

    REPO_DIR            the source checkout's root when the package runs from one, else None
    runs_dir()          the working folder for results, trained targets and studies: ``$MIA_RUNS``,
                        else ``runs/`` in the source checkout, else ``runs/`` in the current folder
"""

from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path

_PACKAGE_DIR = Path(str(files("mia_core")))


def _source_checkout() -> Path | None:
    """The repository root when ``mia_core`` is imported from a source checkout (``pyproject.toml``
    and ``app.py`` beside the package), None for an installed copy."""
    root = _PACKAGE_DIR.parent
    return root if (root / "pyproject.toml").is_file() and (root / "app.py").is_file() else None


REPO_DIR: Path | None = _source_checkout()
ASSETS_DIR: Path = _PACKAGE_DIR / "assets"
DEFAULT_TARGET_DIR: Path = ASSETS_DIR / "default_target"
DEFAULT_SPLIT_PATH: Path = DEFAULT_TARGET_DIR / "split.json"
T2I_TARGET_DIR: Path = ASSETS_DIR / "t2i_target"
T2I_SPLIT_PATH: Path = T2I_TARGET_DIR / "split.json"
LATENT_TARGET_DIR: Path = ASSETS_DIR / "latent_target"
LATENT_SPLIT_PATH: Path = LATENT_TARGET_DIR / "split.json"
DEMO_STORE_DIR: Path = ASSETS_DIR / "demo_store"
STUDIES_DIR: Path = ASSETS_DIR / "studies"
APP_DIR: Path = REPO_DIR if REPO_DIR is not None else _PACKAGE_DIR / "app"


def runs_dir() -> Path:
    """The lab's working folder (results store, trained targets, studies): ``$MIA_RUNS`` if set,
    else ``runs/`` in the source checkout, else ``runs/`` in the current folder (never inside
    site-packages)."""
    if os.environ.get("MIA_RUNS"):
        return Path(os.environ["MIA_RUNS"])
    return (REPO_DIR if REPO_DIR is not None else Path.cwd()) / "runs"
