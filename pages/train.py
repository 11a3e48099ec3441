"""Train: train a target DDPM on the members of a split, in the background, then attack it.

The form batches every edit; "Train" submits the run to the server's one worker thread (the same
one the attacks use), so the page stays usable, the progress and the live loss curve survive page
changes, and "Cancel" stops it between logged steps. The result is a diffusers folder under
runs/targets/<name> with its split.json and train_log.json, exactly what ``mia train`` writes.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import streamlit as st

from mia_core.data import DIGITS_SOURCE, resolve_data
from mia_core.lab import plan
from mia_core.lab.jobs import (
    live_log_every,
    recipe_key,
    shown_path,
    submit_training,
    targets_dir,
    trained_targets,
    training_job,
)
from mia_core.lab.train import (
    AUGMENT_LABELS,
    PRESETS,
    SCHEDULES,
    TrainConfig,
    measure_steps_per_second,
    preset_config,
    train_command,
)
from mia_core.target import pick_device
from mia_core.views.learn import loss_curve_figure
from pages._common import get_worker, poll_job, running_job_box

s = st.session_state
JOB_KEY = "train.job"  # the id of this session's latest training job
POLL_KEY = "train.polling"  # the job id the last full run saw active (rerun once when it ends)
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
DEFAULTS = TrainConfig()


@st.cache_resource(max_entries=4, show_spinner=False)
def _data(spec: str, seed: int):
    """(images, split) of a --data value, loaded once per (spec, seed)."""
    return resolve_data(spec, seed=seed)


def _config(v: dict) -> TrainConfig:
    """The TrainConfig of the form's values (raises ValueError with TrainConfig's message)."""
    return preset_config(
        v["preset"],
        steps=int(v["steps"]),
        batch_size=int(v["batch_size"]),
        lr=float(v["lr"]),
        ema_decay=float(v["ema_decay"]),
        schedule=v["schedule"],
        augment=v["augment"],
        dp_epsilon=float(v["dp_epsilon"]) if v["dp"] else None,
        dp_delta=float(v["dp_delta"]) if v["dp_delta"] else None,  # empty: 1 / N^1.1
        dp_max_grad_norm=float(v["dp_max_grad_norm"]),
        seed=int(v["seed"]),
        log_every=live_log_every(int(v["steps"])),
    )


def _measure(data: str, cfg: TrainConfig, device: str) -> float:
    """Steps per second of this recipe here (a few real training steps)."""
    images, split = _data(data, cfg.seed)
    return measure_steps_per_second(images.subset(split.member_ids), split, cfg, device=device)


# -- the page --------------------------------------------------------------------------------------

st.title("🏋️ Train a target")
st.caption(
    "Train your own diffusion model on the members of a split, then attack it. Change one thing at a time "
    "(training length, augmentation, differential privacy) and compare the attacks' AUC: that is how the "
    "**Factors & defences** page's studies were made. Training runs in the background on this server."
)

worker = get_worker()
device = pick_device(None).type
if device == "cpu":
    st.warning(
        "No GPU here: training runs on the CPU and is slow (the embedded default took 12,000 steps; the shipped "
        "studies' small models took 1,000-8,000). Press **Estimate time** to measure this recipe on this machine "
        "before you start.",
        icon=":material/hourglass_top:",
    )

with st.form("train.form"):
    c1, c2 = st.columns([2, 1])
    c1.text_input(
        "Data",
        value=str(s.get("cfg.data", "default")),
        key="train.data",
        help=f"The session's data source (as on the Data page) or: 'default', {DIGITS_SOURCE!r}, a split manifest "
        "(.json), an .npz with an 'images' array (and optionally 'is_member'), or a folder of images. "
        "Only the split's members are trained on; the non-members stay unseen for the attacks.",
    )
    c2.text_input(
        "Name",
        value="my-target",
        key="train.name",
        help=f"The target is saved to {shown_path(targets_dir())}/<name> (letters, digits, . _ -).",
    )
    st.radio(
        "Model size",
        list(PRESETS),
        key="train.preset",
        horizontal=True,
        index=1,
        format_func=lambda p: f"{p} — {PRESETS[p][2]}",
    )
    c1, c2, c3, c4 = st.columns(4)
    c1.number_input(
        "Training steps",
        1,
        1_000_000,
        DEFAULTS.steps,
        step=500,
        key="train.steps",
        help="More steps fit the members more closely: better samples, more leakage.",
    )
    c2.number_input(
        "Batch size",
        1,
        4096,
        DEFAULTS.batch_size,
        step=16,
        key="train.batch_size",
        help="Under DP-SGD the expected batch size: each member joins a step with probability "
        "batch size / N (Poisson sampling), as the privacy accountant assumes.",
    )
    c3.number_input("Learning rate", 1e-6, 1.0, DEFAULTS.lr, step=1e-4, format="%.5f", key="train.lr")
    c4.number_input(
        "EMA decay",
        0.0,
        0.99999,
        DEFAULTS.ema_decay,
        step=0.001,
        format="%.4f",
        key="train.ema_decay",
        help="The saved (and attacked) weights are this exponential moving average of the trained ones.",
    )
    c1, c2, c3, _ = st.columns(4)
    c1.selectbox(
        "Noise schedule",
        SCHEDULES,
        key="train.schedule",
        index=SCHEDULES.index(DEFAULTS.schedule),
        help="How fast noise is added over the T = 1000 timesteps: linear betas (DDPM, Ho et al. 2020) "
        "or cosine (Nichol & Dhariwal 2021), which destroys the image more slowly.",
    )
    c2.selectbox(
        "Augmentation",
        list(AUGMENT_LABELS),
        format_func=AUGMENT_LABELS.get,
        key="train.augment",
        index=list(AUGMENT_LABELS).index(DEFAULTS.augment),
        help="Random changes to each training image at every step: a defence against memorisation.",
    )
    c3.number_input(
        "Seed",
        0,
        2**31 - 1,
        DEFAULTS.seed,
        key="train.seed",
        help="Seeds the weights, the batches and the noise (and a random split of the data, if any).",
    )
    st.checkbox(
        "Train with differential privacy (DP-SGD, Opacus), with the ε, δ and C below",
        key="train.dp",
        help="Clips every example's gradient and adds Gaussian noise calibrated to the budget below.",
    )
    c1, c2, c3, _ = st.columns(4)
    c1.number_input(
        "ε (privacy budget)",
        0.01,
        1000.0,
        8.0,
        step=1.0,
        key="train.dp_epsilon",
        help="Smaller = stronger privacy and more noise. Used only with DP on.",
    )
    c2.number_input(
        "δ",
        1e-12,
        0.1,
        DEFAULTS.dp_delta,
        step=1e-5,
        format="%.1e",
        key="train.dp_delta",
        placeholder="auto: 1 / N^1.1",
        help="The chance the guarantee fails; it must be well below 1 / N for N members. "
        "Empty: 1 / N^1.1 (5.6e-4 for the 898 digits).",
    )
    c3.number_input(
        "Clip norm C",
        0.001,
        100.0,
        DEFAULTS.dp_max_grad_norm,
        step=0.1,
        key="train.dp_max_grad_norm",
        help="Each example's gradient is clipped to this L2 norm before noise is added.",
    )
    buttons = st.container(horizontal=True)
    estimate = buttons.form_submit_button(
        "Estimate time",
        icon=":material/timer:",
        key="train.estimate",
        help="Runs a few training steps of this recipe here and extrapolates.",
    )
    submitted = buttons.form_submit_button("Train", type="primary", icon=":material/play_arrow:", key="train.run")

values = {
    k: s[f"train.{k}"]
    for k in (
        "data",
        "name",
        "preset",
        "steps",
        "batch_size",
        "lr",
        "ema_decay",
        "schedule",
        "augment",
        "seed",
        "dp",
        "dp_epsilon",
        "dp_delta",
        "dp_max_grad_norm",
    )
}
data_spec = values["data"].strip()
out_dir = targets_dir() / values["name"].strip()
errors: list[str] = []
try:
    cfg = _config(values)
except (ValueError, TypeError) as exc:
    cfg, errors = None, [f"Training settings: {exc}"]
if not NAME_RE.match(values["name"].strip()):
    errors.append(f"Name {values['name']!r}: use 1–64 letters, digits, '.', '_' or '-' (it becomes a folder name).")

if cfg is not None:
    st.markdown("**The same training from the command line** (copy it to run on a GPU machine):")
    st.code(train_command(data_spec, shown_path(out_dir), cfg), language="bash", wrap_lines=True)

if estimate and not errors:
    try:
        with st.spinner("Timing a few training steps…", show_time=True):
            rate = _measure(data_spec, cfg, device)
        s["train.rate"] = (recipe_key(data_spec, cfg), rate)
    except Exception as exc:  # bad data, a recipe the trainer refuses: say so, never a traceback
        errors.append(f"Could not time this recipe: {type(exc).__name__}: {exc}")
if cfg is not None and s.get("train.rate") and s["train.rate"][0] == recipe_key(data_spec, cfg):
    rate = s["train.rate"][1]
    st.info(
        f"Measured **{rate:,.1f} training steps/s** on this machine ({device}) for this recipe: "
        f"{cfg.steps:,} steps take **about {plan.format_duration(cfg.steps / rate)}**.",
        icon=":material/timer:",
    )


def _start() -> None:
    """Load the data and submit the training to the worker (mia_core.lab.jobs.submit_training)."""
    images, split = _data(data_spec, cfg.seed)
    job = submit_training(
        worker,
        images.subset(split.member_ids),
        split,
        cfg,
        out_dir,
        data=data_spec,
        device=device,
        name=values["name"].strip(),
    )
    s[JOB_KEY] = job.job_id


if submitted and not errors:
    try:
        _start()
    except Exception as exc:
        errors.append(f"Could not start: {type(exc).__name__}: {exc}")
    else:
        st.rerun()
if errors and (submitted or estimate):
    st.error("Nothing was started. Please fix:\n\n" + "\n\n".join(f"- {e}" for e in errors))


def _use(folder: str) -> None:
    """Button callback: make the trained folder the session's target and its split the session's data."""
    s["cfg.target"] = folder
    s["cfg.data"] = str(Path(folder) / "split.json")
    s["sel.sample"] = None
    s.pop("target.source", None)  # the Target page reopens on the new target's kind
    s["train.flash"] = folder


# -- the job's progress --------------------------------------------------------------------------

job_id = s.get(JOB_KEY)


def _running(job) -> None:
    """Progress, live loss curve and Cancel while training."""
    live = training_job(job.job_id)
    rate = f" · {live.steps_per_second:,.1f} steps/s" if live and live.steps_per_second else ""

    def live_curve(box) -> None:
        if live is not None and len(live.curve) > 1:  # one point draws no line
            box.plotly_chart(
                loss_curve_figure({"loss_curve": list(live.curve)}),
                key="train.live_loss",
                config={"displaylogo": False},
            )

    running_job_box(
        worker,
        job,
        (job.message or "Starting…") + rate,
        cancel_key="train.cancel",
        extra=live_curve,
        cancel_help="Stops at the next logged step; nothing is saved.",
        leave_note="You can leave this page: training continues on the server and this page shows it again "
        "when you come back.",
    )


poll_job(worker, job_id, POLL_KEY, running=_running)

# -- the outcome (drawn by full runs, so that "Use this target" reruns the whole page) ----------------

job, live = (worker.get(job_id), training_job(job_id)) if job_id else (None, None)
if job is not None and live is not None and not job.active:
    if job.status == "done":
        st.success(f"Done — {job.message}. Saved to `{shown_path(live.out_dir)}`.", icon=":material/check_circle:")
        fig = loss_curve_figure({"loss_curve": list(live.curve)})
        if fig is not None:
            st.plotly_chart(fig, key="train.final_loss", config={"displaylogo": False})
        c1, c2 = st.columns([1, 3], vertical_alignment="center")
        c1.button(
            "Use this target",
            type="primary",
            key="train.use",
            on_click=_use,
            args=(str(live.out_dir.resolve()),),
            icon=":material/target:",
            help="Makes it the session's target, with its own split as the data, for every other page.",
        )
        c2.caption(
            "Then open the **Attack lab** to attack it. Its non-members were never trained on, so they are "
            "a fair comparison."
        )
    elif job.status == "cancelled":
        st.warning(f"Cancelled: {job.message or 'nothing was saved'}.", icon=":material/stop_circle:")
    elif job.status == "failed":
        st.error(f"Training failed: {job.error}", icon=":material/error:")
        with st.expander("Traceback (for a bug report)"):
            st.code(job.message or "no traceback", language="text")

flash = s.pop("train.flash", None)
if flash:
    st.success(f"The session now attacks `{flash}` on its own split.", icon=":material/check_circle:")
    st.page_link("pages/attack_lab.py", label="Attack it in the Attack lab", icon="⚔️")

# -- what is already trained -----------------------------------------------------------------------

rows = trained_targets()
if rows:
    st.subheader("Trained targets")
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", key="train.trained")
    st.caption("Choose one on the **Target** page (Local diffusers folder) to attack it.")
