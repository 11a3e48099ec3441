"""Train: train a target DDPM on the members of a split, in the background, then attack it.

The form batches every edit; "Train" submits the run to the server's one worker thread (the same
one the attacks use), so the page stays usable, the progress and the live loss curve survive page
changes, and "Cancel" stops it between logged steps. The result is a diffusers folder under
runs/targets/<name> with its split.json and train_log.json, exactly what ``mia train`` writes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from dataclasses import asdict, replace
from pathlib import Path

import pandas as pd
import streamlit as st

from mia_core.lab import plan
from mia_core.data import DIGITS_SOURCE, resolve_data
from mia_core.lab.teaching import loss_curve_figure
from mia_core.lab.runs import Cancelled
from mia_core.paths import REPO_DIR
from mia_core.target import pick_device
from mia_core.lab.train import TrainConfig, measure_steps_per_second, train, train_command
from pages._common import get_worker, running_job_box

s = st.session_state
JOB_KEY = "train.job"  # the id of this session's latest training job
POLL_KEY = "train.polling"  # the job id the last full run saw active (rerun once when it ends)
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

#: Model size presets: (UNet block_out_channels, layers_per_block, what it is).
PRESETS = {
    "small": ((16, 32, 32), 1, "0.28 M parameters: fast, leaks less"),
    "medium": ((32, 64, 64), 1, "1.1 M parameters: the embedded default's architecture"),
}
SCHEDULES = ("linear", "cosine")
AUGMENTS = {"none": "none", "hflip": "horizontal flips", "strong": "strong (random shifts and flips)"}
DEFAULTS = TrainConfig()


def targets_dir() -> Path:
    """Where trained targets go: ``$MIA_TARGETS_DIR`` if set, else ``runs/targets`` in the repository."""
    return Path(os.environ.get("MIA_TARGETS_DIR", REPO_DIR / "runs" / "targets"))


@st.cache_resource(show_spinner=False)
def _live() -> dict[str, dict]:
    """Per training job id: {"curve": [[step, loss], ...] filled by the job, "out": folder, "steps/s": float}."""
    return {}


@st.cache_resource(max_entries=4, show_spinner=False)
def _data(spec: str, seed: int):
    """(images, split) of a --data value, loaded once per (spec, seed)."""
    return resolve_data(spec, seed=seed)


def _shown_path(path: Path) -> str:
    """``path`` relative to the repository when it is inside it (what a user types), else absolute."""
    try:
        return str(path.resolve().relative_to(REPO_DIR))
    except ValueError:
        return str(path)


def command_line(data: str, out: Path, cfg: TrainConfig) -> str:
    """The ``mia train`` command for this form, with the output folder as the user would type it."""
    return train_command(data, _shown_path(out), cfg)


def _config(v: dict) -> TrainConfig:
    """The TrainConfig of the form's values (raises ValueError with TrainConfig's message)."""
    channels, layers, _ = PRESETS[v["preset"]]
    return TrainConfig(
        steps=int(v["steps"]), batch_size=int(v["batch_size"]), lr=float(v["lr"]), ema_decay=float(v["ema_decay"]),
        block_out_channels=channels, layers_per_block=layers, schedule=v["schedule"], augment=v["augment"],
        dp_epsilon=float(v["dp_epsilon"]) if v["dp"] else None,
        dp_delta=float(v["dp_delta"]) if v["dp_delta"] else None,  # empty: 1 / N^1.1
        dp_max_grad_norm=float(v["dp_max_grad_norm"]), seed=int(v["seed"]),
        # ~100 points on the live curve; logging does not change the weights
        log_every=max(1, min(DEFAULTS.log_every, int(v["steps"]) // 100)),
    )


def _measure(data: str, cfg: TrainConfig, device: str) -> float:
    """Steps per second of this recipe here (a few real training steps)."""
    images, split = _data(data, cfg.seed)
    return measure_steps_per_second(images.subset(split.member_ids), split, cfg, device=device)


def _rate_key(data: str, cfg: TrainConfig) -> dict:
    """What a measured speed depends on: the recipe and the data, not the number of steps (nor logging)."""
    return asdict(replace(cfg, steps=1, log_every=1)) | {"data": data}


def _job(members, split, cfg: TrainConfig, out: Path, device: str, command: str, live: dict):
    """The worker's job: train, filling ``live["curve"]`` and the JobState from the progress callback."""
    def run(state) -> None:
        state.phase, state.total = "train", cfg.steps
        t0 = time.perf_counter()

        def progress(step: int, steps: int, loss: float) -> None:
            if state.cancel_event.is_set():
                raise Cancelled(f"cancelled at step {step:,} of {steps:,}; nothing was saved")
            live["curve"].append([step, loss])
            live["steps/s"] = step / max(time.perf_counter() - t0, 1e-9)
            state.done, state.message = step, f"step {step:,} of {steps:,} · loss {loss:.4f}"

        result = train(members, split, cfg, out, device=device, command=command, progress=progress)
        state.message = (f"trained {cfg.steps:,} steps on {split.n_members:,} members in "
                         f"{plan.format_duration(result.seconds)}")
    return run


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
        "before you start.", icon=":material/hourglass_top:")

