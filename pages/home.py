"""Start: what the lab is, where to go, and the model loading in the background meanwhile."""

from __future__ import annotations

import streamlit as st

from pages._common import DEFAULT_BUTTON, T2I_BUTTON, experiment_loading, on_t2i_target, use_embedded

st.title("Diffusion MIA lab")
st.markdown(
    "Was this image in the training set of that diffusion model? **Membership inference** attacks answer "
    "with a score, and this lab shows how well they do and **why they work**: a model that memorised its "
    "training images removes noise from them better than from images it never saw. Everything runs on "
    "the embedded model (a small DDPM trained on half of scikit-learn's 8x8 digits, which leaks on purpose), "
    "offline, on a CPU; bring your own diffusers model and images on the **Target** and **Data** pages."
)

with st.container(border=True):
    if on_t2i_target():
        st.markdown(
            "**Now on the tiny text-to-image target**: a Stable-Diffusion-shaped latent model (VAE, CLIP text "
            'encoder, conditional UNet) trained on 100 captioned 28x28 MNIST digits ("a handwritten seven"). '
            "Every page works on it; the Attack lab lets you choose the prompt the attacks condition on."
        )
        st.button(DEFAULT_BUTTON, key="home.use_default", on_click=use_embedded, args=("default",))
    else:
        st.markdown(
            "**Text-to-image models too**: a tiny Stable-Diffusion-shaped model ships with the lab (VAE, CLIP "
            "text encoder, conditional UNet, trained on captioned MNIST digits). One click makes it the target "
            "of every page, with its own member / non-member split."
        )
        st.button(T2I_BUTTON, key="home.use_t2i", on_click=use_embedded, args=("t2i",), icon=":material/image:")
    flash = st.session_state.pop("target.flash", None)
    if flash:
        st.success(flash, icon=":material/check_circle:")

PAGES = (
    (
        "pages/learn.py",
        "Learn",
        "🎓",
        "noise an image step by step, see the model denoise it; a member and a non-member side by side",
    ),
    (
        "pages/attack_lab.py",
        "Attack lab",
        "⚔️",
        "choose attacks by threat model (black box: ReDiffuse, GAN-era baselines; gray box: loss, SecMI, PIA, "
        "PIAN, SimA, SecMI-NN, quantile regression, likelihood, ELBO; white box: GSA), run them with progress",
    ),
    (
        "pages/compare.py",
        "Compare",
        "📈",
        "log-log ROC, metric table with intervals, score histograms, AUC per timestep",
    ),
    (
        "pages/sample.py",
        "Sample explorer",
        "🔬",
        "one image: its error curve, SecMI's reconstructions, its verdict under each attack",
    ),
    (
        "pages/was_my_image_used.py",
        "Was my image used?",
        "❓",
        "upload images and get a verdict at a false-positive budget",
    ),
    ("pages/presenter.py", "Presenter mode", "🎤", "big single charts and keyboard stepping for a talk"),
    ("pages/target.py", "Target", "🧠", "the model card, samples from the model next to their nearest training images"),
    ("pages/data.py", "Data", "🗂️", "the member / non-member split, galleries, other image sources"),
    (
        "pages/train.py",
        "Train",
        "🏋️",
        "train your own target: augmentation, differential privacy (DP-SGD), live loss curve",
    ),
    (
        "pages/factors.py",
        "Factors & defences",
        "🛡️",
        "what makes a model leak: training steps, data size, DP, augmentation, with the privacy-utility trade-off",
    ),
)
for path, title, icon, what in PAGES:
    left, right = st.columns([1, 3], vertical_alignment="center")
    left.page_link(path, label=title, icon=icon)
    right.caption(what)


def draw_status(future) -> None:
    if not future.done():
        st.info("Loading the model and its images in the background…", icon="⏳")
    elif future.exception() is not None:
        st.error(f"The target or data could not be loaded: {future.exception()}")
    else:
        exp = future.result()
        st.success(
            f"Model ready: **{exp.target.source}**, {exp.target.n_parameters:,} parameters, "
            f"{int(exp.is_member.sum()):,} members and {int((~exp.is_member).sum()):,} non-members. "
            "Start with **Learn**, or open **Compare** for the precomputed results.",
            icon="✅",
        )


loading = experiment_loading()
if loading.done():
    draw_status(loading)
else:

    @st.fragment(run_every=1.0)
    def poll_loading() -> None:
        """Only while loading: redraws the status every second, one full rerun once ready."""
        if experiment_loading().done():
            st.rerun()
        draw_status(experiment_loading())

    poll_loading()
