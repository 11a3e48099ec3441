"""Data: the session's member / non-member split, its galleries, and other data sources."""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from pathlib import Path

import streamlit as st

from mia_core.data import DIGITS_SOURCE, IMAGE_SUFFIXES, check_upload_pixels, upload_limits_text
from mia_core.lab.access import AccessDenied, check_allowed, check_data_spec
from mia_core.lab.experiment import Experiment, load_experiment
from mia_core.lab.uploads import caption_edits, edited_caption_split, save_split_manifest, save_upload_folder
from mia_core.views.images import DISPLAY_SIZE, upscale_nearest
from pages._common import experiment, get_store, try_experiment

PAGE_SIZE = 24
THUMB = DISPLAY_SIZE  # 160 px: readable at talk distance (issue 19)
UPLOAD_TYPES = [s.lstrip(".") for s in IMAGE_SUFFIXES]

s = st.session_state


# ----------------------------------------------------------------------------- applying a source


def _say(kind: str, text: str) -> None:
    s["data.msg"] = (kind, text)


def _apply(spec: str, what: str) -> None:
    """Validate ``spec`` by loading it with the session's target; switch to it only if that works."""
    try:
        spec = check_data_spec(spec)  # only the allowed folders (MIA_ALLOWED_ROOTS), checked before any read
    except AccessDenied as exc:
        _say("error", f"Could not use this {what}: {exc}. The previous data is kept.")
        return
    try:
        try:
            target = experiment().target  # reuse the loaded model
        except Exception:
            target = s["cfg.target"]
        exp = load_experiment(target, spec, limit=s["cfg.limit"], seed=s["cfg.seed"])
    except Exception as exc:  # the data module raises ValueError with a clear message
        _say("error", f"Could not use this {what}: {exc}. The previous data is kept.")
        return
    s["cfg.data"] = spec
    s["sel.sample"] = None
    _say(
        "success",
        f"Now using {what} `{spec}`: {exp.split.n_members:,} members and "
        f"{exp.split.n_nonmembers:,} non-members. {exp.conversion.report.capitalize()}.",
    )


def _apply_builtin() -> None:
    _apply(s["data.builtin"], "built-in data")


def _apply_path(key: str, what: str, suffix: str | None) -> None:
    raw = (s.get(key) or "").strip()
    if not raw:
        _say("error", f"Type the path of the {what} first.")
        return
    if suffix and not raw.lower().endswith(suffix):
        _say("error", f"`{raw}` does not end in {suffix}; give the path of the {what}.")
        return
    try:
        check_allowed(raw, what)  # before anything about the path is looked at or said
    except AccessDenied as exc:
        _say("error", f"Could not use this {what}: {exc}. The previous data is kept.")
        return
    if suffix is None and not Path(raw).expanduser().is_dir():
        _say(
            "error", f"Could not use this {what}: `{raw}` does not exist or is not a folder. The previous data is kept."
        )
        return
    _apply(str(Path(raw).expanduser()), what)


def _apply_uploaded_images() -> None:
    members = s.get("data.up_members") or []
    nonmembers = s.get("data.up_nonmembers") or []
    if not members or not nonmembers:
        _say("error", "Upload at least one member image and one non-member image.")
        return
    member_files = [(f.name, f.getvalue()) for f in members]
    nonmember_files = [(f.name, f.getvalue()) for f in nonmembers]
    try:
        check_upload_pixels(member_files + nonmember_files)  # from the headers, before anything is decoded
        folder = save_upload_folder(get_store().root, member_files, nonmember_files)
    except (OSError, ValueError) as exc:
        _say("error", f"Could not save the uploaded images: {exc}")
        return
    _apply(str(folder), "uploaded image folder")
    if s["cfg.data"] != str(folder.resolve()):  # rejected: its files do not stay on the server
        shutil.rmtree(folder, ignore_errors=True)


