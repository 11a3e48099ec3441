"""Attack lab: choose attacks and their parameters, run them in the background, see how they did.

The form batches every edit (nothing starts until "Run"); the job runs on the server's one
worker thread, so the app stays usable and the progress survives page changes; results go to the
store, where Compare, Sample explorer and the other pages read them.
"""

from __future__ import annotations

import time

import pandas as pd
import streamlit as st

from mia_core.attacks import REGISTRY, not_applicable
from mia_core.attacks.conditioning import MODES, Conditioning
from mia_core.lab import plan
from mia_core.lab.experiment import attack_job_id, condition_attacks, submit_attacks
from mia_core.views.attack_info import by_reason, choice_label
from mia_core.views.results import scores_frame
from pages._common import (
    get_store,
    get_worker,
    poll_job,
    results,
    running_job_box,
    selected_attacks,
    show_sharded_runs,
    try_experiment,
)

s = st.session_state
JOB_KEY = "attack_lab.job"  # the id of this session's latest job
POLL_KEY = "attack_lab.polling"  # the job id the last full run saw active (rerun once when it ends)
NOTICE_KEY = "attack_lab.notice"
ESTIMATE_KEY = "attack_lab.estimate"  # the submitted job's predicted seconds per attack (recalibrated as it runs)

st.title("⚔️ Attack lab")
st.caption(
    "Choose membership-inference attacks and their parameters, then press **Run**. The attacks run in the "
    "background on this server; you can keep using the other pages. Every result is stored, so the Compare, "
    "Sample explorer and Presenter pages show it, and running the same thing again opens instantly."
)

exp = try_experiment()
if exp is None:
    st.stop()

store, worker = get_store(), get_worker()
if (store_problem := store.write_problem()) is not None:  # say it before a run, not after computing
    st.warning(f"Read-only result store: {store_problem}.", icon=":material/lock:")
seed = int(s["cfg.seed"])
n_images = len(exp.ids)
n_members = int(exp.is_member.sum())
num_timesteps = int(exp.target.schedule.num_timesteps)

limit_note = f" (limited to {s['cfg.limit']} per side)" if s.get("cfg.limit") else ""
st.markdown(
    f"**Experiment** · target `{s['cfg.target']}` ({exp.target.n_parameters / 1e6:.1f} M parameters, "
    f"{exp.target.resolution}×{exp.target.resolution}, {exp.target.device.type}) · data `{s['cfg.data']}`: "
    f"**{n_images:,} images**, {n_members:,} members and {n_images - n_members:,} non-members{limit_note} · seed {seed}"
)

show_sharded_runs(store, exp.target.fingerprint)

# A text-to-image target: the prompt each attack conditions on (mia_core.attacks.Conditioning), chosen per run.
is_t2i = getattr(exp.target, "kind", "") == "t2i"
has_captions = exp.images.captions is not None
if is_t2i and not has_captions and s["cfg.conditioning"].get("mode") == "caption":
    s["cfg.conditioning"] = {"mode": "empty"}  # nothing to condition on per image: say so below, never fail
COND_MODES = [m for m in MODES if has_captions or m != "caption"]
COND_TEXT = {"caption": "each image's own caption", "empty": 'the empty prompt ""', "fixed": "one fixed prompt"}


def _cond_now() -> tuple[dict, str | None]:
    """The conditioning as the form stands (the last Run's before the form is drawn), and why it is not valid."""
    last = s["cfg.conditioning"]
    mode = s.get("attack_lab.cond.mode", last.get("mode", "caption"))
    prompt = s.get("attack_lab.cond.prompt", last.get("prompt", "")) if mode == "fixed" else ""
    w = float(s.get("attack_lab.cond.w", last.get("guidance_scale", 1.0)))
    value = {"mode": mode, "prompt": prompt, "guidance_scale": w}
    try:
        Conditioning.from_value(value)
    except ValueError as exc:
        return dict(last), str(exc)
    return value, None


cond_now, cond_error = _cond_now() if is_t2i else ({}, None)

