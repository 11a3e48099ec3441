"""Issue 15, item 1: Stable Diffusion pipeline folders load as text-to-image targets (tiny random
pipelines built from configs in conftest.py; nothing is downloaded)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from mia_core.target import TargetLoadError, TextToImageTarget, hub_patterns, hub_plan, load_target


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread(single_thread):
    yield


def test_pipeline_folder_loads_as_a_text_to_image_target(tiny_t2i_target, tiny_t2i_folder):
    t = tiny_t2i_target
    assert isinstance(t, TextToImageTarget) and t.kind == "t2i" and t.latent
    assert (t.channels, t.resolution, t.model_shape) == (1, 8, (4, 4, 4))
    assert next(t.unet.parameters()).dtype == torch.float32 and next(t.text_encoder.parameters()).dtype == torch.float32
    assert t.max_tokens == 16
    card = t.card()
    assert set(card["components"]) == {"unet", "vae", "text_encoder", "tokenizer"}
    assert "CLIPTextModel" in card["components"]["text_encoder"] and "16 per prompt" in card["components"]["tokenizer"]
    assert "scaled_linear" in card["schedule"] and "guidance off" in card["conditioning"]
    assert "elbo" in card["not_applicable"] and "loss" not in card["not_applicable"]


def test_latents_are_the_shared_kl_posterior_mean_times_scaling_factor(tiny_t2i_target):
    t = tiny_t2i_target
    x = torch.linspace(-1, 1, 2 * 64).view(2, 1, 8, 8)
    expected = t.vae.encode(x).latent_dist.mean * t.vae.config.scaling_factor
    torch.testing.assert_close(t.encode(x), expected)


def test_text_embeddings_are_computed_once_per_distinct_prompt(tiny_t2i_folder):
    t = load_target(str(tiny_t2i_folder), device="cpu")
    seen = []
    hook = t.text_encoder.register_forward_hook(lambda m, args, out: seen.append(args[0].shape[0]))
    try:
        e = t.embed(["a seven", "a one", "a seven"])
        again = t.embed(["a one", "a seven"])
    finally:
        hook.remove()
    assert seen == [2]  # one pass over the two distinct prompts; the second call is served from the cache
    assert e.shape == (3, 16, 8)
    torch.testing.assert_close(e[0], e[2])
    torch.testing.assert_close(again, e[[1, 0]])
    assert not torch.allclose(e[0], e[1])


def test_the_text_side_is_part_of_the_fingerprint(tiny_t2i_folder, tmp_path):
    other = tmp_path / "pipe"
    shutil.copytree(tiny_t2i_folder, other)
    vocab = json.loads((other / "tokenizer" / "vocab.json").read_text())
    a, b = vocab["a</w>"], vocab["b</w>"]
    vocab["a</w>"], vocab["b</w>"] = b, a  # same weights, another vocabulary
    (other / "tokenizer" / "vocab.json").write_text(json.dumps(vocab))
    (other / "tokenizer" / "tokenizer.json").unlink(missing_ok=True)
    base = load_target(str(tiny_t2i_folder), device="cpu").fingerprint
    assert load_target(str(tiny_t2i_folder), device="cpu").fingerprint == base
    assert load_target(str(other), device="cpu").fingerprint != base


def test_pickled_text_encoder_is_refused(tiny_t2i_folder, tmp_path):
    other = tmp_path / "pipe"
    shutil.copytree(tiny_t2i_folder, other)
    (other / "text_encoder" / "model.safetensors").rename(other / "text_encoder" / "pytorch_model.bin")
    with pytest.raises(TargetLoadError, match="refusing to load .*pytorch_model.bin"):
        load_target(str(other), device="cpu")


def test_missing_text_encoder_and_sdxl_unet_are_refused_by_name(tiny_t2i_folder, tmp_path):
    other = tmp_path / "pipe"
    shutil.copytree(tiny_t2i_folder, other)
    shutil.rmtree(other / "text_encoder")
    with pytest.raises(TargetLoadError, match="no text_encoder/ folder"):
        load_target(str(other), device="cpu")
    sdxl = tmp_path / "sdxl"
    shutil.copytree(tiny_t2i_folder, sdxl)
    config = json.loads((sdxl / "unet" / "config.json").read_text())
    config["addition_embed_type"] = "text_time"
    (sdxl / "unet" / "config.json").write_text(json.dumps(config))
    with pytest.raises(TargetLoadError, match="addition_embed_type='text_time'"):
        load_target(str(sdxl), device="cpu")


def test_hub_plan_fetches_the_stable_diffusion_components_safetensors_only(tiny_t2i_folder):
    index = json.loads((tiny_t2i_folder / "model_index.json").read_text())
    wanted = hub_plan(index)
    assert set(wanted) == {"unet", "vae", "text_encoder", "tokenizer", "scheduler"}
    patterns = hub_patterns(wanted, variant="fp16")
    assert (
        "text_encoder/model.fp16.safetensors" in patterns
        and "unet/diffusion_pytorch_model.fp16.safetensors" in patterns
    )
    assert "tokenizer/vocab.json" in patterns and "tokenizer/merges.txt" in patterns
    assert not any(p.endswith((".bin", ".ckpt", ".pt")) or "safety_checker" in p for p in patterns)
    bad = dict(index, text_encoder=["transformers", "T5EncoderModel"])
    with pytest.raises(TargetLoadError, match="T5EncoderModel"):
        hub_plan(bad)
