"""Factors & defences: what makes a diffusion model leak membership, and what stops it.

Each study (``mia study``) trained one target per value of one factor and ran the same attacks on
every one. This page draws a study: attack strength against the factor with the models' utility
beneath, the findings in words, the table, the command that made it. Nothing is computed here.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import streamlit as st

from mia_core.attacks import REGISTRY
from mia_core.lab.mixing import submit_shift_study
from mia_core.lab.plan import format_duration
from mia_core.lab.study import Study, list_studies, load_study
from mia_core.paths import STUDIES_DIR, runs_dir
from mia_core.views import factors as fv
from pages._common import download_figure, get_store, get_worker, poll_job

s = st.session_state
SHIPPED_DIR = STUDIES_DIR
USER_DIR = runs_dir() / "studies"


@st.cache_data(max_entries=32, show_spinner=False)
def _load(path: str, mtime: float) -> tuple[Study, fv.StudyView]:
    """A study and its ordered view; cached per (study.json, modification time)."""
    study = load_study(path)
    return study, fv.study_view(study)


def _study_file(path: Path) -> Path:
    return path / "study.json" if path.is_dir() else path


def _open(path: Path) -> tuple[Study, fv.StudyView]:
    file = _study_file(path)
    return _load(str(file), file.stat().st_mtime)


def _found() -> dict[str, Path]:
    """Display name -> study.json of every study on disk: the shipped ones first (steps, members, DP,
    augmentation: the teaching order), then the user's."""
    order = {f: i for i, f in enumerate(fv.FACTORS)}
    found: list[tuple[int, int, str, str, Path]] = []
    for rank, (folder, origin) in enumerate(((SHIPPED_DIR, "shipped"), (USER_DIR, "yours"))):
        if not folder.is_dir():
            continue
        with warnings.catch_warnings():  # an unreadable study is skipped, not shouted about on every rerun
            warnings.simplefilter("ignore")
            studies = list_studies(folder)
        for study in studies:
            name = f"{Path(study.path).parent.name} — {study.factor_label} ({origin})"
            found.append((rank, order.get(study.factor, len(order)), name, origin, Path(study.path)))
    return {name: path for *_, name, _origin, path in sorted(found)}


def _open_typed() -> None:
    raw = (s.get("factors.path") or "").strip()
    if not raw:
        s["factors.msg"] = "Type the path of a study folder (holding study.json) or of a study.json file."
        return
    path = Path(raw).expanduser()
    if not path.exists() and not path.is_absolute():  # "runs/studies/x" typed while the app runs elsewhere
        path = runs_dir().parent / path
    file = _study_file(path)
    if not file.is_file():
        s["factors.msg"] = f"`{raw}` is not a study folder or study.json file on the machine running the app."
        return
    try:
        _open(file)
    except Exception as exc:
        s["factors.msg"] = f"Could not read `{raw}`: {exc}"
        return
    s["factors.msg"] = None
    s["factors.typed"] = str(file.resolve())
    s["factors.choice"] = None


def _shift_section() -> None:
    """Run the mixing experiment on the session's target on the worker; show the study when it is done."""
    attacks = [a for a in s.get("cfg.attacks", []) if a in REGISTRY and not REGISTRY[a].learns] or ["loss", "pia"]
    st.caption(
        "Replace 0, 25, 50, 75 and 100 % of the session's non-members with brightened copies (CopyMark's mixing "
        "experiment) and measure every attack's AUC and the blind baseline's on each mixed split. Nothing is "
        f"trained; the session's target `{s['cfg.target']}` on `{s['cfg.data']}` with "
        f"{', '.join(attacks)} (the session's attacks that score every image)."
    )
    c1, c2, c3 = st.columns([2, 2, 1], vertical_alignment="bottom")
    delta = c1.slider("Brightness shift (/255)", 5, 120, 40, 5, key="factors.shift.delta")
    limit = c2.selectbox(
        "Images per class",
        [50, 100, 300, None],
        index=2,
        key="factors.shift.limit",
        format_func=lambda n: "all" if n is None else f"{n}",
        help="At most this many members and as many non-members (fewer = faster).",
    )
    shift = f"brightness:{delta}"
    out = USER_DIR / f"shift_{delta}_{limit or 'all'}"
    request = dict(target=s["cfg.target"], data=s["cfg.data"], attacks=attacks, shift=shift, out_dir=str(out))
    if c3.button("Run", key="factors.shift.run", icon=":material/play_arrow:"):
        job = submit_shift_study(
            get_worker(), limit=limit, seed=int(s.get("cfg.seed", 0)), store=get_store(), **request
        )
        s["factors.shift.job"] = (job.job_id, str(out / "study.json"))
    job_id, file = s.get("factors.shift.job") or (None, None)

    def ended(job) -> None:
        if job.status == "done":
            st.success(f"Done: the shift study is in `{file}` and shown below.", icon=":material/check_circle:")
        elif job.status == "failed":
            st.error(f"The shift study failed: {job.error}")

    poll_job(
        get_worker(),
        job_id,
        "factors.shift.polling",
        running=lambda js: st.progress(js.fraction, text=f"Shift study… {js.message or js.status}"),
        ended=ended,
    )
    job = get_worker().get(job_id) if job_id else None
    if job is not None and job.status == "done" and s.get("factors.shift.shown") != job_id:
        s["factors.shift.shown"] = job_id
        s["factors.typed"], s["factors.choice"] = str(Path(file).resolve()), None