try:
    ran = selected_attacks(exp)  # the last Run's selection: what the results below are for
except ValueError as exc:  # a bad cfg.params from elsewhere must not take the page down
    st.warning(f"The stored attack parameters are invalid ({exc}); using the published defaults.")
    s["cfg.params"] = {}
    ran = selected_attacks(exp)


def _form_raw(name: str) -> dict:
    """The form's current value of each of an attack's fields (the last Run's before the form is drawn)."""
    return {
        f.name: s.get(f"attack_lab.p.{name}.{f.name}", plan.form_value(f, s["cfg.params"].get(name)))
        for f in plan.param_fields(name)
    }


# What a Run would start now: the chips and parameters as they stand in the form, not the last Run's,
# so the table, the "Selected" line and the time advice update as the form changes.
names_now = [n for n in s.get("attack_lab.attacks", s["cfg.attacks"]) if n in REGISTRY]
pending = plan.pending_selection(
    names_now, {n: _form_raw(n) for n in names_now}, s["cfg.params"], num_timesteps=num_timesteps
)
current = condition_attacks(exp, pending.attacks, cond_now) if is_t2i else pending.attacks
seed_now = int(s.get("attack_lab.seed", seed))

# Attacks whose math does not fit this kind of target (Attack.applies_to) are listed, never run.
every = [cls() for cls in REGISTRY.values()]
skipped = not_applicable(condition_attacks(exp, every, cond_now) if is_t2i else every, exp.target)
if skipped:
    st.info(
        "**Not applicable to this target** (not run):\n\n"
        + "\n".join(
            f"- **{', '.join(REGISTRY[n].title for n in names)}**: {reason}" for names, reason in by_reason(skipped)
        ),
        icon=":material/block:",
    )
    current = [a for a in current if a.name not in skipped]
    ran = [a for a in ran if a.name not in skipped]


def _is_stored(attack) -> bool:
    return store.has(exp.run_key(attack, seed_now))


stored_now = {a.name for a in current if _is_stored(a)}


def _speed():
    """This machine's UNet speed for the target, measured now (a probe of about a second, cached for
    10 minutes and corrected by the running job's progress); None when it cannot be measured."""
    cached = plan.SPEEDS.get(exp.target)
    if cached is not None:
        return cached
    try:
        with st.spinner("Measuring this machine's speed on the target…"):
            return plan.SPEEDS.speed(exp.target)
    except Exception:  # a target the probe cannot drive: fall back to a rough guess below
        return None


speed = _speed()
measured = speed is not None
if measured:
    the_plan = plan.make_plan(
        current, stored_now, n_images, speed=speed, target=exp.target, vae_pass_cost=plan.vae_pass_cost(exp.target)
    )
else:
    rate = plan.guess_target_throughput(exp.target)  # a latent target's UNet works on its latents
    the_plan = plan.make_plan(
        current, stored_now, n_images, rate, measured=False, vae_pass_cost=plan.vae_pass_cost(exp.target)
    )


def vae_text(n: int) -> str:
    """A latent target's VAE passes (image encodes, sample decodes) beside the UNet calls."""
    return f" + {n:,} VAE passes" if the_plan.vae_total else ""


# -- the attacks and their costs -----------------------------------------------------------------

