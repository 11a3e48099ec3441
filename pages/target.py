"""Target: choose the model under attack, read its card, and look for memorisation in its samples."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from mia_core import sampling
from mia_core.lab.access import AccessDenied, check_allowed
from mia_core.lab.experiment import Experiment
from mia_core.target import DEFAULT_TARGET_DIR, HUB_ID_PATTERN, TargetLoadError, load_target
from mia_core.views import learn as VL
from mia_core.views.images import DISPLAY_SIZE, upscale_nearest
from mia_core.views.target import card_rows, memorisation_figure
from pages._common import (
    DEFAULT_BUTTON,
    LATENT_BUTTON,
    T2I_BUTTON,
    download_figure,
    latent_spec,
    on_t2i_target,
    try_experiment,
    use_embedded,
)

SOURCES = ("Embedded default", "Local diffusers folder", "Hugging Face Hub id")
THUMB = DISPLAY_SIZE  # pixels per image in the memorisation grid (160: readable at talk distance)


def _validate(choice: str, folder: str, hub_id: str) -> str:
    """The target spec for the chosen source, loaded once to prove it works (raises TargetLoadError)."""
    if choice == SOURCES[0]:
        spec = "default"
    elif choice == SOURCES[1]:
        folder = folder.strip()
        if not folder:
            raise TargetLoadError("enter the path of a local diffusers folder")
        path = check_allowed(folder, "target folder")  # MIA_ALLOWED_ROOTS, before anything is looked at
        if not path.exists():
            raise TargetLoadError(f"{folder!r} does not exist on the machine running the app")
        if not path.is_dir():
            raise TargetLoadError(f"{folder!r} is a file; choose the folder that holds config.json or unet/")
        spec = str(path.resolve())
    else:
        spec = hub_id.strip()
        if not spec:
            raise TargetLoadError("enter a Hub id such as google/ddpm-cifar10-32")
        if not HUB_ID_PATTERN.match(spec):  # never a server path through this box
            raise TargetLoadError(f"{spec!r} is not a Hub id like google/ddpm-cifar10-32")
    load_target(spec)
    return spec


def _apply() -> None:
    """Button callback: switch targets only when the new one loads; otherwise keep the old one and say why."""
    s = st.session_state
    try:
        spec = _validate(s["target.source"], s.get("target.folder", ""), s.get("target.hub", ""))
    except (TargetLoadError, AccessDenied) as exc:
        s["target.error"] = str(exc)
        return
    except Exception as exc:  # a corrupt file, an odd config: never an uncaught exception on the page
        s["target.error"] = f"could not load this target ({type(exc).__name__}: {exc})"
        return
    s["target.error"] = None
    if spec != s["cfg.target"]:
        s["cfg.target"] = spec
        s["sel.sample"] = None
        s["target.flash"] = f"Switched the target to {spec}."
    else:
        s["target.flash"] = f"{spec} is already the target."


def _convert() -> None:
    """Button callback: convert a SecMI / PIA checkpoint (mia_core.convert) and switch to it when it loads."""
    from mia_core.convert import convert_checkpoint

    s = st.session_state
    ckpt = s.get("target.ckpt", "").strip()
    if not ckpt:
        s["target.convert_error"] = "enter the path of a .pt checkpoint"
        return
    path = Path(ckpt).expanduser()
    out = Path(s.get("target.ckpt_out", "").strip() or path.with_name(f"{path.stem}_diffusers")).expanduser()
    try:
        result = convert_checkpoint(path, out)
        spec = str(out.resolve())
        load_target(spec)
    except ValueError as exc:  # ConvertError and TargetLoadError: the message says why
        s["target.convert_error"] = str(exc)
        return
    s["target.convert_error"] = None
    s["cfg.target"], s["sel.sample"] = spec, None
    s["target.source"], s["target.folder"] = SOURCES[1], spec
    s["target.flash"] = f"{result.summary()}. Wrote {spec} and switched the target to it."


@st.cache_data(max_entries=16, show_spinner=False)
def _samples(fingerprint: str, n: int, steps: int, seed: int, _exp: Experiment) -> np.ndarray:
    """Samples (DDIM, or a VE-SDE's predictor-corrector: mia_core.sampling), cached per (fingerprint, n, steps, seed)."""
    return sampling.ddim_sample(_exp.target, n, steps=steps, seed=seed)


@st.cache_data(max_entries=16, show_spinner=False)
def _memorisation(
    fingerprint: str, images_fp: str, n: int, steps: int, seed: int, _exp: Experiment, _pixels: np.ndarray
) -> sampling.Memorisation:
    """Nearest member / non-member of each sample, cached with the samples' key and the images' fingerprint."""
    imgs, mem = _exp.images.images, _exp.is_member
    ids = np.asarray(_exp.ids)
    return sampling.memorisation(_pixels, imgs[mem], imgs[~mem], ids[mem].tolist(), ids[~mem].tolist())


# -- the page -----------------------------------------------------------------------------

st.title("Target: the model under attack")
state = st.session_state
state.setdefault("target.error", None)
if "target.source" not in state:  # open the chooser on the current target's kind
    current = state["cfg.target"]
    if current in ("", "default"):
        state["target.source"] = SOURCES[0]
    elif Path(current).expanduser().exists():
        state["target.source"], state["target.folder"] = SOURCES[1], current
    else:
        state["target.source"], state["target.hub"] = SOURCES[2], current

st.header("Choose the target")
with st.container(border=True):
    st.markdown(f"Current target: **`{state['cfg.target']}`**")
    st.radio("Source", SOURCES, key="target.source", horizontal=True)
    if state["target.source"] == SOURCES[1]:
        st.text_input(
            "Folder",
            key="target.folder",
            placeholder="/path/to/model (config.json + diffusion_pytorch_model.safetensors, or unet/ + scheduler/)",
        )
        st.caption(
            "A diffusers folder on the machine running the app: a bare UNet2DModel folder or a DDPM/DDIM "
            "pipeline folder. Only **safetensors** weights are read; pickle checkpoints (.bin, .pt, .ckpt) "
            "are refused because unpickling can run arbitrary code."
        )
    elif state["target.source"] == SOURCES[2]:
        st.text_input("Hub id", key="target.hub", placeholder="google/ddpm-cifar10-32")
        st.caption(
            "A Hugging Face Hub model id. It is read from the local Hugging Face cache; if it is not there, "
            "the app tries to download it, which **needs the network**. Offline, save the model with "
            "`save_pretrained` on an online machine and choose it as a local folder instead."
        )
    else:
        st.caption(
            "The embedded default: a small DDPM UNet trained by this project on half of scikit-learn's "
            "8×8 digits. It works offline on a CPU and leaks membership visibly."
        )
    b1, b2 = st.columns([1, 2])
    b1.button("Use this target", key="target.apply", type="primary", on_click=_apply)
    current = state["cfg.target"]
    if current != "default":
        b2.button(DEFAULT_BUTTON, key="target.use_default", on_click=use_embedded, args=("default",))
    if not on_t2i_target():
        b2.button(
            T2I_BUTTON,
            key="target.use_t2i",
            on_click=use_embedded,
            args=("t2i",),
            icon=":material/image:",
            help="The shipped Stable-Diffusion-shaped model (assets/t2i_target) and its own member / non-member "
            "split (100 + 100 captioned MNIST digits): target and data switch together.",
        )
    if current != latent_spec()[0]:
        b2.button(
            LATENT_BUTTON,
            key="target.use_latent",
            on_click=use_embedded,
            args=("latent",),
            icon=":material/layers:",
            help="The shipped unconditional latent-diffusion model (assets/latent_target: an AutoencoderKL and a "
            "UNet on its 4x8x8 latents) and its split (the same 100 + 100 MNIST digits as the text-to-image "
            "target): target and data switch together.",
        )
    with st.expander("Convert a SecMI / PIA checkpoint (.pt)", expanded=bool(state.get("target.convert_error"))):
        st.text_input("Checkpoint", key="target.ckpt", placeholder="/path/to/ckpt-step800000.pt")
        st.text_input("Output folder", key="target.ckpt_out", placeholder="default: next to the .pt, <name>_diffusers")
        st.caption(
            "The papers' own DDPMs (pytorch-ddpm format). Read with `torch.load(weights_only=True)` only: a file "
            "holding anything but tensors is refused. The EMA weights are mapped onto a diffusers UNet with "
            "the papers' linear schedule, as `mia convert CKPT --out DIR` does."
        )
        st.button("Convert and use", key="target.convert", on_click=_convert)
        if state.get("target.convert_error"):
            st.error(f"Not converted: {state['target.convert_error']}", icon=":material/error:")
    if state["target.error"]:
        st.error(f"Target not changed: {state['target.error']}", icon=":material/error:")
    flash = state.pop("target.flash", None)
    if flash:
        st.success(flash, icon=":material/check_circle:")

exp = try_experiment()
if exp is None:
    st.stop()
target = exp.target
card = target.card()

st.header("Model card")
c1, c2, c3, c4 = st.columns(4)
c1.metric("Parameters", f"{card['parameters']:,}")
c2.metric("Resolution", f"{card['resolution']}×{card['resolution']}")
c3.metric("Channels", f"{card['channels']}")
c4.metric("Timesteps T", f"{card['timesteps']:,}")
rows = card_rows(card)
card_df = pd.DataFrame(rows, columns=["property", "value"])
st.dataframe(card_df, hide_index=True, width="stretch")
st.download_button(
    "Card (JSON)",
    data=json.dumps(card, indent=1),
    file_name=f"target_{card['fingerprint']}.json",
    mime="application/json",
    key="target.card_dl",
    on_click="ignore",
    icon=":material/download:",
)
st.caption(
    "The fingerprint hashes the UNet config, every weight and the noise schedule: results in the store are "
    "keyed by it, so a retrained or different model never reuses another model's scores."
)

# Training facts: the default's log, or a train_log.json next to a local folder made by `mia train`.
log_dir = DEFAULT_TARGET_DIR if card["source"] == "default" else Path(card["source"])
from mia_core.lab.train import read_train_log  # noqa: E402

try:
    log = read_train_log(log_dir) if log_dir.is_dir() else None
except ValueError as exc:  # a corrupt train_log.json: say so, keep the page
    st.warning(f"The training log could not be read: {exc}")
    log = None
if log is not None:
    st.subheader("How it was trained")
    facts = VL.train_log_summary(log)
    st.code(facts["command"] or "(command not recorded)", language="bash")
    f1, f2, f3, f4 = st.columns(4)
    f1.metric("Training steps", f"{facts['steps']:,}" if facts["steps"] else "n/a")
    f2.metric("Members (training images)", f"{facts['members']:,}" if facts["members"] else "n/a")
    f3.metric("Training time", f"{facts['seconds']:,.0f} s" if facts["seconds"] else "n/a")
    f4.metric("Device", str(facts["device"] or "n/a"))
    st.caption(
        f"Batch size {facts['batch size']}, learning rate {facts['learning rate']}, "
        f"weights: {facts['weights'] or 'n/a'} (EMA decay {facts['EMA decay']}). "
        f"Trained on {exp.split.n_members:,} members; the {exp.split.n_nonmembers:,} non-members were never "
        "shown to it, which is what makes them a fair comparison."
    )
    if isinstance(log.get("snapshot_of"), dict) and log["snapshot_of"].get("note"):
        st.caption(f"Snapshot: {log['snapshot_of']['note']} (the command and time above are the whole run's).")
    recipe = VL.train_recipe(log)
    augment = recipe.get("augment") or ("hflip" if recipe.get("hflip") else "none")
    if log.get("kind") == "ve":
        st.caption(f"VE-SDE noise levels σ {recipe.get('sigma_min')}..{recipe.get('sigma_max')} (data in [0, 1]).")
    else:
        st.caption(f"Noise schedule: {recipe.get('schedule', 'linear')} · augmentation: {augment}.")
    dp = log.get("dp") or None
    if isinstance(dp, dict):
        eps = dp.get("achieved_epsilon", dp.get("target_epsilon"))
        d1, d2, d3, d4 = st.columns(4)
        d1.metric(
            "DP ε (achieved)",
            f"{eps:.2f}" if isinstance(eps, (int, float)) else "n/a",
            help="The (ε, δ)-differential-privacy guarantee of the whole training run, from the accountant: "
            "no membership test can have TPR above e^ε · FPR + δ.",
        )
        d2.metric("DP δ", f"{dp['delta']:.1e}" if isinstance(dp.get("delta"), (int, float)) else "n/a")
        d3.metric(
            "Noise multiplier σ",
            f"{dp['noise_multiplier']:.3f}" if isinstance(dp.get("noise_multiplier"), (int, float)) else "n/a",
        )
        d4.metric(
            "Clip norm C", f"{dp['max_grad_norm']:g}" if isinstance(dp.get("max_grad_norm"), (int, float)) else "n/a"
        )
        target_eps = dp.get("target_epsilon")
        st.caption(
            f"Trained with DP-SGD: each example's gradient clipped to norm C, Gaussian noise of σ·C added to "
            f"each batch's sum (sampling rate {dp.get('sample_rate', 'n/a')}); the "
            f"{dp.get('accountant', 'privacy')} accountant gives the ε above"
            + (f" for a target of {target_eps:g}." if isinstance(target_eps, (int, float)) else ".")
        )
    else:
        st.caption("Trained without differential privacy: no formal bound on what an attacker can learn (ε = ∞).")
    loss_fig = VL.loss_curve_figure(log)
    if loss_fig is not None:
        st.plotly_chart(loss_fig, key="target.loss_chart", config={"displaylogo": False})
        curve = np.asarray(log["loss_curve"], dtype=float)
        download_figure(
            loss_fig, pd.DataFrame({"step": curve[:, 0], "loss": curve[:, 1]}), "training_loss", "target.loss_dl"
        )
        st.caption(
            "Training loss (mean squared noise error, log scale). It keeps falling long after the samples "
            "look good: the model is fitting its training images ever more closely, which is the leak the "
            "attacks exploit."
        )

st.header("Memorisation: samples and their nearest training images")
st.markdown(
    "The model generates new images from pure noise (deterministic DDIM; a VE-SDE model: its predictor-corrector "
    "sampler). Each sample is shown next to its "
    "**nearest member** (a training image) and its **nearest non-member** (a held-out image) by L2 distance in "
    "pixel space. A sample that is a near copy of a training image is **direct evidence of memorisation**: the "
    "model reproduces what it was trained on instead of something new. Being consistently closer to members "
    "than to equally many held-out images of the same kind points the same way, more weakly."
)
with st.form("target.sample_form", border=True):
    s1, s2, s3 = st.columns(3)
    n = s1.number_input("Samples", 1, 64, 8, key="target.n")
    steps = s2.number_input("Sampling steps", 2, 200, 50, key="target.steps")
    sample_seed = s3.number_input("Seed", 0, 2**31 - 1, 0, key="target.seed")
    calls = sampling.unet_calls_per_step(target)
    st.caption(
        f"Sampler: {sampling.sampler_description(target, int(steps))}. Costs samples × steps"
        + (f" × {calls}" if calls > 1 else "")
        + f" UNet calls ({int(n) * int(steps) * calls:,} now); the default target does 8 × 50 in about a second on a CPU."
    )
    generate = st.form_submit_button("Generate samples", type="primary")
request = (target.fingerprint, int(n), int(steps), int(sample_seed))
if generate:
    state["target.samples"] = request
if state.get("target.samples") and state["target.samples"][0] == target.fingerprint:
    fp, n_req, steps_req, seed_req = state["target.samples"]
    try:
        with st.spinner(f"Generating {n_req} samples with {steps_req} sampling steps…", show_time=True):
            samples = _samples(fp, n_req, steps_req, seed_req, exp)
            mem = _memorisation(fp, exp.images.fingerprint, n_req, steps_req, seed_req, exp, samples)
    except Exception as exc:
        st.error(f"Sampling failed: {type(exc).__name__}: {exc}")
        st.stop()
    imgs = exp.images.images
    members_px, nonmembers_px = imgs[exp.is_member], imgs[~exp.is_member]
    closer = mem.n_closer_to_member
    m1, m2, m3 = st.columns(3)
    m1.metric("Closer to a member than to any non-member", f"{closer} of {n_req}")
    m2.metric("Median distance to nearest member", f"{np.median(mem.member_distance):.1f}")
    m3.metric(
        "Held-out images → nearest member (median)",
        f"{mem.heldout_median:.1f}",
        help="How close a real image the model never saw gets to the training set: the yardstick for "
        "'close'. Samples much closer than this to a member are (near) copies.",
    )
    st.caption(
        f"{n_req} samples, seed {seed_req}; sampler: {sampling.sampler_description(target, steps_req)}. Distances are L2 over uint8 pixels "
        f"({target.resolution}×{target.resolution}×{target.channels} values); identical images are at 0."
    )

    # one card per sample (sample | nearest member | nearest non-member), as many per row as fit
    with st.grid(min_column_width=3 * THUMB + 48, gap="medium", key="target.memorisation_grid"):
        for i in range(n_req):
            with st.container(border=True):
                triple = [samples[i], members_px[mem.member_index[i]], nonmembers_px[mem.nonmember_index[i]]]
                shown = [upscale_nearest(im, THUMB) for im in triple]
                st.image(shown, caption=[f"sample {i}", "member", "non-member"], width=THUMB, output_format="PNG")
                verdict = "member" if mem.member_distance[i] < mem.nonmember_distance[i] else "non-member"
                st.markdown(
                    f"member `{mem.member_id[i]}`: **{mem.member_distance[i]:.0f}**  \n"
                    f"non-member `{mem.nonmember_id[i]}`: **{mem.nonmember_distance[i]:.0f}**  \n"
                    f"closer to a **{verdict}**"
                )

    fig = memorisation_figure(mem)
    st.plotly_chart(fig, key="target.mem_chart", config={"displaylogo": False})
    download_figure(fig, pd.DataFrame(mem.rows()), "memorisation", "target.mem_dl")
    with st.expander("What am I looking at?"):
        st.markdown(
            "Orange: each sample's distance to the closest **training** image; blue: to the closest **held-out** "
            "image (the split has about as many of each, drawn from the same source). The dashed line is how close "
            "held-out real images typically get to a training image. Samples below that line and closer to members "
            "than to non-members are what memorisation looks like in pixel space. This is a qualitative check: the "
            "membership-inference attacks measure the same leak image by image, without generating anything."
        )
else:
    st.info("Press **Generate samples** to draw images from the model and find their nearest training images.")