# -- the page --------------------------------------------------------------------------------------

st.title("🛡️ Factors & defences")
st.caption(
    "What makes a diffusion model leak membership, and what stops it. Each study trained one model per value "
    "of a single factor (everything else fixed) and ran the same attacks on each: the curves show how attack "
    "strength and the model's quality move together."
)

with st.expander(
    "🧪 Run the mixing experiment (distribution shift) on the session's target",
    expanded=bool(s.get("factors.shift.job")),
):
    _shift_section()

found = _found()
typed = s.get("factors.typed")
options = list(found) + ([typed] if typed and typed not in found.values() else [])
c1, c2, c3 = st.columns([3, 2, 2], vertical_alignment="bottom")
if options:
    url_study = st.query_params.get("study")  # ?study=digits_dp_epsilon opens that study (shareable links)
    by_folder = {o.split(" — ")[0]: o for o in options}
    if url_study in by_folder and url_study != s.get("factors._url_study"):
        s["factors.choice"] = by_folder[url_study]
    s["factors._url_study"] = url_study
    if s.get("factors.choice") not in options:
        s["factors.choice"] = typed if typed in options else options[0]
    c1.selectbox(
        "Study",
        options,
        key="factors.choice",
        format_func=lambda o: f"{o} (opened)" if o == typed else o,
        help="Shipped studies (assets/studies) and yours (runs/studies, written by `mia study`).",
    )
else:
    c1.info("No study found in assets/studies or runs/studies: make one with `mia study`, or open a folder.")
metric = (
    c2.segmented_control(
        "Attack strength as",
        list(fv.METRICS),
        key="factors.metric",
        required=True,
        default="auc",
        format_func=lambda m: {"auc": "AUC", "tpr_at_1pct": "TPR @ 1% FPR"}[m],
        help="AUC: how well the attack ranks members above non-members overall (0.5 = guessing). TPR @ 1% FPR: the "
        "share of members it finds while wrongly flagging only 1 % of non-members.",
    )
    or "auc"
)
with c3.popover("Open a study folder", icon=":material/folder_open:"):
    st.text_input(
        "Study folder or study.json",
        key="factors.path",
        placeholder="runs/studies/my_study  (wherever `mia study --out` wrote)",
    )
    st.button("Open", key="factors.open", on_click=_open_typed)
if s.get("factors.msg"):
    st.error(s["factors.msg"], icon=":material/error:")

choice = s.get("factors.choice")
if not choice:
    st.stop()
file = found.get(choice) or Path(choice)
try:
    study, view = _open(file)
except Exception as exc:
    st.error(f"Could not read the study `{file}`: {type(exc).__name__}: {exc}")
    st.stop()

info = fv.FACTORS.get(view.factor)
st.subheader(view.title)
fig = fv.factor_figure(view, metric)
st.plotly_chart(fig, key="factors.chart", config={"displaylogo": False})
with st.container(border=True):
    st.markdown("**Findings**\n\n" + "\n".join(f"- {line}" for line in fv.findings(view, metric)))