st.subheader("Attacks")
levels = st.pills(
    "Threat model",
    plan.access_options(),
    selection_mode="multi",
    default=plan.access_options(),
    format_func=plan.access_option_label,
    key="attack_lab.access",
    help="What the attacker may use: black box = generated or varied images only; gray box = the model's noise "
    "predictions; white box = its weights and gradients. The Learn page explains them.",
)
table = pd.DataFrame(
    plan.attack_table(
        pending.params, [a.name for a in current], stored_now, levels=levels, conditioning=cond_now or None
    ),
    columns=["attack", "access", "paper", "UNet calls / image", "with trace", "selected", "results"],
)
st.dataframe(
    table,
    hide_index=True,
    width="stretch",
    key="attack_lab.table",
    column_config={
        "attack": st.column_config.TextColumn("Attack"),
        "access": st.column_config.TextColumn("Threat model", help="Black / gray / white box, and what else it needs"),
        "paper": st.column_config.TextColumn("Paper"),
        "UNet calls / image": st.column_config.NumberColumn(
            help="The attack's published cost: UNet evaluations per image for its score"
        ),
        "with trace": st.column_config.NumberColumn(
            "with per-timestep trace", help="UNet evaluations per image including the per-timestep trace the app draws"
        ),
        "selected": st.column_config.CheckboxColumn("Selected"),
        "results": st.column_config.TextColumn("Results"),
    },
)
if current:
    if measured:
        how = "measured on this run's progress" if speed.source == "run" else "a quick probe just now"
        rate_note = (
            f"the UNet runs {speed.calls_per_s(64):,.0f} calls/s in batches of 64 and costs "
            f"{speed.overhead_s * 1000:,.0f} ms per forward pass here ({how})"
        )
    else:
        rate_note = "a rough guess from the model's size: this target's speed could not be measured"
    if the_plan.all_stored:
        todo = "**all stored — opens instantly.**"
    else:
        n_stored = len(stored_now)
        todo = (
            f"{n_stored} stored (open instantly); to compute: {the_plan.calls_to_compute:,} UNet calls"
            f"{vae_text(the_plan.vae_to_compute)}, "
            f"**about {plan.format_duration(the_plan.seconds)}** on this machine ({rate_note})."
        )
    st.markdown(
        f"**Selected:** {len(current)} attack(s), {the_plan.calls_total:,} UNet calls"
        f"{vae_text(the_plan.vae_total)} in all on {n_images:,} images; "
        f"{todo}"
    )
if pending.errors:
    st.warning(
        "Not valid yet (the estimate uses the last Run's values for these): "
        + "; ".join(f"**{REGISTRY[n].title}**: {e}" for n, e in pending.errors.items()),
        icon=":material/edit_note:",
    )
st.caption("The table and the estimate follow the form below as you edit it; nothing starts until you press Run.")


def _use_subset(n: int) -> None:
    s["cfg.limit"] = n
    s["data.limit"] = n  # the Data page's subset control shows the same value
    s["sel.sample"] = None


# Expensive attacks (the likelihood ODE: hundreds of UNet calls and gradients per image) on a CPU:
# offer a subset in one click rather than a run of many minutes.
if current and not the_plan.all_stored and the_plan.seconds > 120 and n_images > 200:
    st.warning(
        f"This run would take about {plan.format_duration(the_plan.seconds)} here. To try it quickly, attack "
        "a subset: 100 members and 100 non-members (enough for AUC and for TPR at 1 % FPR; the Data page "
        "sets other sizes). Results on all images stay in the store once computed.",
        icon=":material/hourglass_top:",
    )
    st.button(
        "Use 100 + 100 images", key="attack_lab.subset", on_click=_use_subset, args=(100,), icon=":material/speed:"
    )

# Learned attacks: which images they train on and which they are scored on, before anything runs.
for attack in [a for a in current if a.learns]:
    train_ids, eval_ids = attack.partition(exp.ids, exp.is_member, seed)
    tr, ev = exp.labels_for(train_ids), exp.labels_for(eval_ids)
    st.info(
        f"**{attack.title}** learns: it trains on {len(train_ids):,} images ({int(tr.sum()):,} members, "
        f"{int((~tr).sum()):,} non-members) and is scored only on the other {len(eval_ids):,} "
        f"({int(ev.sum()):,} members, {int((~ev).sum()):,} non-members). The two parts are disjoint and drawn "
        f"with the seed ({seed}); {attack.training_data}. Its metrics are computed on the scored part only.",
        icon=":material/school:",
    )

# -- the form ------------------------------------------------------------------------------------


