"""Tests for mia_core.target: loading diffusers folders safely, eps, fingerprints, the default card."""

from __future__ import annotations

import json
import re

import pytest
import torch

from mia_core.schedule import NoiseSchedule
from mia_core.target import Target, TargetLoadError, load_target


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread(single_thread):
    """See conftest.single_thread."""


def _inputs(channels: int = 1, res: int = 8, n: int = 3):
    gen = torch.Generator().manual_seed(11)
    x = torch.rand(n, channels, res, res, generator=gen) * 2 - 1
    t = torch.tensor([0, 200, 999][:n])
    return x, t


def _save_bare(folder, unet):
    unet.save_pretrained(folder, safe_serialization=True)
    return folder


@pytest.fixture(scope="module")
def saved_unet(tmp_path_factory, tiny_unet_factory):
    """The tiny 8x8 gray UNet and a bare diffusers folder holding it."""
    unet = tiny_unet_factory(8, 1).eval()
    folder = _save_bare(tmp_path_factory.mktemp("bare") / "model", unet)
    return unet, folder


def test_bare_folder_loads_with_same_outputs(saved_unet):
    unet, folder = saved_unet
    assert (folder / "diffusion_pytorch_model.safetensors").exists()
    target = load_target(str(folder), device="cpu")
    x, t = _inputs()
    with torch.no_grad():
        expected = unet(x, t).sample
    got = target.eps(x, t)
    assert got.dtype == torch.float32 and got.shape == x.shape
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-7)
    # An int timestep is broadcast over the batch.
    with torch.no_grad():
        torch.testing.assert_close(target.eps(x, 200), unet(x, torch.full((3,), 200)).sample, rtol=1e-6, atol=1e-7)
    # No scheduler config: linear 1e-4..0.02 assumed and said so.
    assert torch.equal(target.schedule.alphas_cumprod, NoiseSchedule.linear().alphas_cumprod)
    assert any("assumed linear" in n for n in target.notes)
    assert target.source == str(folder)
    assert (target.resolution, target.channels) == (8, 1)
    assert not target.unet.training
    assert all(not p.requires_grad for p in target.unet.parameters())


def test_eps_rejects_out_of_range_timestep(saved_unet):
    target = load_target(str(saved_unet[1]), device="cpu")
    x, _ = _inputs()
    with pytest.raises(ValueError, match="1000"):
        target.eps(x, 1000)
    with pytest.raises(ValueError, match="-1"):
        target.eps(x, torch.tensor([0, -1, 5]))


def test_fingerprint_stable_and_sensitive(saved_unet, tmp_path, tiny_unet_factory):
    make_tiny_unet = tiny_unet_factory
    unet, folder = saved_unet
    a = load_target(str(folder), device="cpu")
    b = load_target(str(folder), device="cpu")
    assert re.fullmatch(r"[0-9a-f]{16}", a.fingerprint)
    assert a.fingerprint == b.fingerprint
    # The in-memory model with the same schedule has the same fingerprint.
    assert Target(make_tiny_unet(8, 1), NoiseSchedule.linear(), device=torch.device("cpu")).fingerprint == a.fingerprint
    # One weight changed -> a different fingerprint.
    changed = make_tiny_unet(8, 1)
    with torch.no_grad():
        changed.conv_out.bias[0] += 1e-3
    c = load_target(str(_save_bare(tmp_path / "changed", changed)), device="cpu")
    assert c.fingerprint != a.fingerprint
    # Another schedule -> a different fingerprint.
    d = Target(make_tiny_unet(8, 1), NoiseSchedule.linear(beta_end=0.03), device=torch.device("cpu"))
    assert d.fingerprint != a.fingerprint


