"""Learn: what membership inference on a diffusion model is, shown on the session's target.

Four views: (1) forward noising of one image, (2) the model's one-step denoising of it,
(3) a member and a non-member under the same noise, (4) what each attack measures.
Views 1-2 and view 3 are fragments: moving a slider reruns only that view. The first run costs
a handful of UNet calls on a few images (no sampling, no sweep over the split).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from mia_core.lab import teaching as explain
from mia_core.lab.experiment import Experiment
from mia_core.views import images as VI
from mia_core.views import learn as VL
from mia_core.views.attack_info import threat_models
from mia_core.views.results import CurveLine, error_curve_figure
from mia_core.views.style import MEMBER_COLOR, NONMEMBER_COLOR, format_number, format_numbers
from pages._common import download_figure, try_experiment

SIZE = VI.DISPLAY_SIZE
CURVE_DRAWS = 4  # noise draws averaged in the per-t curve of view 3 (2 images x 10 t x 4 = 80 UNet inputs)
POPULATION = 100  # members and non-members in the optional population curve
ANIMATION_FRAMES = 25  # timesteps in the client-side animation of the forward process


def _label(exp: Experiment, index: int) -> str:
    return f"{exp.ids[index]} ({'member' if exp.is_member[index] else 'non-member'})"


@st.cache_data(max_entries=32, show_spinner=False)
def _pair_curve(
    fingerprint: str, images_fp: str, ids: tuple[str, str], seed: int, _exp: Experiment, _indices: tuple[int, int]
):
    """Per-t errors of a member / non-member pair (cached per target, pair and seed)."""
    return explain.reconstruction_error_curve(
        _exp.target, explain.images_x0(_exp, _indices), explain.LEARN_SWEEP, seed, draws=CURVE_DRAWS
    )


@st.cache_data(max_entries=8, show_spinner="Sweeping 100 members and 100 non-members…")
def _population_curve(fingerprint: str, images_fp: str, seed: int, _exp: Experiment):
    members, nonmembers = explain.population_indices(_exp, POPULATION, seed)
    idx = np.concatenate([members, nonmembers])
    curve = explain.reconstruction_error_curve(_exp.target, explain.images_x0(_exp, idx), explain.LEARN_SWEEP, seed)
    return curve, len(members)


@st.cache_data(max_entries=16, show_spinner=False)
def _animation_frames(fingerprint: str, images_fp: str, image_id: str, seed: int, _exp: Experiment, _index: int):
    """(frames, timesteps, abars) of the forward process of one image (no model call; cached per image and seed)."""
    sched = _exp.target.schedule
    ts = np.unique(np.linspace(0, sched.num_timesteps - 1, ANIMATION_FRAMES).round().astype(int))
    x0 = explain.images_x0(_exp, [_index])[0]
    noise = explain.fixed_noise(explain.noise_shape(_exp.target, x0.shape), seed)
    frames = [VI.display_image(explain.noised(x0, int(t), noise, sched), SIZE) for t in ts]
    abars = [explain.signal_noise_weights(sched, int(t))[0] for t in ts]
    return frames, ts.tolist(), abars


def _forward_animation(exp: Experiment, index: int, seed: int):
    fps = (exp.target.fingerprint, exp.images.fingerprint)
    frames, ts, abars = _animation_frames(*fps, exp.ids[index], seed, exp, index)
    return VL.forward_animation_figure(frames, ts, abars)


# -- the page -----------------------------------------------------------------------------

st.title("Learn: membership inference on diffusion models")
st.markdown(
    "A diffusion model is trained to **remove noise**: take a training image, add a random amount of "
    "Gaussian noise, and ask the network (a UNet) which noise was added. **Membership inference** asks: "
    "*was this particular image in the training set?* A model that has **memorised** its training "
    "images removes noise from them better than from images it never saw, and every attack in this lab "
    "turns that gap into a score. The four views below show it on the current target."
)

exp = try_experiment()
if exp is None:
    st.stop()

seed = int(st.session_state["cfg.seed"])
schedule = exp.target.schedule
T = schedule.num_timesteps
VE = explain.is_score_sde(exp.target)  # a VE-SDE score model: sigma(t) instead of abar_t (teaching module doc)
TEXT = VL.process_text(exp.target.kind if VE else "ddpm")
st.caption(
    f"Target **{exp.target.source}** ({exp.target.n_parameters:,} parameters, "
    f"{exp.target.resolution}×{exp.target.resolution}, {exp.target.channels} channel(s)) · "
    f"{int(exp.is_member.sum()):,} members and {int((~exp.is_member).sum()):,} non-members · noise seed {seed} "
    "(change the target on the **Target** page)."
)

if getattr(exp.target, "kind", "") == "t2i":  # one line on what the views below show on a latent text-to-image model
    st.info(
        "This text-to-image target denoises **VAE latents**: in views 1–3, x_t and x̂₀ are latents decoded by "
        "its VAE for display, the noise is a latent, the errors are the latents', and the model is conditioned on "
        "the empty prompt; view 3b compares the image's own caption, the empty prompt and a wrong caption.",
        icon=":material/layers:",
    )

# Widget defaults, valid for the current experiment (a new target or split may change the ids).
_default_m, _default_nm = explain.member_vs_nonmember(exp)
_state = st.session_state
if _state.get("learn.image") not in exp.ids:
    _state["learn.image"] = exp.ids[_default_m]
if _state.get("learn.member") not in exp.ids or not exp.is_member[exp.ids.index(_state["learn.member"])]:
    _state["learn.member"] = exp.ids[_default_m]
if _state.get("learn.nonmember") not in exp.ids or exp.is_member[exp.ids.index(_state["learn.nonmember"])]:
    _state["learn.nonmember"] = exp.ids[_default_nm]


def _pick_random(member: bool) -> None:
    rng = np.random.default_rng()
    _state["learn.image"] = exp.ids[explain.random_index(exp, member, rng)]


@st.fragment
def noising_view() -> None:
    st.header("1 · Adding noise: the forward process")
    pick, buttons = st.columns([3, 2], vertical_alignment="bottom")
    pick.selectbox(
        "Image",
        exp.ids,
        key="learn.image",
        format_func=lambda i: _label(exp, exp.ids.index(i)),
        help="Members were in the target's training set; non-members were held out.",
    )
    b1, b2 = buttons.columns(2)
    b1.button("Random member", key="learn.rand_m", on_click=_pick_random, args=(True,), width="stretch")
    b2.button("Random non-member", key="learn.rand_nm", on_click=_pick_random, args=(False,), width="stretch")
    t = st.slider(
        "Timestep t",
        0,
        T - 1,
        200,
        key="learn.t",
        help="0 = almost clean, T-1 = almost pure noise. Attacks look at small-to-middle t.",
    )
    st.latex(TEXT["forward"])
    if VE:
        t_cont, sigma = explain.ve_noise_level(schedule, t)
        m1, m2, m3 = st.columns(3)
        m1.metric("continuous time t", f"{t_cont:.4f}", help=f"Step i maps to t_i = eps + (1 - eps) i / {T - 1}.")
        m2.metric(r"noise level $\sigma(t)$", format_number(sigma, 4), help="Standard deviation of the added noise.")
        m3.metric(
            "noise / data range",
            f"{format_number(sigma, 3)}×",
            help="The data lie in [0, 1]: σ relative to that range.",
        )
        st.caption(
            f"At step {t} (t = {t_cont:.4f}) the image keeps all of its amplitude and gets Gaussian noise of standard "
            f"deviation σ = {format_number(sigma, 4)} on top (data in [0, 1]): a VE-SDE never shrinks the image, the "
            f"noise grows until it drowns it (σ_max = {schedule.sigma_max:g})."
        )
    else:
        abar, w_signal, w_noise = explain.signal_noise_weights(schedule, t)
        m1, m2, m3 = st.columns(3)
        abar_s, signal_s, noise_s = (format_number(v, 4) for v in (abar, w_signal, w_noise))
        m1.metric(r"$\bar\alpha_t$ (abar_t)", abar_s, help="Cumulative product of (1 - beta_s) for s = 0..t.")
        m2.metric(r"signal weight $\sqrt{\bar\alpha_t}$", signal_s)
        m3.metric(r"noise weight $\sqrt{1-\bar\alpha_t}$", noise_s)
        st.caption(
            f"At t = {t}, x_t keeps {format_number(100 * w_signal)} % of the image's amplitude and is "
            f"{format_number(100 * w_noise)} % noise (the squares add to 1, so x_t keeps unit variance). "
            f"abar_t = {abar_s}."
        )

    index = exp.ids.index(_state["learn.image"])
    x0 = explain.images_x0(exp, [index])[0]
    noise = explain.fixed_noise(explain.noise_shape(exp.target, x0.shape), seed)
    try:
        x_t, eps_pred, x0_hat = explain.one_step_denoise(exp.target, x0, t, noise)
    except Exception as exc:  # a strange target must not take the page down
        st.error(f"The model could not denoise this image: {exc}")
        return
    c1, c2, c3 = st.columns(3)
    c1.image(VI.display_image(x0, SIZE), caption=f"x₀: {_label(exp, index)}", width=SIZE, output_format="PNG")
    c2.image(
        VI.upscale_nearest(VI.noise_to_uint8(noise), SIZE),
        caption=TEXT["noise_caption"],
        width=SIZE,
        output_format="PNG",
    )
    c3.image(VI.display_image(x_t, SIZE), caption=f"x_t at t = {t}", width=SIZE, output_format="PNG")
    with st.expander("▶ Play the forward process over t", expanded=False):
        if exp.target.latent or VE:  # latent x_t, or sigma(t) instead of abar_t: no pixel animation here
            st.caption(
                "The animation shows a pixel-space DDPM's forward process; it is not available for this target "
                "(a latent or a VE-SDE model)."
            )
        else:
            st.plotly_chart(_forward_animation(exp, index, seed), key="learn.animation", config={"displaylogo": False})
        st.caption(
            f"{ANIMATION_FRAMES} timesteps from 0 to {T - 1}, the same image and the same noise ε as above; "
            "the animation runs in your browser (no model call, no server round trip per frame)."
        )
    if VE:
        with st.expander("How σ(t) grows with t"):
            steps_all, sigma_all = explain.ve_sigma_table(schedule)
            fig = VL.sigma_figure(steps_all, sigma_all, t)
            st.plotly_chart(fig, key="learn.sigma_chart", config={"displaylogo": False})
            download_figure(
                fig, pd.DataFrame({"step": steps_all, "sigma": sigma_all}), "sigma_schedule", "learn.sigma_dl"
            )
            st.caption(f"Schedule: {schedule.description}. The noise image z is the same at every t.")
    else:
        with st.expander("How ᾱ_t falls with t"):
            fig = VL.abar_figure(schedule, t)
            st.plotly_chart(fig, key="learn.abar_chart", config={"displaylogo": False})
            abar_all = schedule.alphas_cumprod.numpy()
            download_figure(
                fig,
                pd.DataFrame(
                    {
                        "t": np.arange(T),
                        "abar": abar_all,
                        "signal_weight": np.sqrt(abar_all),
                        "noise_weight": np.sqrt(1 - abar_all),
                    }
                ),
                "abar_schedule",
                "learn.abar_dl",
            )
            st.caption(
                f"Schedule: {schedule.description}. The noise is the same image ε at every t, so only the "
                "mixing weights change as you move the slider."
            )

    st.header("2 · One denoising step by the model")
    st.latex(TEXT["denoise"])
    d1, d2, d3, d4 = st.columns(4)
    d1.image(VI.display_image(x_t, SIZE), caption=f"x_t (input, t = {t})", width=SIZE, output_format="PNG")
    d2.image(
        VI.upscale_nearest(VI.noise_to_uint8(eps_pred), SIZE),
        caption=TEXT["pred_caption"],
        width=SIZE,
        output_format="PNG",
    )
    d3.image(VI.display_image(x0_hat, SIZE), caption="x̂₀: one-step reconstruction", width=SIZE, output_format="PNG")
    d4.image(VI.display_image(x0, SIZE), caption="x₀: the original", width=SIZE, output_format="PNG")
    eps_err = float((eps_pred - noise).pow(2).mean())
    x0_err = float((x0_hat - x0).pow(2).mean())
    e1, e2 = st.columns(2)
    e1.metric(TEXT["noise_error"], format_number(eps_err), help=TEXT["noise_error_help"])
    e2.metric("reconstruction error mean (x̂₀ − x₀)²", format_number(x0_err), help=TEXT["x0_error_help"])
    st.caption(TEXT["denoise_caption"])


@st.fragment
def comparison_view() -> None:
    st.header("3 · Member vs non-member: who is reconstructed better?")
    members = [i for i, m in zip(exp.ids, exp.is_member) if m]
    nonmembers = [i for i, m in zip(exp.ids, exp.is_member) if not m]
    c_m, c_nm, c_t = st.columns([2, 2, 3])
    c_m.selectbox("Member", members, key="learn.member")
    c_nm.selectbox("Non-member", nonmembers, key="learn.nonmember")
    t = c_t.slider("Timestep t for both", 0, T - 1, 200, key="learn.cmp_t")
    m_idx, nm_idx = explain.member_vs_nonmember(exp, _state["learn.member"], _state["learn.nonmember"])
    x0 = explain.images_x0(exp, [m_idx, nm_idx])
    noise = explain.fixed_noise(explain.noise_shape(exp.target, x0.shape[1:]), seed)
    try:
        x_t, eps_pred, x0_hat = explain.one_step_denoise(exp.target, x0, t, noise)
        curve = _pair_curve(
            exp.target.fingerprint,
            exp.images.fingerprint,
            (exp.ids[m_idx], exp.ids[nm_idx]),
            seed,
            exp,
            (m_idx, nm_idx),
        )
    except Exception as exc:
        st.error(f"The model could not denoise these images: {exc}")
        return
    eps_err = (eps_pred - noise).pow(2).flatten(1).mean(1).tolist()
    x0_err = (x0_hat - x0).pow(2).flatten(1).mean(1).tolist()

    x0_text, eps_text = format_numbers(x0_err), format_numbers(eps_err)
    for k, who in ((0, "member"), (1, "non-member")):
        st.markdown(f"**{who.capitalize()}** `{exp.ids[(m_idx, nm_idx)[k]]}`")
        # one image per column, 160 px, with a gap between them (not a strip of touching thumbnails)
        cells = st.columns([1, 1, 1, 1.4], gap="medium")
        for cell, img, caption in zip(cells, (x0[k], x_t[k], x0_hat[k]), ("x₀", f"x_t (t={t})", "x̂₀")):
            cell.image(VI.display_image(img, SIZE), caption=caption, width=SIZE, output_format="PNG")
        cells[3].metric(f"{who} reconstruction error", x0_text[k])
        cells[3].metric(f"{who} noise error", eps_text[k])
    bars = VL.error_bars_figure(x0_err[0], x0_err[1], title=f"Reconstruction error at t = {t}")
    lower = "member" if x0_err[0] < x0_err[1] else "non-member"
    ratio = max(x0_err) / max(min(x0_err), 1e-12)
    chart, words = st.columns([3, 4], vertical_alignment="center")
    chart.plotly_chart(bars, key="learn.bars", config={"displaylogo": False})
    words.markdown(
        f"At t = {t} with the same noise, the **{lower}** is reconstructed better: reconstruction error "
        f"{x0_text[0]} (member) vs {x0_text[1]} (non-member), {ratio:.3g}× lower."
    )
    download_figure(
        bars,
        pd.DataFrame(
            {
                "image": [exp.ids[m_idx], exp.ids[nm_idx]],
                "member": [True, False],
                "t": t,
                "x0_error": x0_err,
                "eps_error": eps_err,
            }
        ),
        f"errors_t{t}",
        "learn.bars_dl",
    )

    st.subheader("Across timesteps")
    show_pop = st.toggle(
        f"Also show {POPULATION} members and {POPULATION} non-members (median and IQR band)",
        key="learn.population",
        help=f"{len(explain.LEARN_SWEEP) * 2 * POPULATION:,} UNet calls, a few seconds on a CPU.",
    )
    population = {}
    if show_pop:
        pop, n_m = _population_curve(exp.target.fingerprint, exp.images.fingerprint, seed, exp)
        pop_err = pop.eps_error if TEXT["curve"] == "eps" else pop.x0_error
        population = dict(trace=pop_err, is_member=np.arange(pop_err.shape[0]) < n_m)
    shown = curve.eps_error if TEXT["curve"] == "eps" else curve.x0_error  # VE: the DSM error over t
    fig = error_curve_figure(
        curve.timesteps,
        **population,
        t_lines=[(t, f"t = {t}")],
        ylabel=TEXT["curve_label"],
        lines=[
            CurveLine(f"member {exp.ids[m_idx]}", shown[0], MEMBER_COLOR, exp.ids[m_idx]),
            CurveLine(f"non-member {exp.ids[nm_idx]}", shown[1], NONMEMBER_COLOR, exp.ids[nm_idx]),
        ],
    )
    st.plotly_chart(fig, key="learn.curve", config={"displaylogo": False})
    data = pd.DataFrame(
        {
            "t": curve.timesteps,
            "member_x0_error": curve.x0_error[0],
            "nonmember_x0_error": curve.x0_error[1],
            "member_eps_error": curve.eps_error[0],
            "nonmember_eps_error": curve.eps_error[1],
        }
    )
    download_figure(fig, data, "error_curve", "learn.curve_dl")
    with st.expander("What am I looking at?"):
        st.markdown(
            f"Both images get **the same noise image** ε and the same t, so any difference comes from the model. "
            f"During training the model saw each member many times at random t, so it learned to undo noise on "
            f"*those exact images*: their reconstruction error is typically lower. The curve averages "
            f"{CURVE_DRAWS} noise draws at {len(explain.LEARN_SWEEP)} timesteps (log scale: the error grows with t "
            "because the model must invent more of the image).\n\n"
            "One pair can go either way at some t: the gap is a **tendency over many images**, which is why the "
            "attacks are judged by ROC curves over the whole split. Switch on the population view to see the "
            "member and non-member bands. Where the bands separate most is where an attack should look."
        )


@st.cache_data(max_entries=16, show_spinner="Three error curves of one image (3 prompts × 10 timesteps)…")
def _caption_curves(fingerprint: str, images_fp: str, image_id: str, wrong: str, seed: int, _exp: Experiment, _i: int):
    """(timesteps, {curve name: (K,) latent noise errors}) of one image under three prompts (cached per image)."""
    curves = explain.caption_error_curves(
        _exp.target,
        explain.images_x0(_exp, [_i]),
        _exp.images.captions[_i],
        wrong,
        explain.LEARN_SWEEP,
        seed,
        draws=CURVE_DRAWS,
    )
    return curves[next(iter(curves))].timesteps, {k: c.eps_error[0] for k, c in curves.items()}


@st.fragment
def conditioning_view() -> None:
    """A text-to-image target: one image's error curve under its own caption, the empty prompt, a wrong caption."""
    st.header("3b · Conditioning: the same image, three prompts")
    if exp.images.captions is None:
        st.info("These images carry no captions, so there is no own caption to compare with (use captioned data).")
        return
    c_img, c_words = st.columns([2, 5])
    image_id = c_img.selectbox(
        "Image", list(exp.ids), key="learn.cond_image", format_func=lambda i: _label(exp, exp.ids.index(i))
    )
    i = exp.ids.index(image_id)
    caption = str(exp.images.captions[i])
    try:
        wrong = explain.wrong_caption(caption, exp.images.captions, seed)
        ts, curves = _caption_curves(exp.target.fingerprint, exp.images.fingerprint, image_id, wrong, seed, exp, i)
    except ValueError as exc:
        st.info(f"Not shown: {exc}.")
        return
    shown = VI.display_image(explain.images_x0(exp, [i])[0], SIZE)
    c_img.image(shown, caption=f"“{caption}”", width=SIZE, output_format="PNG")
    prompts = dict(zip(explain.CAPTION_CURVES, (caption, "", wrong)))
    fig = VL.caption_curves_figure(ts, curves, prompts=prompts)
    c_words.plotly_chart(fig, key="learn.cond_curves", config={"displaylogo": False})
    download_figure(fig, pd.DataFrame({"t": ts, **curves}), "caption_curves", "learn.cond_dl")
    st.markdown(
        f"A text-to-image model predicts the noise **given a prompt**. The same noise is added to "
        f"`{image_id}` ({'a member' if exp.is_member[i] else 'a non-member'}) and the model denoises it three "
        "times: with the image's **own caption**, with the **empty prompt** and with a **wrong caption**. "
        "A training image was learned *together with its caption*, so its own caption lowers its error the "
        "most; the gap between the own-caption and empty-prompt curves is what **CLiD** measures. Each "
        "attack run chooses which prompt to condition on (Attack lab); the result labels say which."
    )