def _conditioning_controls() -> None:
    """A text-to-image target's conditioning: which prompt, and the guidance scale with its cost."""
    st.markdown(
        "**Conditioning** — a text-to-image model predicts the noise *given a prompt*; each run chooses which "
        "prompt the attacks give it. The image's own caption is what it was trained with; the empty prompt is "
        "the unconditional model. **CLiD** (in the list above) is the attack made for text-to-image models: it "
        "compares the error under the caption with the error under the empty prompt."
    )
    last = s["cfg.conditioning"]
    c1, c2, c3 = st.columns([2, 2, 1])
    mode = c1.radio(
        "Prompt",
        COND_MODES,
        index=COND_MODES.index(last.get("mode")) if last.get("mode") in COND_MODES else 0,
        format_func=COND_TEXT.get,
        key="attack_lab.cond.mode",
        horizontal=True,
    )
    c2.text_input(
        "Fixed prompt",
        value=last.get("prompt", ""),
        key="attack_lab.cond.prompt",
        disabled=mode != "fixed",
        placeholder="a handwritten seven",
    )
    w = c3.number_input(
        "Guidance scale",
        min_value=0.0,
        max_value=20.0,
        value=float(last.get("guidance_scale", 1.0)),
        step=0.5,
        key="attack_lab.cond.w",
        help="Classifier-free guidance w: eps(., empty) + w (eps(., prompt) - eps(., empty)). 1 = off, as SecMI, "
        "CopyMark and CLiD run; any other value makes every UNet call two forward passes.",
    )
    if not has_captions:
        st.caption("These images carry no captions, so each image's own caption is not offered.")
    cost = (
        f"guidance {w:g}: **every UNet call costs 2 forward passes** (the prompt and the empty prompt), so the run "
        "costs twice as much (the table and the estimate above include it)"
        if w != 1.0
        else "no guidance (scale 1): one forward pass per UNet call"
    )
    st.caption(f"Each run is keyed by its conditioning (Compare labels say it); {cost}.")
    if cond_error:
        st.warning(f"Conditioning not valid yet: {cond_error}", icon=":material/edit_note:")


# Not an st.form: every edit reruns the page so the plan above describes the form as it is. The chips'
# labels never depend on the parameters: the browser holds a chip as its label text, and a label that
# changed after a Run (say a new cost) matched no option any more, so the chip vanished and the next
# Run left that attack out without a word. The current costs are in the table above.
with st.container(border=True, key="attack_lab.form"):
    chosen = st.multiselect(
        "Attacks to run",
        options=plan.filter_by_access(list(REGISTRY), levels, keep=[a.name for a in current]),
        default=[a.name for a in ran],
        format_func=lambda name: choice_label(name, "published cost " + plan.cost_text(name)),
        key="attack_lab.attacks",
        help="Cost = UNet evaluations per image for the score (and with the per-timestep trace the charts use).",
    )
    if is_t2i:
        _conditioning_controls()
    st.markdown(
        "**Parameters** — the published defaults; change a number or a comma-separated list of timesteps. "
        "Only the selected attacks' parameters are used."
    )
    raw: dict[str, dict] = {}
    for tab, (name, cls) in zip(st.tabs([cls.title for cls in REGISTRY.values()]), REGISTRY.items()):
        with tab:
            st.caption(f"{cls.paper} · score = `{cls.score_label}` (higher = more member-like)")
            fields = plan.param_fields(name)
            raw[name] = {}
            for col, f in zip(st.columns(len(fields)), fields):
                value = plan.form_value(f, s["cfg.params"].get(name))
                key = f"attack_lab.p.{name}.{f.name}"
                default_text = plan.format_ints(f.default) if f.kind == "ints" else f.default
                help_text = f"{f.help[:1].upper() + f.help[1:]}. Published default: {default_text}."
                with col:
                    if f.kind == "ints":
                        raw[name][f.name] = st.text_input(
                            f.name,
                            value=value,
                            key=key,
                            help=help_text + " Whole numbers separated by commas (timesteps 0 .. "
                            f"{num_timesteps - 1}); an empty sweep skips the per-timestep trace.",
                        )
                    elif f.kind == "bool":
                        raw[name][f.name] = st.checkbox(f.name, value=value, key=key, help=help_text)
                    elif f.kind == "float":
                        raw[name][f.name] = st.number_input(f.name, value=value, step=0.5, key=key, help=help_text)
                    elif f.kind == "text":
                        raw[name][f.name] = st.text_input(f.name, value=value, key=key, help=help_text)
                    else:
                        raw[name][f.name] = st.number_input(f.name, value=value, step=1, key=key, help=help_text)
    seed_col, _ = st.columns([1, 3])
    new_seed = seed_col.number_input(
        "Seed",
        min_value=0,
        max_value=2**31 - 1,
        value=seed,
        step=1,
        key="attack_lab.seed",
        help="Seeds the noise each attack draws per image (the default split of the embedded data does not change).",
    )
    submitted = st.button("Run", type="primary", icon=":material/play_arrow:", key="attack_lab.run")


