"""Issue 15, item 3: the attacks run on text-to-image targets with a conditioning chosen per run
(own caption / empty prompt / fixed prompt, optional classifier-free guidance), in latent space."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mia_core.attacks import Conditioning, NotApplicable, get_attack
from mia_core.attacks.learned import secmi_intermediates
from mia_core.lab.runs import RunKey
from mia_core.noise import per_image_noise
from mia_core.schedule import q_sample

CAPTIONS = ["a handwritten seven", "a handwritten one", "a zero"]
FAST = {  # scores only, short grids: every test stays well under a second of UNet time
    "loss": {"sweep": []},
    "secmi": {"t_sec": 20, "k": 10, "trace": False},
    "pia": {"sweep": []},
    "pian": {"sweep": []},
    "sima": {"sweep": []},
}
#: with a trace: every forward pass stacks two or more blocks of the batch's images (the row mapping is tested)
STACKED = {
    "loss": {"sweep": [100]},
    "secmi": {"t_sec": 20, "k": 10, "trace": True},
    "pia": {"sweep": [100]},
    "pian": {"sweep": [100]},
    "sima": {"sweep": [50]},
}


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread(single_thread):
    yield


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).uniform(-1, 1, (3, 1, 8, 8)).astype(np.float32)


def attack(name, conditioning=None):
    return get_attack(name, {**FAST[name], **({"conditioning": conditioning} if conditioning is not None else {})})


@pytest.mark.parametrize("name", list(FAST))
def test_batched_run_equals_per_image_runs_with_each_images_own_caption(tiny_t2i_target, images, name):
    a = get_attack(name, {**STACKED[name], "conditioning": "caption"})
    ids = ["i0", "i1", "i2"]
    batched = a.run(tiny_t2i_target, images, ids=ids, captions=CAPTIONS, batch_size=2)  # batches of 2, then 1
    single = [
        a.run(tiny_t2i_target, images[i : i + 1], ids=ids[i : i + 1], captions=CAPTIONS[i : i + 1]) for i in range(3)
    ]
    np.testing.assert_allclose(batched.scores, [r.scores[0] for r in single], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(batched.trace, np.concatenate([r.trace for r in single]), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["loss", "pia", "secmi"])
def test_the_conditioning_mode_changes_the_statistic(tiny_t2i_target, images, name):
    scores = {
        mode: attack(name, cond).run(tiny_t2i_target, images, captions=CAPTIONS).scores
        for mode, cond in (("caption", "caption"), ("empty", "empty"), ("fixed", {"mode": "fixed", "prompt": "a cat"}))
    }
    assert not np.allclose(scores["caption"], scores["empty"], rtol=1e-4)
    assert not np.allclose(scores["fixed"], scores["empty"], rtol=1e-4)
    assert not np.allclose(scores["caption"], scores["fixed"], rtol=1e-4)


def test_empty_mode_is_the_unconditional_computation_with_the_empty_prompt(tiny_t2i_target, images):
    t = tiny_t2i_target
    ids = ["a", "b", "c"]
    got = attack("loss", "empty").run(t, images, ids=ids, seed=3).scores
    # By hand: encode, noise at t = 200 with the run's per-image noise, one UNet call on E("").
    z = t.encode(torch.from_numpy(images))
    eps = per_image_noise(ids, 3, 1, t.model_shape)[:, 0]
    z_t = q_sample(t.schedule, z, 200, eps)
    empty = t.text_encoder(t.tokenizer([""] * 3, padding="max_length", max_length=16, return_tensors="pt").input_ids)[0]
    with torch.no_grad():
        pred = t.unet(z_t, torch.full((3,), 200), encoder_hidden_states=empty).sample
    np.testing.assert_allclose(got, -(eps - pred).square().flatten(1).sum(1).numpy(), rtol=1e-5)


def test_guidance_combines_the_conditional_and_empty_prompt_outputs_at_double_cost(tiny_t2i_target, images):
    t = tiny_t2i_target
    cond = Conditioning(mode="fixed", prompt="a seven", guidance_scale=3.0)
    a = attack("sima", cond)
    got = a.run(t, images).scores
    z = t.encode(torch.from_numpy(images))
    step = torch.full((3,), 100)
    with torch.no_grad():
        u = t.unet(z, step, encoder_hidden_states=t.embed([""] * 3)).sample
        c = t.unet(z, step, encoder_hidden_states=t.embed(["a seven"] * 3)).sample
    expected = -(u + 3.0 * (c - u)).abs().pow(4).flatten(1).sum(1)
    np.testing.assert_allclose(got, expected.numpy(), rtol=1e-5)
    assert a.unet_calls() == 2 * attack("sima", "empty").unet_calls() == 2
    assert get_attack("secmi", {"conditioning": {"mode": "empty", "guidance_scale": 7.5}}).unet_calls(trace=False) == 22


def test_conditioning_is_recorded_in_params_and_in_the_run_key(tiny_t2i_target, images):
    a = attack("loss", Conditioning().with_captions(CAPTIONS))
    result = a.run(tiny_t2i_target, images, captions=CAPTIONS)
    assert result.params["conditioning"]["mode"] == "caption"
    keys = {
        RunKey.of("t", "i", attack("loss", c), 0).digest()
        for c in (
            "caption",
            "empty",
            {"mode": "fixed", "prompt": "a cat"},
            Conditioning().with_captions(CAPTIONS),
            {"mode": "empty", "guidance_scale": 2.0},
        )
    }
    assert len(keys) == 5
    # the parameters round-trip through get_attack (the store's meta.json holds plain values)
    again = get_attack("loss", result.params)
    assert again.conditioning == a.conditioning
    # the default of a text-to-image run is each image's caption, and it is recorded as such
    assert get_attack("loss", FAST["loss"]).run(tiny_t2i_target, images, captions=CAPTIONS).params["conditioning"] == {
        "mode": "caption",
        "guidance_scale": 1.0,
    }


def test_missing_or_misaligned_captions_fail_clearly(tiny_t2i_target, images, tiny_target):
    with pytest.raises(ValueError, match="needs one caption per image, and these images have none"):
        attack("loss", "caption").run(tiny_t2i_target, images)
    with pytest.raises(ValueError, match="got 2 captions for 3 images"):
        attack("loss", "caption").run(tiny_t2i_target, images, captions=CAPTIONS[:2])
    with pytest.raises(ValueError, match="not those this run was keyed with"):
        attack("loss", Conditioning().with_captions(CAPTIONS)).run(tiny_t2i_target, images, captions=CAPTIONS[::-1])
    with pytest.raises(ValueError, match="is not a text-to-image target"):
        attack("loss", "empty").run(tiny_target, np.zeros((1, 1, 8, 8), np.float32))
    with pytest.raises(ValueError, match="needs a non-empty prompt"):
        Conditioning(mode="fixed")


def test_learned_attacks_statistic_follows_the_conditioning(tiny_t2i_target, images):
    ids = ["a", "b", "c"]
    by_mode = {
        mode: secmi_intermediates(
            tiny_t2i_target,
            images,
            ids,
            t_sec=20,
            k=10,
            seed=0,
            captions=CAPTIONS,
            conditioning=Conditioning(mode=mode),
        )[0]
        for mode in ("caption", "empty")
    }
    own = attack("secmi", "caption").run(tiny_t2i_target, images, ids=ids, captions=CAPTIONS).scores
    np.testing.assert_allclose(by_mode["caption"], -own, rtol=1e-6)
    assert not np.allclose(by_mode["caption"], by_mode["empty"], rtol=1e-4)
    for name in ("secmi_nn", "qr"):
        assert get_attack(name).applies_to(tiny_t2i_target) is None


@pytest.mark.parametrize("name", ["likelihood", "elbo", "gsa1"])
def test_attacks_that_do_not_apply_say_why(tiny_t2i_target, images, name):
    a = get_attack(name)
    reason = a.applies_to(tiny_t2i_target)
    assert reason and "text-to-image" in reason
    with pytest.raises(NotApplicable):
        a.check_applies(tiny_t2i_target)


def test_run_ids_and_compare_labels_name_the_conditioning():
    from mia_core.lab.run_specs import attack_of, parse_runs, run_id
    from mia_core.views.attack_info import attack_info

    fixed = get_attack("loss", {"conditioning": {"mode": "fixed", "prompt": "a cat, 7", "guidance_scale": 3}})
    rid = run_id(fixed)
    assert rid == "loss:cond=fixed,prompt=a cat%2C 7,guidance=3"
    assert attack_of(rid).conditioning == fixed.conditioning and parse_runs(rid) == ([rid], [])
    ids = {run_id(attack("loss", c)) for c in ("caption", "empty", {"mode": "fixed", "prompt": "a cat"})}
    assert len(ids) == 3 and run_id(attack("loss")) == "loss:sweep="  # no conditioning: as before
    labels = {
        attack_info(run_id(attack("loss", c))).short for c in ("caption", "empty", {"mode": "fixed", "prompt": "a cat"})
    }
    assert len(labels) == 3 and "Loss sweep=none · empty prompt" in labels  # told apart, in words
    # a "caption" run's key carries the captions' digest: attack_of re-attaches it from the images' captions
    keyed = attack_of("loss:cond=caption", CAPTIONS)
    assert keyed.conditioning == Conditioning().with_captions(CAPTIONS)
    assert RunKey.of("t", "i", keyed, 0) == RunKey.of(
        "t", "i", get_attack("loss", {"conditioning": keyed.conditioning}), 0
    )


def test_learn_caption_curves_own_empty_and_wrong_caption(tiny_t2i_target, images):
    from mia_core.lab.teaching import caption_error_curves, reconstruction_error_curve, wrong_caption

    wrong = wrong_caption(CAPTIONS[0], CAPTIONS)
    assert wrong in CAPTIONS[1:]
    curves = caption_error_curves(tiny_t2i_target, images[:1], CAPTIONS[0], wrong, timesteps=(100, 400))
    assert list(curves) == ["own caption", "empty prompt", "wrong caption"]
    own, empty, bad = (curves[k].eps_error for k in curves)
    assert own.shape == (1, 2) and not np.allclose(own, empty) and not np.allclose(own, bad)
    # the empty-prompt curve is the unconditioned computation (a t2i target outside conditioned() uses "")
    np.testing.assert_allclose(empty, reconstruction_error_curve(tiny_t2i_target, images[:1], (100, 400)).eps_error)
    with pytest.raises(ValueError, match="no wrong caption"):
        wrong_caption("a", ["a", "a"])


def test_caption_curves_figure():
    from mia_core.views.learn import caption_curves_figure

    fig = caption_curves_figure(
        [100, 400],
        {"own caption": [0.1, 0.3], "empty prompt": [0.2, 0.4], "wrong caption": [0.25, 0.5]},
        prompts={"own caption": "a seven", "empty prompt": "", "wrong caption": "a one"},
    )
    assert [t.name for t in fig.data] == ['own caption: "a seven"', 'empty prompt: ""', 'wrong caption: "a one"']
    assert list(fig.data[0].y) == [0.1, 0.3] and fig.layout.yaxis.type == "log"


def test_secmi_on_a_t2i_target_equals_the_ddim_inversion_by_hand(tiny_t2i_folder, tiny_t2i_target, images):
    """SecMI's t-error trace and score on a text-to-image target, in batches of 2 (a last batch of 1), equal
    the formulas of attacks-next.md section 1.1 computed from diffusers' own components: z_0 = kappa times
    the VAE posterior mean, c = the CLIP last hidden state of each image's caption on every UNet call,
    abar from the pipeline's scheduler, D(x; a -> b) = sqrt(abar_b) x0_hat + sqrt(1 - abar_b) eps(x, a, c)."""
    from diffusers import DDPMScheduler

    t = tiny_t2i_target
    got = get_attack("secmi", {"t_sec": 30, "k": 10, "trace": True, "conditioning": "caption"}).run(
        t, images, ids=["a", "b", "c"], captions=CAPTIONS, batch_size=2
    )
    abar = DDPMScheduler.from_pretrained(tiny_t2i_folder / "scheduler").alphas_cumprod.float()
    with torch.no_grad():
        z0 = t.vae.encode(torch.from_numpy(images)).latent_dist.mean * t.vae.config.scaling_factor
        ids = t.tokenizer(CAPTIONS, padding="max_length", max_length=16, truncation=True, return_tensors="pt")
        c = t.text_encoder(ids.input_ids)[0]

        def move(z, a, b):  # D(z; a -> b) with eps_theta(z, a, c), each image on its own caption
            e = t.unet(z, torch.full((3,), a), encoder_hidden_states=c).sample
            x0_hat = (z - (1 - abar[a]).sqrt() * e) / abar[a].sqrt()
            return abar[b].sqrt() * x0_hat + (1 - abar[b]).sqrt() * e

        points = {0: z0}
        for a in (0, 10, 20):
            points[a + 10] = move(points[a], a, a + 10)
        errors = [(move(points[s + 10], s + 10, s) - points[s]).square().flatten(1).sum(1) for s in (0, 10, 20)]
    expected = torch.stack(errors, 1).numpy()
    np.testing.assert_allclose(got.trace, expected, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(got.scores, -expected[:, -1], rtol=1e-4, atol=1e-7)  # compared at t_sec - k = 20
    assert tuple(got.trace_timesteps) == (0, 10, 20)