def _apply_uploaded_manifest() -> None:
    up = s.get("data.up_manifest")
    if up is None:
        _say("error", "Upload a split manifest (.json) first.")
        return
    data = up.getvalue()
    folder = Path(get_store().root) / "uploads" / "manifests"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{hashlib.sha256(data).hexdigest()[:16]}.json"
        path.write_bytes(data)
    except OSError as exc:
        _say("error", f"Could not save the manifest: {exc}")
        return
    _apply(str(path), "uploaded split manifest")


def _apply_caption_edits(spec: str, edits: dict[str, str]) -> None:
    """Record the edited captions in a split manifest of their own (under the result store) and use it."""
    try:
        split = edited_caption_split(spec, edits, seed=s["cfg.seed"])
        path = save_split_manifest(get_store().root, split)
    except (OSError, ValueError) as exc:
        _say("error", f"Could not use the edited captions: {exc}. The previous captions are kept.")
        return
    _apply(str(path), "split with edited captions")


def _set_limit() -> None:
    value = s.get("data.limit")
    s["cfg.limit"] = None if not value else int(value)
    s["sel.sample"] = None


# ----------------------------------------------------------------------------- views


def _current_split(exp: Experiment) -> None:
    split = exp.split
    c1, c2, c3 = st.columns(3)
    c1.metric("Members", str(split.n_members), help="Images the target was trained on.")
    c2.metric("Non-members", str(split.n_nonmembers), help="Images it never saw.")
    channels = "1 channel" if exp.images.channels == 1 else f"{exp.images.channels} channels"
    c3.metric(
        "Model input",
        f"{exp.images.height}x{exp.images.width}, {channels}",
        help="The size and channels the target expects; every image is converted to it.",
    )
    lines = [
        f"**Source:** `{split.source}`" + (f" — {split.description}" if split.description else ""),
        f"**Data fingerprint:** `{split.data_fingerprint}` (the source images and ids the split was drawn from)"
        f" · **split seed:** {split.seed if split.seed is not None else 'none (the split was given)'}"
        f" · **images fingerprint:** `{exp.images.fingerprint}` (the converted images; attack results are "
        "stored under it)",
    ]
    st.markdown("  \n".join(lines))
    st.info(f"**Conversion to the target's input:** {exp.conversion.report}", icon="🔧")
    if exp.images.captions is not None:
        _captions(exp)
    if s["cfg.limit"]:
        st.caption(
            f"Subset for speed: the first {s['cfg.limit']} members and the first {s['cfg.limit']} "
            "non-members of the split (the manifest order is random, so this is a random subset)."
        )
    st.download_button(
        "Download this split (JSON manifest)",
        json.dumps(split.to_dict(), indent=1),
        file_name=f"split-{split.data_fingerprint}.json",
        mime="application/json",
        key="data.download_split",
        on_click="ignore",
    )


def _captions(exp: Experiment) -> None:
    """A captioned data set (text-to-image targets): how many distinct captions, and each image's in an editable table.

    Edits are applied with a button: they become a split manifest of their own (mia_core.lab.uploads.
    edited_caption_split), which is then the session's data, so every page and every run conditioned on
    the images' own captions uses them (such runs are keyed by the captions' digest)."""
    import pandas as pd

    captions = [str(c) for c in exp.images.captions]
    distinct = len(set(captions))
    st.markdown(
        f"**Captions:** every image carries one ({distinct:,} distinct, e.g. “{captions[0]}”): the prompt a "
        "text-to-image target was trained with. Attacks condition on them (or on another prompt, chosen per run "
        "in the Attack lab)." + (" These captions were edited on this page." if exp.split.captions_edited else "")
    )
    with st.expander(f"Captions of the {len(captions):,} images (editable)"):
        table = pd.DataFrame(
            {"id": list(exp.ids), "role": ["member" if m else "non-member" for m in exp.is_member], "caption": captions}
        )
        edited = st.data_editor(
            table,
            hide_index=True,
            width="stretch",
            disabled=["id", "role"],
            num_rows="fixed",
            key=f"data.captions.{exp.images.fingerprint}.{hashlib.sha256(''.join(captions).encode()).hexdigest()[:8]}",
            column_config={"caption": st.column_config.TextColumn("caption", help="Double-click to edit")},
        )
        after = ["" if c is None or (isinstance(c, float) and math.isnan(c)) else str(c) for c in edited["caption"]]
        edits = caption_edits(list(exp.ids), captions, after)
        st.caption(
            "Runs conditioned on each image's own caption are stored under a digest of the captions: after a "
            "change, they run again (the results of the old captions stay stored under theirs). The edited captions "
            "are written to a split manifest of their own, which becomes the session's data (download it below)."
        )
        st.button(
            f"Use the edited captions ({len(edits)} changed)" if edits else "Use the edited captions",
            key="data.apply_captions",
            on_click=_apply_caption_edits,
            args=(s["cfg.data"], edits),
            disabled=not edits,
            type="primary" if edits else "secondary",
        )