def _start(exp_now) -> None:
    """Submit the session's attacks to the worker unless every result is stored already."""
    attacks = [a for a in selected_attacks(exp_now) if a.applies_to(exp_now.target) is None]
    stored = {a.name for a in attacks if store.has(exp_now.run_key(a, int(s["cfg.seed"])))}
    if len(stored) == len(attacks):
        s[JOB_KEY] = None
        s[NOTICE_KEY] = f"All {len(attacks)} selected attack(s) already have stored results: nothing to compute."
        return
    job_id = attack_job_id(exp_now, attacks, int(s["cfg.seed"]))
    previous = worker.get(job_id)
    if previous is not None and previous.status == "done":  # results gone from the store since: run again
        worker.forget(job_id)
    state = submit_attacks(worker, exp_now, attacks, seed=int(s["cfg.seed"]), store=store)
    s[JOB_KEY] = state.job_id
    job_speed = plan.SPEEDS.get(exp_now.target)
    if job_speed is not None:  # what the estimate said, to recalibrate it from the job's progress
        job_plan = plan.make_plan(
            attacks,
            stored,
            len(exp_now.ids),
            speed=job_speed,
            target=exp_now.target,
            vae_pass_cost=plan.vae_pass_cost(exp_now.target),
        )
        s[ESTIMATE_KEY] = {
            "job": state.job_id,
            "predicted": job_plan.predicted(),
            "order": [a.name for a in attacks],
            "n": len(exp_now.ids),
            "speed": job_speed,
            "speed_key": plan.SpeedBook.key(exp_now.target),
        }
    s[NOTICE_KEY] = None


if submitted:
    errors, new_params = [], {}
    if not chosen:
        errors.append("Choose at least one attack.")
    for name in chosen:
        if name in skipped:
            errors.append(f"**{REGISTRY[name].title}** does not apply to this target: {skipped[name]}")
            continue
        try:
            values = plan.values_from_form(name, raw[name])
            plan.build_attack(name, values, num_timesteps=num_timesteps)
        except ValueError as exc:
            errors.append(f"**{REGISTRY[name].title}**: {exc}")
            continue
        diff = plan.non_default(name, values)
        if diff:
            new_params[name] = diff
    if is_t2i and cond_error:
        errors.append(f"**Conditioning**: {cond_error}")
    if errors:
        st.error("Nothing was started. Please fix:\n\n" + "\n\n".join(f"- {e}" for e in errors))
    else:
        s["cfg.attacks"] = list(chosen)
        s["cfg.params"] = new_params
        s["cfg.seed"] = int(new_seed)
        if is_t2i:
            s["cfg.conditioning"] = cond_now
        exp_now = try_experiment()  # the seed may have changed the experiment (random splits)
        if exp_now is not None:
            try:
                _start(exp_now)
            except Exception as exc:  # never a traceback on the page
                st.error(f"Could not start the job: {type(exc).__name__}: {exc}")
            else:
                st.rerun()

if s.get(NOTICE_KEY):
    st.success(s[NOTICE_KEY])

# -- the job's progress --------------------------------------------------------------------------

job_id = s.get(JOB_KEY)
state = worker.get(job_id) if job_id else None
if state is None and ran:  # a job for this very request started elsewhere (another tab, before a reload)
    other = worker.get(attack_job_id(exp, ran, seed))
    if other is not None and other.active:
        job_id, state = other.job_id, other
        s[JOB_KEY] = job_id