def test_pipeline_folder_uses_its_scheduler(saved_unet, tmp_path):
    unet, _ = saved_unet
    pipe = tmp_path / "pipe"
    unet.save_pretrained(pipe / "unet", safe_serialization=True)
    (pipe / "scheduler").mkdir()
    (pipe / "scheduler" / "scheduler_config.json").write_text(
        json.dumps(
            {
                "_class_name": "DDPMScheduler",
                "num_train_timesteps": 1000,
                "beta_start": 1e-4,
                "beta_end": 0.03,
                "beta_schedule": "linear",
                "prediction_type": "epsilon",
                "clip_sample": True,
            }
        )
    )
    target = load_target(str(pipe), device="cpu")
    assert torch.equal(target.schedule.alphas_cumprod, NoiseSchedule.linear(1000, 1e-4, 0.03).alphas_cumprod)
    assert not torch.allclose(target.schedule.alphas_cumprod, NoiseSchedule.linear().alphas_cumprod)
    assert "0.03" in target.card()["schedule"]
    assert target.notes == ()
    x, t = _inputs()
    with torch.no_grad():
        torch.testing.assert_close(target.eps(x, t), unet(x, t).sample, rtol=1e-6, atol=1e-7)


def test_pipeline_folder_without_scheduler_assumes_linear(saved_unet, tmp_path):
    unet, _ = saved_unet
    unet.save_pretrained(tmp_path / "p" / "unet", safe_serialization=True)
    target = load_target(str(tmp_path / "p"), device="cpu")
    assert torch.equal(target.schedule.alphas_cumprod, NoiseSchedule.linear().alphas_cumprod)
    assert target.notes and "assumed" in target.notes[0]


def test_folder_without_weights(saved_unet, tmp_path):
    folder = tmp_path / "noweights"
    folder.mkdir()
    (folder / "config.json").write_text((saved_unet[1] / "config.json").read_text())
    with pytest.raises(
        TargetLoadError, match=r"config\.json but no weights file \(diffusion_pytorch_model\.safetensors\)"
    ):
        load_target(str(folder), device="cpu")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(TargetLoadError, match="has no diffusers model"):
        load_target(str(empty), device="cpu")


@pytest.fixture
def no_torch_load(monkeypatch):
    calls = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise AssertionError("torch.load was called on an untrusted pickle")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(torch.serialization, "load", refuse)
    return calls


def test_pickle_bin_is_refused(saved_unet, tmp_path, no_torch_load):
    unet, src = saved_unet
    folder = tmp_path / "pickled"
    folder.mkdir()
    (folder / "config.json").write_text((src / "config.json").read_text())
    torch.save(unet.state_dict(), folder / "diffusion_pytorch_model.bin")
    with pytest.raises(TargetLoadError, match="pickle") as info:
        load_target(str(folder), device="cpu")
    assert "diffusion_pytorch_model.bin" in str(info.value)
    assert "safetensors" in str(info.value)
    assert no_torch_load == []


def test_pipeline_with_pickle_unet_is_refused(saved_unet, tmp_path, no_torch_load):
    unet, src = saved_unet
    pipe = tmp_path / "pipe"
    (pipe / "unet").mkdir(parents=True)
    (pipe / "unet" / "config.json").write_text((src / "config.json").read_text())
    torch.save(unet.state_dict(), pipe / "unet" / "diffusion_pytorch_model.bin")
    with pytest.raises(TargetLoadError, match="pickle"):
        load_target(str(pipe), device="cpu")
    assert no_torch_load == []


def test_pickle_checkpoint_only_is_refused(tmp_path, no_torch_load):
    folder = tmp_path / "ckpt"
    folder.mkdir()
    torch.save({"net": torch.zeros(3)}, folder / "model.ckpt")
    with pytest.raises(TargetLoadError, match="pickle") as info:
        load_target(str(folder), device="cpu")
    assert "model.ckpt" in str(info.value)
    assert no_torch_load == []


def test_conditional_unet_config_refused(saved_unet, tmp_path):
    folder = tmp_path / "cond"
    folder.mkdir()
    config = json.loads((saved_unet[1] / "config.json").read_text())
    config["_class_name"] = "UNet2DConditionModel"
    config["cross_attention_dim"] = 768
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(TargetLoadError, match="UNet2DConditionModel.*only unconditional UNet2DModel"):
        load_target(str(folder), device="cpu")