def _gallery(exp: Experiment, role: str, ids: tuple[str, ...]) -> None:
    n = len(ids)
    pages = max(1, math.ceil(n / PAGE_SIZE))
    page = st.pagination(pages, key=f"data.page_{role}_{exp.images.fingerprint}") if pages > 1 else 1
    start = (page - 1) * PAGE_SIZE
    shown = ids[start : start + PAGE_SIZE]
    index = exp.images.index_of()
    st.caption(
        f"Showing {start + 1}–{start + len(shown)} of {n:,} {role}, as the model sees them "
        f"({exp.images.height}x{exp.images.width}, enlarged without smoothing)."
    )
    captions = exp.images.captions  # a text-to-image data set: each image's caption under it
    with st.grid(min_column_width=THUMB + 16, gap="small", key=f"data.grid_{role}"):
        for i in shown:
            said = i if captions is None else f"{i} · “{captions[index[i]]}”"
            st.image(upscale_nearest(exp.images.images[index[i]], THUMB), caption=said, width=THUMB)


def _galleries(exp: Experiment) -> None:
    st.subheader("Galleries")
    tab_m, tab_n = st.tabs([f"Members ({exp.split.n_members:,})", f"Non-members ({exp.split.n_nonmembers:,})"])
    with tab_m:
        _gallery(exp, "members", exp.split.member_ids)
    with tab_n:
        _gallery(exp, "non-members", exp.split.nonmember_ids)
    with st.expander("What am I looking at?"):
        st.markdown(
            "A membership-inference attack asks of one image: *was it in the training set?* To measure how well "
            "an attack answers, we need images whose answer we know: **members** (the target was trained on "
            "them) and **non-members** (drawn from the same source but held out). The attack scores every "
            "image; the better it separates the two groups, the more the model leaks.\n\n"
            "The **fingerprint** is a hash of the exact pixels and ids, so a saved split is never applied to "
            "different images by accident, and stored attack results are found again for the same data."
        )
    c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
    sid = c1.selectbox(
        "Open an image in the Sample explorer",
        exp.split.member_ids + exp.split.nonmember_ids,
        index=None,
        placeholder="choose an id…",
        key="data.open_id",
    )
    if c2.button("Open", disabled=sid is None, key="data.open"):
        s["sel.sample"] = sid
        st.switch_page("pages/sample.py")


