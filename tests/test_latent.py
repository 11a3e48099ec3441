"""Issue 14, item 2: latent diffusion targets (unet/ + vae/ or vqvae/ + scheduler/), built from tiny
configs in the test (no download)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mia_core.attacks import get_attack
from mia_core.noise import per_image_noise
from mia_core.target import Target, TargetLoadError, load_target


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread(single_thread):
    """See conftest.single_thread."""


def tiny_vae(kind: str, latent_channels: int = 2, seed: int = 0):
    from diffusers import AutoencoderKL, VQModel

    torch.manual_seed(seed)
    common = dict(
        block_out_channels=[8, 16],
        in_channels=1,
        out_channels=1,
        latent_channels=latent_channels,
        down_block_types=["DownEncoderBlock2D"] * 2,
        up_block_types=["UpDecoderBlock2D"] * 2,
        norm_num_groups=4,
        sample_size=16,
        layers_per_block=1,
    )
    if kind == "kl":
        return AutoencoderKL(**common, scaling_factor=0.5)
    return VQModel(**common, num_vq_embeddings=16, vq_embed_dim=latent_channels, scaling_factor=0.7)


def save_latent_pipeline(folder, unet, vae, scheduler_config=None):
    unet.save_pretrained(folder / "unet", safe_serialization=True)
    vae.save_pretrained(folder / ("vae" if type(vae).__name__ == "AutoencoderKL" else "vqvae"), safe_serialization=True)
    (folder / "scheduler").mkdir(parents=True, exist_ok=True)
    config = scheduler_config or {
        "_class_name": "DDIMScheduler",
        "beta_schedule": "scaled_linear",
        "beta_start": 0.0015,
        "beta_end": 0.0195,
        "clip_sample": False,
    }
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(config))
    return folder


def _images(n=6, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randint(0, 256, (n, 1, 16, 16), generator=gen).float() / 127.5 - 1.0).numpy()


@pytest.fixture(scope="module", params=["kl", "vq"])
def latent_folder(request, tmp_path_factory, tiny_unet_factory):
    folder = tmp_path_factory.mktemp(f"ldm_{request.param}")
    return save_latent_pipeline(folder, tiny_unet_factory(8, 2, seed=1), tiny_vae(request.param)), request.param


def test_latent_folder_loads_as_a_latent_target(latent_folder):
    folder, kind = latent_folder
    target = load_target(str(folder), device="cpu")
    assert target.latent
    assert (target.resolution, target.channels) == (16, 1)  # the images the attacks take
    assert target.model_shape == (2, 8, 8)  # what the UNet denoises
    assert target.scaling_factor == (0.5 if kind == "kl" else 0.7)
    x = torch.as_tensor(_images(2))
    z = target.encode(x)
    # The encoding: posterior mean (KL) or the pre-quantisation encoder output (VQ), times kappa.
    with torch.no_grad():
        h = target.vae.encode(x).latent_dist.mean if kind == "kl" else target.vae.encode(x).latents
    assert torch.allclose(z, h * target.scaling_factor, atol=1e-6)
    assert torch.equal(target.encode(x), z)  # deterministic
    assert target.decode(z).shape == (2, 1, 16, 16)
    # The VAE is part of the fingerprint.
    other = Target(target.unet, target.schedule, device=torch.device("cpu"), vae=tiny_vae(kind, seed=5))
    assert other.fingerprint != target.fingerprint


@pytest.mark.parametrize("name", ["loss", "secmi", "pia", "sima"])
def test_attacks_run_on_the_latents(latent_folder, name):
    folder, _ = latent_folder
    target = load_target(str(folder), device="cpu")
    pixel_view = Target(target.unet, target.schedule, device=torch.device("cpu"))  # the same UNet, fed latents
    x = _images()
    ids = [str(i) for i in range(len(x))]
    attack = get_attack(name)
    res = attack.run(target, x, ids=ids, seed=3)
    z = target.encode(torch.as_tensor(x))
    noise = per_image_noise(ids, 3, attack.noise_draws, target.model_shape) if attack.noise_draws else None
    with torch.inference_mode():
        expected = attack.compute(pixel_view, z, noise)["score"].double().numpy()
    np.testing.assert_allclose(res.scores, expected, rtol=1e-5, atol=1e-6)
    assert res.info["vae_encodes_per_image"] == 1 and res.info["vae_parameters"] > 0


def test_displayed_images_are_decoded(latent_folder):
    from mia_core.lab import teaching
    from mia_core.views.results import secmi_panels

    folder, _ = latent_folder
    target = load_target(str(folder), device="cpu")
    x = torch.as_tensor(_images(2))
    noise = teaching.fixed_noise(teaching.noise_shape(target, x.shape[1:]), 0)
    x_t, eps_pred, x0_hat = teaching.one_step_denoise(target, x, 300, noise)
    assert x_t.shape == x0_hat.shape == (2, 1, 16, 16) and eps_pred.shape == (2, 2, 8, 8)
    z_t = (
        target.schedule.alphas_cumprod[300].sqrt().float() * target.encode(x)
        + (1 - target.schedule.alphas_cumprod[300]).sqrt().float() * noise
    )
    assert torch.allclose(x_t, target.decode(z_t), atol=1e-4)
    states = secmi_panels(teaching.secmi_round_trip(target, x[0].numpy()))
    assert states["x_tilde"].shape[:2] == (16, 16) and states["x_recon"].shape[:2] == (16, 16)
    curve = teaching.reconstruction_error_curve(target, x, (10, 200))
    assert curve.x0_error.shape == (2, 2)


def test_vae_that_does_not_fit_is_refused(tmp_path, tiny_unet_factory):
    folder = save_latent_pipeline(tmp_path / "bad", tiny_unet_factory(8, 2), tiny_vae("kl", latent_channels=4))
    with pytest.raises(TargetLoadError, match="4-channel latents but the UNet takes 2"):
        load_target(str(folder), device="cpu")
