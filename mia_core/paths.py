"""Where the lab's shipped files and its working folders are: the one place that knows.

    ASSETS_DIR          the embedded default target, its split, the demo result store and the
                        shipped studies (package data, found through the package itself)
    DEFAULT_TARGET_DIR  the embedded default target (a diffusers folder)
    DEFAULT_SPLIT_PATH  its member / non-member split manifest
    DEMO_STORE_DIR      precomputed results of the default run (read-only)
    STUDIES_DIR         the shipped factor studies
    REPO_DIR            the folder above the package (a source checkout's root)
"""

from __future__ import annotations

from pathlib import Path

REPO_DIR: Path = Path(__file__).resolve().parent.parent
ASSETS_DIR: Path = REPO_DIR / "assets"
DEFAULT_TARGET_DIR: Path = ASSETS_DIR / "default_target"
DEFAULT_SPLIT_PATH: Path = DEFAULT_TARGET_DIR / "split.json"
DEMO_STORE_DIR: Path = ASSETS_DIR / "demo_store"
STUDIES_DIR: Path = ASSETS_DIR / "studies"