def _sources() -> None:
    st.subheader("Use other data")
    st.caption(
        "A new source is loaded with the session's target first; if it fails, the message says why and "
        "the current data stays. Changing the data clears the selected sample. Attack results are stored "
        "per data fingerprint: precomputed ones exist only for the built-in default split."
    )
    t_builtin, t_npz, t_folder, t_upload, t_manifest = st.tabs(
        ["Built-in digits", ".npz file", "Image folder", "Upload images", "Split manifest"]
    )
    with t_builtin:
        options = {
            "default": "The default target's own training split (898 members / 899 non-members)",
            DIGITS_SOURCE: f"Digits, a random half split with the session seed ({s['cfg.seed']})",
        }
        st.radio(
            "Built-in data",
            list(options),
            format_func=options.get,
            key="data.builtin",
            index=list(options).index(s["cfg.data"]) if s["cfg.data"] in options else 0,
        )
        st.caption(
            "With seed 0 the random split is the default target's own split. With another seed about half "
            "of its 'members' were never trained on: a sanity check where every attack should drop to "
            "about AUC 0.5."
        )
        st.button("Use built-in data", key="data.apply_builtin", on_click=_apply_builtin)
    with t_npz:
        st.text_input("Path of an .npz file", key="data.npz_path", placeholder="/path/to/images.npz")
        st.caption(
            "Arrays: `images` uint8 (N, H, W, C) or (N, H, W); optional `ids` (N,) and `is_member` (N,) "
            "bool. Without `is_member` the images are split at random (half members). Opened without "
            "pickle support, so an .npz cannot run code."
        )
        st.button(
            "Use this .npz", key="data.apply_npz", on_click=_apply_path, args=("data.npz_path", ".npz file", ".npz")
        )
    with t_folder:
        st.text_input("Path of an image folder", key="data.folder_path", placeholder="/path/to/folder")
        st.caption(
            "A folder with `members/` and `nonmembers/` subfolders gives the split; a flat folder of "
            f"images is split at random. Files: {', '.join(IMAGE_SUFFIXES)}. Images are converted to the "
            "target's size and channels (the conversion is reported)."
        )
        st.button(
            "Use this folder",
            key="data.apply_folder",
            on_click=_apply_path,
            args=("data.folder_path", "image folder", None),
        )
    with t_upload:
        c1, c2 = st.columns(2)
        c1.file_uploader(
            "Member images (the model was trained on these)",
            type=UPLOAD_TYPES,
            accept_multiple_files=True,
            key="data.up_members",
        )
        c2.file_uploader(
            "Non-member images (held out)", type=UPLOAD_TYPES, accept_multiple_files=True, key="data.up_nonmembers"
        )
        st.caption(
            "The files are written to a folder under the result store (named by a hash of their bytes) "
            "and then used like an image folder; rejected uploads are removed. " + upload_limits_text()
        )
        st.button("Use the uploaded images", key="data.apply_upload", on_click=_apply_uploaded_images)
    with t_manifest:
        st.text_input("Path of a split manifest (.json)", key="data.manifest_path", placeholder="/path/to/split.json")
        st.button(
            "Use this manifest",
            key="data.apply_manifest",
            on_click=_apply_path,
            args=("data.manifest_path", "split manifest", ".json"),
        )
        st.file_uploader("…or upload one", type=["json"], key="data.up_manifest")
        st.button("Use the uploaded manifest", key="data.apply_up_manifest", on_click=_apply_uploaded_manifest)
        st.caption(
            "A manifest lists member and non-member ids, the data source and its fingerprint; the source "
            "is loaded and checked against the fingerprint. A relative source in an uploaded manifest is "
            "looked up from the app's working folder. Download the current split above."
        )

    st.subheader("Subset for speed")
    if "data.limit" not in s:
        s["data.limit"] = s["cfg.limit"] or 0
    st.number_input(
        "Members and non-members to keep (each side; 0 = all)",
        min_value=0,
        step=50,
        key="data.limit",
        on_change=_set_limit,
    )
    st.caption(
        "Attacks on fewer images finish sooner, but TPR at low FPR needs many non-members: with N "
        "non-members, 1 % FPR needs N >= 100 and 0.1 % FPR needs N >= 1000. The precomputed demo "
        "results are for all images."
    )


# ----------------------------------------------------------------------------- page

st.title("Data")
st.caption(
    "Which images the target was trained on (members), which it never saw (non-members), and what was "
    "done to them before the model sees them."
)

msg = s.pop("data.msg", None)
if msg is not None:
    kind, text = msg
    (st.error if kind == "error" else st.success)(text)

exp = try_experiment()
if exp is not None:
    _current_split(exp)
    _galleries(exp)
_sources()