with st.form("train.form"):
    c1, c2 = st.columns([2, 1])
    c1.text_input(
        "Data", value=str(s.get("cfg.data", "default")), key="train.data",
        help=f"The session's data source (as on the Data page) or: 'default', {DIGITS_SOURCE!r}, a split manifest "
             "(.json), an .npz with an 'images' array (and optionally 'is_member'), or a folder of images. "
             "Only the split's members are trained on; the non-members stay unseen for the attacks.")
    c2.text_input("Name", value="my-target", key="train.name",
                  help=f"The target is saved to {_shown_path(targets_dir())}/<name> (letters, digits, . _ -).")
    st.radio("Model size", list(PRESETS), key="train.preset", horizontal=True, index=1,
             format_func=lambda p: f"{p} — {PRESETS[p][2]}")
    c1, c2, c3, c4 = st.columns(4)
    c1.number_input("Training steps", 1, 1_000_000, DEFAULTS.steps, step=500, key="train.steps",
                    help="More steps fit the members more closely: better samples, more leakage.")
    c2.number_input("Batch size", 1, 4096, DEFAULTS.batch_size, step=16, key="train.batch_size",
                    help="Under DP-SGD the expected batch size: each member joins a step with probability "
                         "batch size / N (Poisson sampling), as the privacy accountant assumes.")
    c3.number_input("Learning rate", 1e-6, 1.0, DEFAULTS.lr, step=1e-4, format="%.5f", key="train.lr")
    c4.number_input("EMA decay", 0.0, 0.99999, DEFAULTS.ema_decay, step=0.001, format="%.4f", key="train.ema_decay",
                    help="The saved (and attacked) weights are this exponential moving average of the trained ones.")
    c1, c2, c3, _ = st.columns(4)
    c1.selectbox("Noise schedule", SCHEDULES, key="train.schedule", index=SCHEDULES.index(DEFAULTS.schedule),
                 help="How fast noise is added over the T = 1000 timesteps: linear betas (DDPM, Ho et al. 2020) "
                      "or cosine (Nichol & Dhariwal 2021), which destroys the image more slowly.")
    c2.selectbox("Augmentation", list(AUGMENTS), format_func=AUGMENTS.get, key="train.augment",
                 index=list(AUGMENTS).index(DEFAULTS.augment),
                 help="Random changes to each training image at every step: a defence against memorisation.")
    c3.number_input("Seed", 0, 2**31 - 1, DEFAULTS.seed, key="train.seed",
                    help="Seeds the weights, the batches and the noise (and a random split of the data, if any).")
    st.checkbox("Train with differential privacy (DP-SGD, Opacus), with the ε, δ and C below", key="train.dp",
                help="Clips every example's gradient and adds Gaussian noise calibrated to the budget below.")
    c1, c2, c3, _ = st.columns(4)
    c1.number_input("ε (privacy budget)", 0.01, 1000.0, 8.0, step=1.0, key="train.dp_epsilon",
                    help="Smaller = stronger privacy and more noise. Used only with DP on.")
    c2.number_input("δ", 1e-12, 0.1, DEFAULTS.dp_delta, step=1e-5, format="%.1e", key="train.dp_delta",
                    placeholder="auto: 1 / N^1.1",
                    help="The chance the guarantee fails; it must be well below 1 / N for N members. "
                         "Empty: 1 / N^1.1 (5.6e-4 for the 898 digits).")
    c3.number_input("Clip norm C", 0.001, 100.0, DEFAULTS.dp_max_grad_norm, step=0.1, key="train.dp_max_grad_norm",
                    help="Each example's gradient is clipped to this L2 norm before noise is added.")
    buttons = st.container(horizontal=True)
    estimate = buttons.form_submit_button("Estimate time", icon=":material/timer:", key="train.estimate",
                                          help="Runs a few training steps of this recipe here and extrapolates.")
    submitted = buttons.form_submit_button("Train", type="primary", icon=":material/play_arrow:", key="train.run")

values = {k: s[f"train.{k}"] for k in ("data", "name", "preset", "steps", "batch_size", "lr", "ema_decay", "schedule",
                                       "augment", "seed", "dp", "dp_epsilon", "dp_delta", "dp_max_grad_norm")}
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
    st.code(command_line(data_spec, out_dir, cfg), language="bash", wrap_lines=True)

if estimate and not errors:
    try:
        with st.spinner("Timing a few training steps…", show_time=True):
            rate = _measure(data_spec, cfg, device)
        s["train.rate"] = (_rate_key(data_spec, cfg), rate)
    except Exception as exc:  # bad data, a recipe the trainer refuses: say so, never a traceback
        errors.append(f"Could not time this recipe: {type(exc).__name__}: {exc}")