def _recalibrated_eta(job) -> float | None:
    """Seconds left from the estimate made at Run, scaled by how fast the job has really gone; the
    measured factor also corrects this machine's speed for the next estimates."""
    est = s.get(ESTIMATE_KEY)
    if not est or est["job"] != job.job_id or job.phase not in est["order"] or not job.started:
        return None
    i, n = est["order"].index(job.phase), max(1, est["n"])
    found = plan.eta_from_progress(
        est["predicted"], est["order"], job.phase, (job.done - i * n) / n, time.time() - job.started
    )
    if found is None:
        return None
    left, factor = found
    plan.SPEEDS.correct(est["speed_key"], est["speed"], factor)
    return left


def _running(job) -> None:
    phase = REGISTRY[job.phase].title if job.phase in REGISTRY else (job.phase or "starting")
    running_job_box(
        worker,
        job,
        f"{phase} — {job.message}" if job.message else "Starting…",
        cancel_key="attack_lab.cancel",
        cancel_help="Stops after the current batch; attacks that already finished stay stored.",
        leave_note="You can leave this page: the job keeps running on the server, and this page shows its "
        "progress again when you come back.",
        eta=_recalibrated_eta(job),
    )


def _ended(job) -> None:
    took = f" in {plan.format_duration(job.finished - job.started)}" if job.finished and job.started else ""
    if job.status == "done":
        st.success(f"Done — {job.message}{took}.", icon=":material/check_circle:")
    elif job.status == "cancelled":
        st.warning(
            "Cancelled. Attacks that had finished are stored and shown below; press Run to compute the rest.",
            icon=":material/stop_circle:",
        )
    elif job.status == "failed":
        st.error(f"The job failed: {job.error}", icon=":material/error:")
        with st.expander("Traceback (for a bug report)"):
            st.code(job.message or "no traceback", language="text")


poll_job(worker, job_id, POLL_KEY, running=_running, ended=_ended)

# -- results ---------------------------------------------------------------------------------------

try:
    found = results(exp)
except ValueError:
    found = {}
if found:
    st.subheader("Results")
    rows = plan.metric_rows(found, exp.is_member, ids=exp.ids)
    summary = pd.DataFrame(rows).drop(columns=["_auc", "_tpr1"])
    st.dataframe(summary, hide_index=True, width="stretch", key="attack_lab.summary")
    if is_t2i:
        st.caption(f"Conditioned on {Conditioning.from_value(s['cfg.conditioning']).describe()}.")
    st.caption(
        "AUC: probability that a random member scores higher than a random non-member (0.5 = guessing). "
        "TPR @ 1% FPR: the share of members found when only 1 % of non-members may be wrongly flagged — "
        "the number that says whether an attacker can be *confident*. Brackets: 95 % bootstrap intervals. "
        "TPR @ 0.1% FPR needs at least 1,000 non-members to be measured."
    )
    missing = [a.title for a in ran if a.name not in found]
    if missing:
        st.info(f"Not computed yet: {', '.join(missing)}.")
    c1, c2, c3 = st.columns([2, 1, 1])
    c1.page_link("pages/compare.py", label="Compare the attacks: ROC curves, histograms, per-timestep AUC", icon="📈")
    c2.download_button(
        "Metrics (CSV)",
        summary.to_csv(index=False).encode(),
        file_name="attack_metrics.csv",
        mime="text/csv",
        on_click="ignore",
        key="attack_lab.dl_metrics",
    )
    scores = scores_frame(found, exp.ids, exp.is_member)
    c3.download_button(
        "Per-image scores (CSV)",
        scores.to_csv(index=False).encode(),
        file_name="attack_scores.csv",
        mime="text/csv",
        on_click="ignore",
        key="attack_lab.dl_scores",
    )
elif ran and not (state is not None and state.active):
    st.info("No stored results for the selected attacks on this experiment yet: press **Run**.")
