"""What every page shares: the session's choices, the cached target and data, the store, the worker.

Pages stay thin: they read these, call ``mia_core`` and draw. Nothing here computes attacks.
Session-state keys are namespaced ``cfg.*`` (choices that define the experiment) and
``sel.*`` (what is selected: a sample id, ...).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import streamlit as st

# torch, diffusers, plotly and pandas are imported inside the functions that need them, not here:
# the Start page draws on the first run while the loader thread imports them (first page fast).
if TYPE_CHECKING:
    import pandas as pd

    from mia_core.attacks import Attack, AttackResult
    from mia_core.lab.experiment import Experiment
    from mia_core.lab.runs import ResultStore, Worker


def _leave_legacy_pages_mode() -> None:
    """Route the first visit of a fresh server through app.py.

    Streamlit treats a folder named ``pages/`` beside the entry script as a legacy multipage app
    until some session calls ``st.navigation``; a first visit straight to a page URL then runs
    the page without app.py (no shared state, a different sidebar). Whoever imports this module
    first in that mode flips the flag and reruns: the rerun goes through app.py, whose page of
    the same url_path (its file's stem) is the page that was asked for.

    Why a private attribute: Streamlit (1.55 to 1.67 at least) has no public switch for this. The
    product keeps its top-level ``pages/`` folder; ``st.navigation`` (public) clears the flag, but
    only once app.py runs, which is what the legacy mode skips; there is no config option. This is
    the only place that touches Streamlit internals, and tests/test_streamlit_legacy_pages.py fails
    the day ``PagesManager.uses_pages_directory`` or its effect changes.
    """
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()


_leave_legacy_pages_mode()

DEFAULTS: dict[str, Any] = {
    "cfg.target": os.environ.get("MIA_TARGET", "default"),
    "cfg.data": os.environ.get("MIA_DATA", "default"),
    "cfg.limit": int(os.environ["MIA_LIMIT"]) if os.environ.get("MIA_LIMIT") else None,
    "cfg.seed": 0,
    "cfg.attacks": ["loss", "secmi", "pia", "pian", "sima"],  # = mia_core.attacks.DEFAULT_ATTACKS (tested)
    "cfg.params": {},  # attack name -> {param: value}, only what differs from the defaults
    "cfg.fpr": 0.01,
    # a text-to-image target's prompts (mia_core.attacks.Conditioning fields; ignored on other targets)
    "cfg.conditioning": {"mode": "caption"},
    "sel.sample": None,
}
FPR_BUDGETS = (0.1, 0.05, 0.01, 0.001)


def init_state() -> None:
    """Set every default once per session (called by app.py before any page runs)."""
    for key, value in DEFAULTS.items():
        if key not in st.session_state:
            st.session_state[key] = value.copy() if isinstance(value, (dict, list)) else value


#: the one-click label of the shipped text-to-image target (Start and Target pages)
T2I_BUTTON = "Use the tiny text-to-image target (MNIST digits with captions)"
DEFAULT_BUTTON = "Use the embedded default target (8x8 digits)"
LATENT_BUTTON = "Use the tiny latent-diffusion target (MNIST digits, VAE + UNet)"


def t2i_spec() -> tuple[str, str]:
    """(target, data) specs of the shipped tiny text-to-image target and its split (mia_core.paths)."""
    from mia_core.paths import T2I_SPLIT_PATH, T2I_TARGET_DIR

    return str(T2I_TARGET_DIR.resolve()), str(T2I_SPLIT_PATH.resolve())


def latent_spec() -> tuple[str, str]:
    """(target, data) specs of the shipped tiny latent-diffusion target and its split (mia_core.paths)."""
    from mia_core.paths import LATENT_SPLIT_PATH, LATENT_TARGET_DIR

    return str(LATENT_TARGET_DIR.resolve()), str(LATENT_SPLIT_PATH.resolve())


def on_t2i_target() -> bool:
    """Whether the session's target is the shipped text-to-image target."""
    return st.session_state["cfg.target"] == t2i_spec()[0]


def use_embedded(which: str) -> None:
    """Button callback: switch the session to an embedded target and its own split in one click.

    ``which``: "t2i" (the shipped text-to-image target, assets/t2i_target and its split.json), "latent"
    (the shipped latent-diffusion target, assets/latent_target and its split.json) or "default" (the
    embedded 8x8-digits DDPM and its split). Clears the selected sample; the Target page's chooser
    follows (a local folder for t2i and latent)."""
    s = st.session_state
    if which == "t2i":
        target, data = t2i_spec()
        s["target.source"], s["target.folder"] = "Local diffusers folder", target
        what = "the tiny text-to-image target (MNIST digits with captions) and its split"
    elif which == "latent":
        target, data = latent_spec()
        s["target.source"], s["target.folder"] = "Local diffusers folder", target
        what = "the tiny latent-diffusion target (MNIST digits, VAE + UNet) and its split"
    elif which == "default":
        target, data = "default", "default"
        s["target.source"] = "Embedded default"
        what = "the embedded default target (8x8 digits) and its split"
    else:
        raise ValueError(f"unknown embedded target {which!r}: expected 't2i', 'latent' or 'default'")
    s["cfg.target"], s["cfg.data"], s["sel.sample"] = target, data, None
    if which == "t2i" and "clid" not in s["cfg.attacks"]:  # the attack made for text-to-image models, as the CLI
        s["cfg.attacks"] = [*s["cfg.attacks"], "clid"]
    s["cfg.limit"] = None
    s.pop("data.limit", None)
    s["target.error"] = None
    s["target.flash"] = f"Switched to {what}."


@st.cache_resource(show_spinner=False)
def get_worker() -> Worker:
    """The one background worker of this server process (serialises attack jobs)."""
    from mia_core.lab.runs import Worker

    return Worker()


@st.cache_resource(show_spinner=False)
def _store(root: str) -> ResultStore:
    from mia_core.lab.runs import ResultStore
    from mia_core.paths import DEMO_STORE_DIR

    return ResultStore(root, extra_readonly=[DEMO_STORE_DIR])


def get_store() -> ResultStore:
    """The writable result store ($MIA_STORE or runs/store), plus the precomputed demo results in assets/."""
    from mia_core.lab.runs import default_store_dir

    return _store(str(default_store_dir()))


# One loader thread: the target and its images load off the script thread, so a page can draw
# before they are ready (the Start page) and every page then shares the same loaded experiment.
_LOADER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mia-loader")


@st.cache_resource(max_entries=2, show_spinner=False)
def _experiment_loading(target: str, data: str, limit: int | None, seed: int) -> Future:
    return _LOADER.submit(_load_experiment, target, data, limit, seed)


def _load_experiment(target: str, data: str, limit: int | None, seed: int) -> Experiment:
    from mia_core.lab.experiment import load_experiment  # imported on the loader thread

    return load_experiment(target, data, limit=limit, seed=seed)


def _experiment(target: str, data: str, limit: int | None, seed: int) -> Experiment:
    future = _experiment_loading(target, data, limit, seed)
    if not future.done():
        with st.spinner("Loading the target and its images…"):
            return future.result()
    return future.result()


def experiment_loading() -> Future:
    """The session's experiment as a Future: started (once) if it is not loading yet; never blocks."""
    s = st.session_state
    return _experiment_loading(s["cfg.target"], s["cfg.data"], s["cfg.limit"], s["cfg.seed"])


def experiment() -> Experiment:
    """The session's experiment (target + split), loaded once per (target, data, limit, seed)."""
    s = st.session_state
    return _experiment(s["cfg.target"], s["cfg.data"], s["cfg.limit"], s["cfg.seed"])


def default_experiment() -> Experiment:
    """The embedded default target on its own split (what the precomputed demo results are for)."""
    return _experiment("default", "default", None, 0)


def try_experiment() -> Experiment | None:
    """Like :func:`experiment`, but shows the error on the page and returns None on bad input."""
    try:
        return experiment()
    except Exception as exc:  # a bad folder / file must not take the page down
        st.error(f"Could not load the target or data: {exc}")
        st.info("Choose another target on the **Target** page or another data source on the **Data** page.")
        return None


def selected_attacks(exp: Experiment | None = None) -> list[Attack]:
    """The session's attacks with their parameters; with ``exp`` on a text-to-image target, also with the
    session's conditioning (``cfg.conditioning``, :func:`mia_core.lab.experiment.condition_attacks`)."""
    from mia_core.attacks import REGISTRY
    from mia_core.lab.experiment import condition_attacks, make_attacks

    s = st.session_state
    names = [n for n in s["cfg.attacks"] if n in REGISTRY]
    attacks = make_attacks(names, {n: p for n, p in s["cfg.params"].items() if n in names})
    return attacks if exp is None else condition_attacks(exp, attacks, s["cfg.conditioning"])


def results(exp: Experiment) -> dict[str, AttackResult]:
    """Stored results of the selected attacks for the session's experiment (nothing is computed)."""
    from mia_core.lab.experiment import stored_results

    store = get_store()
    try:
        attacks = selected_attacks(exp)
    except ValueError as exc:  # e.g. "own caption" on images without captions: say so, show nothing
        st.warning(f"{exc}.", icon=":material/short_text:")
        return {}
    out = stored_results(exp, attacks, seed=st.session_state["cfg.seed"], store=store)
    show_store_notices(store)
    return out


def url_runs() -> tuple[list[str], list[str]]:
    """The runs named in the URL (``?runs=loss|loss:timesteps=100``, :mod:`mia_core.lab.run_specs`):
    (canonical run ids, messages about the parts that are not valid runs)."""
    from mia_core.lab.run_specs import parse_runs

    return parse_runs(st.query_params.get("runs"))


def stored_runs(exp: Experiment, run_ids: list[str], seed: int) -> tuple[dict[str, AttackResult], list[str]]:
    """The stored results of these runs on ``exp`` (run id -> result; nothing is computed), and the
    run ids the store does not hold."""
    from mia_core.lab.run_specs import attack_of

    store = get_store()
    found, missing = {}, []
    for rid in run_ids:
        res = store.get(exp.run_key(attack_of(rid, exp.images.captions), seed))
        if res is None:
            missing.append(rid)
        else:
            found[rid] = res
    show_store_notices(store)
    return found, missing


def show_store_notices(store: ResultStore) -> None:
    """Damaged stored results found while reading (quarantined, recomputed on the next run): once each."""
    for notice in store.take_notices():
        st.warning(notice, icon=":material/healing:")


def show_sharded_runs(store: ResultStore, target_fingerprint: str) -> None:
    """Runs of this target scored in shards (``mia attack --processes N`` / ``accelerate launch``) into the
    store: each with its batches done (a stopped run resumes from them) and what each process scored."""
    from mia_core.lab.shards import sharded_runs

    runs = [r for r in sharded_runs(store) if r.get("key", {}).get("target_fingerprint") == target_fingerprint]
    if not runs:
        return
    open_runs = [r for r in runs if not r.get("merged")]
    title = f"Sharded runs of this target ({len(runs)}" + (f", {len(open_runs)} not finished)" if open_runs else ")")
    with st.expander(title, expanded=bool(open_runs), icon=":material/call_split:"):
        for r in runs:
            state = "merged into the store" if r.get("merged") else "in progress, or stopped: rerun the command"
            shares = ", ".join(f"{who}: {n}" for who, n in sorted(r.get("by_process", {}).items()))
            st.progress(
                min(1.0, r["fraction"]),
                text=f"**{r['attack']}** on {r['n_images']:,} images · {r['batches_done']}/{r['n_batches']} batches "
                f"of {r['batch_size']} · {state}" + (f" · batches by {shares}" if shares else ""),
            )


def running_job_box(
    worker: Worker,
    job: Any,
    text: str,
    *,
    cancel_key: str,
    cancel_help: str,
    leave_note: str,
    extra: Any = None,
    eta: float | None = None,
) -> None:
    """The status box of a queued or running worker job: progress with its ETA, ``extra(box)``
    (e.g. a live chart), a Cancel button and a note that the job survives leaving the page.
    ``eta``: seconds left as the page computed it (else the job's share of work done so far)."""
    from mia_core.lab.plan import format_duration

    # not a `with` block: leaving one would mark the status complete while the job still runs
    box = st.status(f"Running: {job.description}", state="running", expanded=True)
    if job.status == "queued":
        box.progress(0.0, text="Queued: waiting for another job on this server to finish…")
    else:
        eta = job.eta_seconds() if eta is None else eta
        eta_text = f" · about {format_duration(eta)} left" if eta is not None else ""
        box.progress(min(1.0, job.fraction), text=text + eta_text)
    if extra is not None:
        extra(box)
    box.button(
        "Cancel",
        key=cancel_key,
        on_click=worker.cancel,
        args=(job.job_id,),
        icon=":material/stop_circle:",
        help=cancel_help,
    )
    box.caption(leave_note)


def poll_job(
    worker: Worker,
    job_id: str | None,
    poll_key: str,
    *,
    running: Callable[[Any], None],
    ended: Callable[[Any], None] | None = None,
) -> None:
    """A worker job's panel, redrawn every second while the job is queued or running.

    ``running(job)`` draws it while it is active (e.g. :func:`running_job_box`). When it ends, the
    whole page reruns once, so every section sees the outcome (``st.session_state[poll_key]``
    remembers the job id the last full run saw active); then ``ended(job)``, if given, draws the
    outcome inside the panel. Nothing is drawn for an unknown job.
    """
    s = st.session_state
    job = worker.get(job_id) if job_id else None
    if job is not None and job.active:
        s[poll_key] = job_id

    @st.fragment(run_every=1.0 if job is not None and job.active else None)
    def job_panel() -> None:
        current = worker.get(job_id) if job_id else None
        if current is None:
            return
        if current.active:
            running(current)
            return
        if s.get(poll_key) == job_id:  # it just ended: one full rerun draws the outcome everywhere
            s[poll_key] = None
            st.rerun()
        if ended is not None:
            ended(current)

    job_panel()


def fpr_budget() -> float:
    return float(st.session_state["cfg.fpr"])


def budget_control() -> float:
    """The FPR-budget picker, bound to the URL (``?fpr=1%``) and mirrored into ``cfg.fpr``."""
    from mia_core.metrics import BUDGET_1PCT
    from mia_core.views.results import budget_label

    s = st.session_state
    if "fpr" not in s and st.query_params.get("fpr") not in {budget_label(b) for b in FPR_BUDGETS}:
        current = fpr_budget()
        s["fpr"] = current if current in FPR_BUDGETS else BUDGET_1PCT
    value = st.segmented_control(
        "FPR budget",
        FPR_BUDGETS,
        key="fpr",
        format_func=budget_label,
        required=True,
        bind="query-params",
        help="The false-positive rate the attacker accepts: the fraction of non-members wrongly flagged. "
        "Thresholds and verdicts follow it.",
    )
    if value is None:  # an invalid ?fpr= in the URL
        value = fpr_budget()
    s["cfg.fpr"] = float(value)
    return float(value)


def download_figure(fig, data: pd.DataFrame | None, name: str, key: str) -> None:
    """HTML (self-contained) export of a figure and CSV export of its data, built only on click."""
    cols = st.columns([1, 1, 4])
    cols[0].download_button(
        "Chart (HTML)",
        data=lambda: fig.to_html(include_plotlyjs=True),
        file_name=f"{name}.html",
        mime="text/html",
        key=f"{key}.html",
        on_click="ignore",
        icon=":material/download:",
    )
    if data is not None:
        cols[1].download_button(
            "Data (CSV)",
            data=lambda: data.to_csv(index=False),
            file_name=f"{name}.csv",
            mime="text/csv",
            key=f"{key}.csv",
            on_click="ignore",
            icon=":material/download:",
        )


def uploaded_captions(metadata: list, names: list[str]) -> dict[str, str]:
    """Captions of the uploads ``names`` from uploaded metadata.jsonl files (``mia_core.lab.uploads.metadata_captions``):
    upload name -> caption. A file that cannot be read is named on the page and skipped; rows of files that were
    not uploaded are noted."""
    from mia_core.lab.uploads import metadata_captions

    captions: dict[str, str] = {}
    for meta in metadata:
        try:
            found, notes = metadata_captions(meta.getvalue(), names, where=meta.name)
        except ValueError as exc:
            st.error(f"Captions not read: {exc}")
            continue
        captions.update(found)
        for note in notes:
            st.warning(note)
    return captions