if cfg is not None and s.get("train.rate") and s["train.rate"][0] == _rate_key(data_spec, cfg):
    rate = s["train.rate"][1]
    st.info(f"Measured **{rate:,.1f} training steps/s** on this machine ({device}) for this recipe: "
            f"{cfg.steps:,} steps take **about {plan.format_duration(cfg.steps / rate)}**.",
            icon=":material/timer:")


def _start() -> None:
    """Validate the data and the folder, then submit the training to the worker."""
    if out_dir.exists() and any(out_dir.iterdir()):
        raise ValueError(f"{_shown_path(out_dir)} already exists and is not empty: choose another name")
    images, split = _data(data_spec, cfg.seed)
    members = images.subset(split.member_ids)
    command = command_line(data_spec, out_dir, cfg)
    job_id = "train-" + hashlib.sha256(json.dumps([data_spec, str(out_dir), asdict(cfg)], sort_keys=True,
                                                  default=str).encode()).hexdigest()[:16]
    previous = worker.get(job_id)
    if previous is not None and previous.active:  # the same request is running (another tab): show it
        s[JOB_KEY] = job_id
        return
    if previous is not None:
        worker.forget(job_id)  # a cancelled / failed / deleted run of the same request: train again
    live = {"curve": [], "out": str(out_dir), "steps/s": None, "data": data_spec}
    _live()[job_id] = live
    worker.submit(job_id, f"training {values['name'].strip()} ({cfg.steps:,} steps on {split.n_members:,} members)",
                  _job(members, split, cfg, out_dir, device, command, live))
    s[JOB_KEY] = job_id


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
state = worker.get(job_id) if job_id else None
if state is not None and state.active:
    s[POLL_KEY] = job_id


@st.fragment(run_every=1.0 if state is not None and state.active else None)
def job_panel() -> None:
    """Progress, live loss curve and Cancel while training; polls every second while it is active."""
    if not job_id:
        return
    job, live = worker.get(job_id), _live().get(job_id)
    if job is None or live is None:
        return
    if job.active:
        rate = f" · {live['steps/s']:,.1f} steps/s" if live.get("steps/s") else ""

        def live_curve(box) -> None:
            if len(live["curve"]) > 1:  # one point draws no line
                box.plotly_chart(loss_curve_figure({"loss_curve": list(live["curve"])}), key="train.live_loss",
                                 config={"displaylogo": False})

        running_job_box(
            worker, job, (job.message or "Starting…") + rate, cancel_key="train.cancel", extra=live_curve,
            cancel_help="Stops at the next logged step; nothing is saved.",
            leave_note="You can leave this page: training continues on the server and this page shows it again "
                       "when you come back.")
    elif s.get(POLL_KEY) == job_id:  # it just ended: one full rerun draws the outcome below
        s[POLL_KEY] = None
        st.rerun()


job_panel()

# -- the outcome (drawn by full runs, so that "Use this target" reruns the whole page) ----------------

job, live = (worker.get(job_id), _live().get(job_id)) if job_id else (None, None)
if job is not None and live is not None and not job.active:
    if job.status == "done":
        st.success(f"Done — {job.message}. Saved to `{_shown_path(Path(live['out']))}`.",
                   icon=":material/check_circle:")
        fig = loss_curve_figure({"loss_curve": list(live["curve"])})
        if fig is not None:
            st.plotly_chart(fig, key="train.final_loss", config={"displaylogo": False})
        c1, c2 = st.columns([1, 3], vertical_alignment="center")
        c1.button("Use this target", type="primary", key="train.use", on_click=_use,
                  args=(str(Path(live["out"]).resolve()),), icon=":material/target:",
                  help="Makes it the session's target, with its own split as the data, for every other page.")
        c2.caption("Then open the **Attack lab** to attack it. Its non-members were never trained on, so they are "
                   "a fair comparison.")
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

trained = sorted(p.parent for p in targets_dir().glob("*/train_log.json"))
if trained:
    st.subheader("Trained targets")
    rows = []
    for folder in trained:
        try:
            log = json.loads((folder / "train_log.json").read_text())
        except (OSError, ValueError):
            continue
        cfg_log = log.get("config") or {}
        dp = log.get("dp") or {}
        rows.append({"name": folder.name, "steps": cfg_log.get("steps"), "members": log.get("n_members"),
                     "augment": cfg_log.get("augment", "hflip" if cfg_log.get("hflip") else "none"),
                     "DP ε": dp.get("achieved_epsilon"), "seconds": log.get("seconds"), "device": log.get("device"),
                     "folder": _shown_path(folder)})
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", key="train.trained")
    st.caption("Choose one on the **Target** page (Local diffusers folder) to attack it.")