noising_view()
comparison_view()
if getattr(exp.target, "kind", "") == "t2i":
    conditioning_view()

st.header("4 · What the attacks do")
st.markdown(
    "Every attack turns the gap you just saw into one **score per image, higher = more member-like**, "
    "then a threshold on the score decides *member* or *non-member*. They differ in what they measure "
    "and in how many UNet calls they spend per image. Because a false accusation is costly, attacks "
    "are compared by the **true-positive rate at a low false-positive rate** (1 %, 0.1 %), not just AUC."
)
summary = pd.DataFrame(VL.attack_summary()).drop(columns=["name"])
st.table(summary.set_index("attack"))
st.download_button(
    "Table (CSV)",
    data=lambda: summary.to_csv(index=False),
    file_name="attacks.csv",
    mime="text/csv",
    key="learn.attacks_dl",
    on_click="ignore",
    icon=":material/download:",
)

st.header("5 · Threat models: what the attacker can touch")
st.markdown(
    "An attack's strength depends on the access it assumes. A **black-box** attacker only sees images; a "
    "**gray-box** one can query the model's noise predictions; a **white-box** one holds the weights and their "
    "gradients. Weaker access is the more realistic threat for a deployed model; stronger access bounds what "
    "a leak could reveal. The old GAN attacks (nearest generated sample) are black box too: the SecMI paper "
    "found them near chance on diffusion models, which is why diffusion-specific attacks exist."
)
st.table(pd.DataFrame(threat_models()).drop(columns=["level", "short"]).set_index("threat model"))
st.page_link("pages/attack_lab.py", label="Run them in the Attack lab", icon="⚔️")
