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


# -- a tiny random Stable Diffusion pipeline (text-to-image target), built offline ---------------

#: the characters the tiny tokenizer knows (each a token, and each word-final "c</w>" a token).
T2I_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789 .,"


def save_tiny_t2i_pipeline(folder: Path, *, image_channels: int = 1, seed: int = 0, max_tokens: int = 16) -> Path:
    """Write a StableDiffusionPipeline folder with random weights and no download: ``model_index.json``,
    ``unet/`` (UNet2DConditionModel, 4x4 latents, cross_attention_dim 8), ``vae/`` (AutoencoderKL, 8x8
    images with ``image_channels``, 4 latent channels), ``text_encoder/`` (CLIPTextModel, width 8),
    ``tokenizer/`` (CLIPTokenizer from a character vocab.json and an empty merges.txt, ``max_tokens`` per
    prompt) and ``scheduler/`` (DDPMScheduler, SD's scaled_linear betas). Returns ``folder``."""
    import json

    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    folder = Path(folder)
    (folder / "tokenizer").mkdir(parents=True, exist_ok=True)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in T2I_CHARS:
        vocab.setdefault(c, len(vocab))
        vocab.setdefault(c + "</w>", len(vocab))
    (folder / "tokenizer" / "vocab.json").write_text(json.dumps(vocab))
    (folder / "tokenizer" / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(
        str(folder / "tokenizer" / "vocab.json"), str(folder / "tokenizer" / "merges.txt"), model_max_length=max_tokens
    )
    tokenizer.save_pretrained(folder / "tokenizer")
    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
            hidden_size=8,
            intermediate_size=16,
            num_attention_heads=2,
            num_hidden_layers=1,
            vocab_size=len(vocab),
            max_position_embeddings=max_tokens,
        )
    )
    unet = UNet2DConditionModel(
        block_out_channels=(4, 8),
        layers_per_block=1,
        sample_size=4,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=8,
        attention_head_dim=2,
        norm_num_groups=2,
    )
    vae = AutoencoderKL(
        block_out_channels=(4, 8),
        in_channels=image_channels,
        out_channels=image_channels,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=4,
        norm_num_groups=2,
        sample_size=8,
    )
    scheduler = DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False)
    unet.save_pretrained(folder / "unet", safe_serialization=True)
    vae.save_pretrained(folder / "vae", safe_serialization=True)
    text_encoder.save_pretrained(folder / "text_encoder", safe_serialization=True)
    scheduler.save_pretrained(folder / "scheduler")
    index = {
        "_class_name": "StableDiffusionPipeline",
        "_diffusers_version": "0.42.1",
        "feature_extractor": [None, None],
        "requires_safety_checker": False,
        "safety_checker": [None, None],
        "scheduler": ["diffusers", "DDPMScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }
    (folder / "model_index.json").write_text(json.dumps(index, indent=2))
    return folder


@pytest.fixture(scope="session")
def tiny_t2i_folder(tmp_path_factory) -> Path:
    """A tiny random StableDiffusionPipeline folder (see :func:`save_tiny_t2i_pipeline`; read-only)."""
    return save_tiny_t2i_pipeline(tmp_path_factory.mktemp("t2i") / "pipe")


@pytest.fixture(scope="session")
def tiny_t2i_target(tiny_t2i_folder):
    """The tiny pipeline loaded as a TextToImageTarget on the CPU (read-only: do not modify)."""
    from mia_core.target import load_target

    return load_target(str(tiny_t2i_folder), device="cpu")