table = fv.study_table(view)
download_figure(fig, study.table(), f"study_{view.factor}", "factors.dl")  # the CSV = the study's study.csv
st.caption(
    "Top: each attack's strength on the model trained with that value (bars: 95 % bootstrap intervals of the AUC; "
    "dashed: chance). Bottom: the denoising loss on held-out images (utility; lower is better) and on the training "
    "images. The wider the gap between the two losses, the more the model has memorised its members."
)

if info is not None:
    with st.container(border=True):
        st.markdown(f"**{info.heading}.** {info.why}")
shipped = SHIPPED_DIR.resolve() in file.resolve().parents
st.caption(
    f"**Caveat.** {fv.caveat(view.factor)}"
    if shipped
    else "**Caveat.** One training run per value: a difference smaller than the intervals may be noise, and a "
    "small model on small data shows the direction of an effect more reliably than its size."
)

st.subheader("The numbers")
number = st.column_config.NumberColumn
st.dataframe(
    table,
    hide_index=True,
    width="stretch",
    key="factors.table",
    column_config={
        "AUC": number(format="%.3f"),
        "AUC 95% low": number(format="%.3f"),
        "AUC 95% high": number(format="%.3f"),
        "TPR@1%FPR": number(format="%.3f", help="Empty: fewer than 100 non-members, not resolvable"),
        "TPR@0.1%FPR": number(format="%.3f", help="Empty: fewer than 1,000 non-members, not resolvable"),
        "held-out loss": number(format="%.4f"),
        "member loss": number(format="%.4f"),
        "achieved ε": number(format="%.2f"),
        "training s": number(format="%.0f"),
    },
)

st.subheader("How it was made")
meta = view.meta
if meta.get("command"):
    st.code(meta["command"], language="bash")
details = [
    f"data `{meta['data']}`" if meta.get("data") else None,
    f"device {meta['device']}" if meta.get("device") else None,
    f"{format_duration(meta['seconds'])} in all" if isinstance(meta.get("seconds"), (int, float)) else None,
    f"{len(view.models)} models, attacks: {', '.join(view.attacks)}",
]
st.caption(" · ".join(d for d in details if d) + f". Study file: `{file}`.")
if meta.get("base_config"):
    with st.expander("Training recipe shared by every model"):
        st.json(meta["base_config"], expanded=True)

study_dir = Path(study.path).parent if study.path else file.parent
folders = {
    str(r.label): (study_dir / str(r.target_dir)).resolve()
    for r in view.models.itertuples()
    if r.target_dir and (study_dir / str(r.target_dir) / "split.json").is_file()
}


def _use_model(folder: str) -> None:
    """Button callback: attack one of the study's models on its own split on every other page."""
    s["cfg.target"], s["cfg.data"], s["sel.sample"] = folder, str(Path(folder) / "split.json"), None
    s.pop("target.source", None)
    s["factors.flash"] = folder


with st.expander("The models", expanded=bool(s.get("factors.flash"))):
    models = view.models.rename(
        columns={
            "label": view.factor_label,
            "heldout_loss": "held-out loss",
            "member_loss": "member loss",
            "epsilon": "achieved ε",
            "train_seconds": "training s",
            "n_members": "training images",
            "target_dir": "folder",
        }
    ).drop(columns=["value", "order"])
    st.dataframe(models, hide_index=True, width="stretch", key="factors.models")
    if folders:
        c1, c2 = st.columns([1, 2])
        pick = c1.selectbox("Model", list(folders), key="factors.model")
        c2.button(
            "Attack this model",
            key="factors.use",
            on_click=_use_model,
            args=(str(folders[pick]),),
            icon=":material/target:",
            help="Makes it the session's target, on its own split, for every page.",
        )
    else:
        st.caption(
            "The model folders are not on this machine (the shipped studies keep their results only): "
            "rerun the command above to get them."
        )
    flash = s.pop("factors.flash", None)
    if flash:
        st.success(f"The session now attacks `{flash}`.", icon=":material/check_circle:")
        st.page_link("pages/attack_lab.py", label="Attack it in the Attack lab", icon="⚔️")

with st.expander("Every factor, explained"):
    for factor in fv.FACTORS.values():
        st.markdown(f"**{factor.title}.** {factor.why}")