def test_unknown_hub_id_fails_offline(monkeypatch):
    import huggingface_hub

    calls = []

    def offline(repo_id, *args, **kwargs):
        calls.append((repo_id, kwargs))
        raise OSError("offline (test)")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    with pytest.raises(TargetLoadError, match=r"'not/a-real-model-xyz'.*Hugging Face Hub"):
        load_target("not/a-real-model-xyz", device="cpu")
    assert calls and all(repo == "not/a-real-model-xyz" for repo, _ in calls)
    assert calls[0][1].get("local_files_only") is True  # the cache is tried first
    # Nothing but model_index.json is asked for before the repo is known to be attackable.
    assert all("allow_patterns" not in kw for _, kw in calls)


def test_bad_specs(tmp_path):
    f = tmp_path / "weights.safetensors"
    f.write_bytes(b"x")
    with pytest.raises(TargetLoadError, match="is a file"):
        load_target(str(f), device="cpu")
    with pytest.raises(TargetLoadError, match="neither an existing folder nor a Hub id"):
        load_target(str(tmp_path / "missing" / "deeper" / "x"), device="cpu")
    assert issubclass(TargetLoadError, ValueError)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
def test_cuda_requested_without_cuda():
    with pytest.raises(TargetLoadError, match="no CUDA device"):
        load_target("default", device="cuda")


def test_default_target_card():
    target = load_target("default", device="cpu")
    card = target.card()
    assert card["source"] == "default"
    assert card["resolution"] == 8 and card["channels"] == 1
    assert 1.0e6 < card["parameters"] < 1.2e6
    assert card["parameters"] == sum(p.numel() for p in target.unet.parameters())
    assert card["timesteps"] == 1000
    assert card["schedule"].startswith("linear")
    assert card["device"] == "cpu" and card["precision"] == "float32"
    assert re.fullmatch(r"[0-9a-f]{16}", card["fingerprint"])
    assert json.loads(json.dumps(card)) == card  # plain values only
    assert load_target("default", device="cpu").fingerprint == target.fingerprint


def test_card_says_what_was_read(tmp_path, saved_unet):
    """Issue 14, item 7: parameterisation, schedule with abar, space, conversions, what does not apply."""
    import json as _json
    import shutil

    folder = tmp_path / "vzero"
    shutil.copytree(saved_unet[1], folder / "unet")
    (folder / "scheduler").mkdir()
    (folder / "scheduler" / "scheduler_config.json").write_text(
        _json.dumps(
            {
                "_class_name": "DDIMScheduler",
                "beta_schedule": "scaled_linear",
                "beta_start": 0.00085,
                "beta_end": 0.012,
                "rescale_betas_zero_snr": True,
                "prediction_type": "v_prediction",
                "timestep_spacing": "trailing",
                "clip_sample": False,
            }
        )
    )
    card = load_target(str(folder), device="cpu").card()
    assert card["parameterisation"] == "v_prediction"
    assert "sqrt(abar_t) v" in card["converted"][0]
    assert card["zero_terminal_snr"] is True and card["abar_at_t"]["999"] == 0.0
    assert card["abar_at_t"]["0"] == pytest.approx(1 - 0.00085, rel=1e-6)
    assert card["space"] == "pixel" and card["vae_scaling_factor"] is None
    assert "timestep_spacing=trailing" in card["scheduler_config"]
    assert set(card["not_applicable"]) == {"likelihood", "elbo", "gsa1", "gsa2", "clid"}  # clid: text-to-image only
    assert "zero terminal SNR" in card["not_applicable"]["elbo"]
    assert "epsilon-prediction loss" in card["not_applicable"]["gsa1"]
    _json.dumps(card)  # plain values
    default = load_target("default", device="cpu").card()
    assert set(default["not_applicable"]) == {"clid"} and default["parameterisation"] == "epsilon"
